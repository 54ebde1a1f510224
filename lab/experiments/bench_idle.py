"""`lab bench idle`: what the deployed stack burns with no load, per module and in all, in cores.

Every container's cgroup CPU counter is read at the start and end of each window (microseconds to read, so the
measuring adds nothing to the measured), with the host's busy seconds beside them and each container's throttled
periods. Repeated windows give a median and a spread: the machine is shared, and a window that caught someone
else's burst shows as spread, not as the figure.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.analysis import idle
from lab.experiments import bench as b
from lab.stack.cpu import delta, host_busy_seconds, stack_seconds, stack_throttled

DEFAULT_SECONDS = 60.0
DEFAULT_REPEATS = 3
SETTLE_SECONDS = 10.0  # a pause before the first window: what the command itself started (a docker call) ends


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def window(docker_client, side: str, repeat: int, seconds: float,
           sleep: Callable[[float], None] = time.sleep) -> idle.IdleWindow:
    """One window of `seconds` with no load from us: every service's CPU seconds, the host's, throttled periods."""
    cpu0, thr0, host0, t0 = stack_seconds(docker_client), stack_throttled(docker_client), host_busy_seconds(), \
        time.monotonic()
    sleep(seconds)
    cpu1, thr1, host1, t1 = stack_seconds(docker_client), stack_throttled(docker_client), host_busy_seconds(), \
        time.monotonic()
    used = {k: v for k, v in delta(cpu0, cpu1).items() if k in cpu0}  # a container started meanwhile: not counted
    throttled = {k: thr1[k] - thr0.get(k, 0) for k in thr1 if k in thr0 and thr1[k] > thr0[k]}
    return idle.IdleWindow(side, repeat, t1 - t0, used, host1 - host0, throttled)


@dataclass
class IdleResult:
    started: str
    windows: list[idle.IdleWindow]
    summary: idle.IdleSummary
    figures: Path | None = None
    extra: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = idle.table([self.summary])
        out.append("per service:")
        out += idle.service_lines(self.summary)
        out.append("(median over the windows, min-max in brackets; cores = cgroup CPU seconds over wall seconds; "
                   "host busy = the whole machine's, other sessions' work included)")
        if self.figures is not None:
            out.append(f"figures saved: {self.figures}")
        out.append(idle.idle_line(self.summary, self.started))
        return out


def bench_idle(docker_client, seconds: float = DEFAULT_SECONDS, repeats: int = DEFAULT_REPEATS,
               settle: float = SETTLE_SECONDS, log=print) -> IdleResult:
    """`repeats` windows of `seconds` on the deployed stack, nothing offered; medians per module and in all."""
    from lab.stack.deploy import saved_params
    from lab.stack.hacost import knobs

    started = now_utc()
    log(f"idle stack, {repeats} windows of {seconds:g}s after {settle:g}s to settle; started {started}")
    time.sleep(settle)
    windows = []
    for repeat in range(1, repeats + 1):
        w = window(docker_client, "stack", repeat, seconds)
        log(f"  window {repeat}/{repeats}: {w.total_cores():.4f} cores in all (host busy "
            f"{w.host_busy / w.seconds:.2f} cores)")
        windows.append(w)
    summary = idle.summarise(windows)
    params = saved_params()
    result = IdleResult(started, windows, summary)
    result.figures = b.save("idle", {
        "started": started, "seconds": seconds, "repeats": repeats, "cores": os.cpu_count(),
        "knobs": knobs(params) if params else None, "windows": windows, "summary": summary,
        "verdict": idle.idle_line(summary, started)})
    return result


__all__ = ["DEFAULT_REPEATS", "DEFAULT_SECONDS", "IdleResult", "bench_idle", "now_utc", "window"]
