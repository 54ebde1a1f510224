"""`lab bench alone-host`: pretix alone in containers against pretix alone on the host, in one run, interleaved.

The efficiency benches measure pretix alone in containers (no limits, its own bridge network). Issue 12 accepts that
only if it is shown once to match pretix on the host within 10%: this bench is that showing. Both sides run the same
wheelhouse, pretix.cfg, settings, worker counts and tuning knobs, each from its own copy of the stack's database;
every rate goes to both sides back to back, alternating which goes first, so the host/containers ratio of pretix's
CPU per order is a pair measured seconds apart (median and min-max over the repeats).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab.analysis import tuning as tun
from lab.common.paths import bench_path
from lab.experiments import bench as b
from lab.experiments.bench_capacity import DEFAULT_P95
from lab.experiments.bench_efficiency import DEFAULT_SECONDS, alone_side
from lab.experiments.bench_tuning import DEFAULT_TUNING_RATES, interleave
from lab.stack import alone_host, tuning
from lab.stack.params import StackParams

SIDES = ("containers", "host")
MATCH_WITHIN = 0.10  # issue 12: the containers must match the host within this share


@dataclass
class HostMatchResult:
    journey: str
    rows: list[tun.RateSummary]
    figures: Path | None = None
    payload: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = tun.table(self.rows, SIDES)
        out.append("(median over the repeats, min-max in brackets; pretix CPU = web, worker, PostgreSQL and redis, "
                   "the generator left out)")
        if self.figures is not None:
            out.append(f"figures saved: {self.figures}")
        out.append(verdict_line(self.rows))
        return out


def verdict_line(rows: list[tun.RateSummary]) -> str:
    """The last line: containers/host CPU per order at each rate and whether it is within MATCH_WITHIN of 1."""
    measured = [r for r in rows if r.ratio.n]
    if not measured:
        return "alone-host: no rate measured both sides"
    # the table's ratio is host/containers (sides[1]/sides[0]); the line says containers/host
    parts = [f"{r.rate:g}/s {1 / r.ratio.median:.2f}" for r in measured]
    within = all(abs(1 / r.ratio.median - 1) <= MATCH_WITHIN for r in measured)
    return (f"alone-host: pretix CPU per order containers/host = {'; '.join(parts)}; within {MATCH_WITHIN:.0%}: "
            f"{'yes' if within else 'no'}")


@contextmanager
def host_side(ctx, params: StackParams, log=print) -> Iterator[alone_host.HostSide]:
    """pretix alone on the host for the block, always stopped afterwards."""
    side = None
    try:
        side = alone_host.start(ctx.docker, params.web_workers, params.worker_concurrency,
                                tuning_env=tuning.pretix_env(params), log=log)
        log(f"pretix alone on the host up at {side.base_url} (gunicorn {params.web_workers} workers, celery "
            f"concurrency {params.worker_concurrency})")
        yield side
    finally:
        left = alone_host.stop(side)
        log("pretix alone on the host stopped" if not left else f"pretix alone on the host: left {', '.join(left)}")


def bench_alone_host(ctx, journey: str = "api", rates: tuple[float, ...] | None = None, seconds: float | None = None,
                     repeats: int = 3, log=print) -> HostMatchResult:
    """Every rate to both sides, `repeats` times, alternating which goes first; medians and paired ratios."""
    from lab.stack.deploy import saved_params

    params = saved_params() or StackParams()
    steps = list(rates or DEFAULT_TUNING_RATES[journey])
    seconds = seconds or DEFAULT_SECONDS[journey]
    p95_limit = DEFAULT_P95[journey]
    name = f"alone-host-{journey}"
    folder = bench_path(name)
    with alone_side(ctx, log=log) as containers, host_side(ctx, params, log=log) as host:
        points, raw = interleave(ctx, {"containers": containers, "host": host}, journey, steps, seconds, repeats,
                                 p95_limit, folder, log=log)
    rows = tun.summarise(points, SIDES)
    payload = {"journey": journey, "rates": steps, "seconds": seconds, "repeats": repeats, "p95_limit": p95_limit,
               "cores": os.cpu_count(), "knobs": tuning.changed(tuning.knobs(params)),
               "counts": {"web_workers": params.web_workers, "worker_concurrency": params.worker_concurrency},
               "points": points, "steps": raw, "summary": rows, "verdict": verdict_line(rows)}
    result = HostMatchResult(journey, rows, payload=payload)
    result.figures = b.save(name, payload)
    return result


__all__ = ["HostMatchResult", "MATCH_WITHIN", "SIDES", "bench_alone_host", "host_side", "verdict_line"]
