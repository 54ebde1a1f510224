"""The arithmetic of `lab bench idle`: what the deployed stack burns with no load, per module and in all, in cores.

A window is two readings of every container's cgroup CPU counter `seconds` apart; cores = CPU seconds / wall
seconds. Each figure is a median over the windows with its min-max, so one window that caught another session's
burst does not make the figure. Pure and typed: the bench only feeds it counters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lab.analysis.efficiency import MODULES, Spread, by_module, spread

GOAL_CORES = 0.1  # issue 12: the idle stack at most this many cores in all
IDLE_MODULES = tuple(m for m in MODULES if m != "generator")  # no load: no generator


@dataclass
class IdleWindow:
    """One window on one side: the CPU seconds each service used and how long the window was."""

    side: str
    repeat: int
    seconds: float
    service_cpu: dict[str, float] = field(default_factory=dict)  # service -> CPU seconds in the window
    host_busy: float = math.nan  # busy CPU seconds of the whole host in the window (others' work included)
    throttled: dict[str, int] = field(default_factory=dict)  # service -> periods the CPU quota throttled it

    def service_cores(self) -> dict[str, float]:
        return cores(self.service_cpu, self.seconds)

    def module_cores(self) -> dict[str, float]:
        return cores(by_module(self.service_cpu), self.seconds)

    def total_cores(self) -> float:
        return sum(self.service_cores().values()) if self.seconds > 0 else math.nan


def cores(cpu_seconds: Mapping[str, float], wall_seconds: float) -> dict[str, float]:
    """CPU seconds over a window -> cores (NaN for a window of no length: nothing can be divided by it)."""
    return {k: (v / wall_seconds if wall_seconds > 0 else math.nan) for k, v in cpu_seconds.items()}


@dataclass
class IdleSummary:
    side: str
    windows: int
    seconds: float
    modules: dict[str, Spread]
    services: dict[str, Spread]
    total: Spread
    host: Spread
    throttled: dict[str, int]  # service -> throttled periods summed over the windows
    pooled: float = math.nan  # every window's CPU over every window's seconds: the time average, a rare burst (a
    # periodic job) weighed in, where the median of short windows leaves it out


def summarise(windows: Iterable[IdleWindow], side: str = "stack") -> IdleSummary:
    """Median and min-max over one side's windows, per module, per service and in all."""
    mine = [w for w in windows if w.side == side]
    names = sorted({s for w in mine for s in w.service_cpu})
    throttled: dict[str, int] = {}
    for w in mine:
        for s, n in w.throttled.items():
            throttled[s] = throttled.get(s, 0) + n
    return IdleSummary(
        side, len(mine), sum(w.seconds for w in mine) / len(mine) if mine else math.nan,
        {m: spread(w.module_cores().get(m, 0.0) for w in mine) for m in IDLE_MODULES},
        {s: spread(w.service_cores().get(s, 0.0) for w in mine) for s in names},
        spread(w.total_cores() for w in mine),
        spread(w.host_busy / w.seconds if w.seconds > 0 else math.nan for w in mine),
        throttled, pooled(mine))


def pooled(windows: list[IdleWindow]) -> float:
    """CPU seconds of every service over all windows, divided by their seconds (NaN without any)."""
    seconds = sum(w.seconds for w in windows)
    return sum(sum(w.service_cpu.values()) for w in windows) / seconds if seconds > 0 else math.nan


def table(summaries: list[IdleSummary], digits: int = 4) -> list[str]:
    """Cores per module (and in all), one column per side; modules that used nothing on every side left out."""
    w, label = 28, 22
    lines = [f"{'cores, idle':{label}}" + "".join(f" {s.side:>{w}}" for s in summaries)]
    for m in IDLE_MODULES:
        if all(s.modules[m].n == 0 or s.modules[m].high == 0 for s in summaries):
            continue
        lines.append(f"{'  ' + m:{label}}" + "".join(f" {s.modules[m].text(digits):>{w}}" for s in summaries))
    lines.append(f"{'  in all':{label}}" + "".join(f" {s.total.text(digits):>{w}}" for s in summaries))
    lines.append(f"{'  in all, time average':{label}}" + "".join(f" {s.pooled:>{w}.{digits}f}" for s in summaries))
    lines.append(f"{'  host busy':{label}}" + "".join(f" {s.host.text(2):>{w}}" for s in summaries))
    return lines


def service_lines(summary: IdleSummary, digits: int = 4) -> list[str]:
    """Every service's cores (median and min-max), highest first, and its throttled periods."""
    rows = sorted(summary.services.items(), key=lambda kv: -(kv[1].median if kv[1].n else 0))
    return [f"  {name:28} {s.text(digits):>26}" + (f"  throttled {summary.throttled[name]}x"
                                                     if summary.throttled.get(name) else "") for name, s in rows]


def idle_line(summary: IdleSummary, date: str) -> str:
    """The last line: the idle stack in cores, dated, and the issue's goal. A figure, never an assertion."""
    if summary.total.n == 0:
        return f"idle ({date}): no window measured"
    met = "met" if summary.total.median <= GOAL_CORES else "not met"
    return (f"idle ({date}): {summary.side} = {summary.total.median:.3f} cores ({summary.total.low:.3f}-"
            f"{summary.total.high:.3f}) over {summary.total.n} windows of {summary.seconds:.0f}s, time average "
            f"{summary.pooled:.3f}; goal <= {GOAL_CORES:g} core: {met}")


__all__ = ["GOAL_CORES", "IDLE_MODULES", "IdleSummary", "IdleWindow", "cores", "idle_line", "pooled",
           "service_lines", "summarise", "table"]
