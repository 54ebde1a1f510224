"""The study's same-run comparison at one arrival rate: the deployed stack and pretix alone, interleaved.

`lab bench efficiency` searches both sides up to saturation (minutes per repeat); a study only needs to know, for the
deployment it measured, how much of an order's CPU is pretix's own and how much the HA parts and the lab add. So
here both sides get the same constant rate, well below the stack's capacity (a share of the capacity the study's
ramp just measured), for the same seconds, `repeats` times, alternating which goes first; each figure is a median
over the repeats with its min-max (lab.analysis.efficiency). Figures from another day do not compare with these:
only the ratio inside this run does, which is why the plan is built on it.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.analysis import efficiency as eff
from lab.experiments import bench as b
from lab.experiments.bench_efficiency import WARMUP_SECONDS, alone_side, settle, side_repeat
from lab.experiments.capacity import journey_builder
from lab.stack.cpu import stack_seconds

Log = Callable[[str], None]


def choose_rate(capacity_per_s: float | None, share: float, fallback: float) -> tuple[float, str]:
    """The comparison's arrival rate: `share` of the measured api capacity (both sides comfortable, so CPU per
    order is not inflated by a backlog), else the fallback rate; (rate, where it came from)."""
    if capacity_per_s is not None and capacity_per_s > 0 and math.isfinite(capacity_per_s):
        return round(max(0.5, capacity_per_s * share), 2), f"{share:.0%} of the api capacity ({capacity_per_s:g}/s)"
    return fallback, "the study's fallback rate (no api capacity measured)"


def measure(ctx, rate: float, seconds: float, repeats: int, folder: Path, *, journey: str = "api",
            log: Log = print) -> dict[str, Any]:
    """Both sides at `rate` for `seconds`, `repeats` times, alternating; the JSON-able record the report reads.

    Each step's CPU per order is counted over the step's own window on its side's containers only (the stack's
    compose services, or the alone side's), so the other side idling does not count."""
    build = journey_builder(ctx, journey)
    cores = os.cpu_count() or 1
    per_repeat: list[eff.SideRepeat] = []
    steps: list[dict[str, Any]] = []
    began, when = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    with alone_side(ctx, log=log) as side:
        where = {"stack": (ctx.access.base_url, lambda: stack_seconds(ctx.docker)),
                 "alone": (side.base_url, side.cpu_seconds)}  # type: ignore[attr-defined]
        warmup = min(WARMUP_SECONDS, seconds)
        for which, (base_url, read_cpu) in where.items():  # a fresh gunicorn's first requests load code
            asyncio.run(b.constant_step(lambda base_url=base_url, which=which: build(
                folder / f"warmup-{which}", base_url, ctx.access.tls(), None), rate, warmup))
            settle(read_cpu, log=log)
        for repeat in range(1, repeats + 1):
            order = eff.SIDES if repeat % 2 == 1 else tuple(reversed(eff.SIDES))
            for which in order:
                base_url, read_cpu = where[which]

                def make(which=which, base_url=base_url, repeat=repeat):
                    return build(folder / f"r{repeat}-{which}", base_url, ctx.access.tls(), None)

                log(f"repeat {repeat}/{repeats}, {which}:")
                found, _best = b.capacity_search(make, ctx.docker, [rate], seconds, p95_limit=math.inf,
                                                 journey=journey, log=log, cpu=read_cpu)
                step = found[0]
                per_repeat.append(side_repeat(which, repeat, step, cores))
                steps.append({"side": which, "repeat": repeat, **asdict(step)})
                settle(read_cpu, log=log)
    stack, alone = eff.summarise("stack", per_repeat), eff.summarise("alone", per_repeat)
    return {"measured_at": when, "journey": journey, "rate": rate, "seconds": seconds, "repeats": repeats,
            "cores": cores, "wall_seconds": round(time.monotonic() - began, 1), "steps": steps,
            "per_repeat": [asdict(r) for r in per_repeat],
            "summary": {"stack": asdict(stack), "alone": asdict(alone)}}


__all__ = ["choose_rate", "measure"]
