"""`lab bench efficiency --compare-stack SPEC`: the deployed stack with its own knobs (A) against the same stack with
SPEC's knobs (B), in one run, interleaved.

Unlike --compare-tuning (two pretix-alone sides at once), the HA and lab knobs (lab/stack/hacost.py: health checks,
cron, celery's gossip) live in the stack itself, so the one deployment is converged to A and to B in turn (`lab up`
with the other parameters: compose recreates only what changed; the database volume stays). Each repeat measures
both sides, alternating which goes first: an idle window (cores per module with no load), then every rate (CPU per
order per module, the generator left out). The stack is converged back to A at the end, whatever happened.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lab.analysis import efficiency as eff
from lab.analysis import idle
from lab.analysis import tuning as tun
from lab.common.paths import bench_path
from lab.errors import InputError
from lab.experiments import bench as b
from lab.experiments.bench_capacity import DEFAULT_P95
from lab.experiments.bench_efficiency import DEFAULT_SECONDS, WARMUP_SECONDS, settle
from lab.experiments.bench_idle import now_utc, window
from lab.experiments.capacity import journey_builder
from lab.stack import hacost, tuning
from lab.stack.cpu import stack_seconds, stack_throttled
from lab.stack.params import StackParams

DEFAULT_RATES = {"api": (3.0, 6.0), "shop": (0.5, 1.0)}  # below saturation: cost per order, not capacity
IDLE_SECONDS = 30.0
# what a variant may change: the knobs of this module and the tuning knobs; never the deployment's identity (ports,
# networks) nor what the study fixes for durability (replication)
VARIABLE = (*hacost.KNOBS, *tuning.KNOBS, "limits", "redis_down_after_ms")
SIDES = tun.SIDES  # "stock" = A, the deployed knobs; "tuned" = B, SPEC's


def variant_params(spec: str, deployed: StackParams) -> StackParams:
    """SPEC (a parameter file, or `defaults`: every HA/lab knob at its default) over the deployed parameters."""
    from lab.stack import params as stack_params

    if spec == "defaults":
        return deployed.model_copy(update=hacost.stock())
    path = Path(spec)
    if not path.is_file():
        raise InputError.of("bench parameters", "--compare-stack", f"{spec!r} is not a file; allowed: defaults or "
                            "a parameter file", ("defaults", "a parameter file"))
    given = stack_params.load(path)
    bad = sorted(set(given.model_fields_set) - set(VARIABLE))
    if bad:
        raise InputError.of("bench parameters", f"stack.{bad[0]}", f"--compare-stack cannot vary {', '.join(bad)} "
                            f"(the deployment's identity or durability); allowed: {', '.join(VARIABLE)}", VARIABLE)
    return stack_params.validate({**deployed.model_dump(), **given.model_dump(include=given.model_fields_set)})


def describe(params: StackParams) -> str:
    return f"{hacost.describe(hacost.knobs(params))}; tuning: {tuning.describe(tuning.knobs(params))}"


@dataclass
class StackKnobsResult:
    spec: str
    started: str
    a: StackParams
    b: StackParams
    rows: list[tun.RateSummary]
    idle: dict[str, idle.IdleSummary]
    figures: Path | None = None
    payload: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"A (stock column) = the deployed stack: {describe(self.a)}",
               f"B (tuned column) = {self.spec}: {describe(self.b)}"]
        out += idle.table([self.idle[s] for s in SIDES])
        out += tun.table(self.rows)
        out.append("(median over the repeats, min-max in brackets; idle = cores with no load; CPU per order = every "
                   "container of the stack, the generator left out; tuned/stock = B/A paired per repeat)")
        if self.figures is not None:
            out.append(f"figures saved: {self.figures}")
        ratios = "; ".join(f"{r.rate:g}/s {r.ratio.text(3)}" for r in self.rows if r.ratio.n)
        out.append(f"stack knobs ({self.started}): B/A CPU per order = {ratios or '-'}; idle cores A "
                   f"{self.idle['stock'].total.text(3)}, B {self.idle['tuned'].total.text(3)}")
        return out


def converge(params: StackParams, log=print) -> float:
    """`lab up` with these parameters (compose recreates what changed); seconds it took."""
    from lab.stack import deploy

    started = time.monotonic()
    deploy.up(params, log=lambda _m: None)
    return time.monotonic() - started


def measure_side(ctx, journey: str, which: str, repeat: int, steps: list[float], seconds: float,
                 idle_seconds: float, p95_limit: float, folder: Path, counter: Iterator[int],
                 log=print) -> tuple[idle.IdleWindow, list[tuple[tun.TuningPoint, b.Step, dict[str, int]]]]:
    """One side as converged: a warm-up (not counted), an idle window, then every rate."""
    build = journey_builder(ctx, journey)
    tls = ctx.access.tls()

    def read() -> dict[str, float]:
        return stack_seconds(ctx.docker)

    def make(tag: str):
        return lambda: build(folder / f"r{repeat}-{which}-{tag}-{next(counter):02d}", None, tls, None)

    asyncio.run(b.constant_step(make("warmup"), min(steps), WARMUP_SECONDS))
    settle(read, log=log)
    w = window(ctx.docker, which, repeat, idle_seconds)
    log(f"  idle {w.seconds:.0f}s: {w.total_cores():.4f} cores")
    out = []
    for rate in steps:
        before = stack_throttled(ctx.docker)
        found, _ = b.capacity_search(make("step"), ctx.docker, [rate], seconds, p95_limit=p95_limit,
                                     journey=journey, log=log, cpu=read)
        step = found[0]
        after = stack_throttled(ctx.docker)
        throttled = {k: after[k] - before[k] for k in after if k in before and after[k] > before[k]}
        if throttled:
            log(f"  CPU quota throttled: {', '.join(f'{k} {v}x' for k, v in sorted(throttled.items()))}")
        out.append((tun.TuningPoint(which, repeat, rate, step.purchased, step.achieved_per_min, step.p95,
                                    step.meets(p95_limit, 0.01),
                                    eff.per_order(eff.by_module(step.stack_cpu), step.purchased)), step, throttled))
        settle(read, log=log)
    return w, out


def bench_stack_knobs(ctx_load, variant: StackParams, spec: str, journey: str = "api",
                      rates: tuple[float, ...] | None = None, seconds: float | None = None, repeats: int = 3, *,
                      idle_seconds: float = IDLE_SECONDS, p95_limit: float | None = None,
                      log=print) -> StackKnobsResult:
    """A and B in turn, `repeats` times, alternating which goes first; the stack ends converged back to A.
    `ctx_load` gives the deployed stack's LabContext afresh (after each converge)."""
    from lab.stack.deploy import saved_params

    deployed = saved_params() or StackParams()
    sides = {"stock": deployed, "tuned": variant}
    steps = list(rates or DEFAULT_RATES[journey])
    seconds = seconds or DEFAULT_SECONDS[journey]
    p95_limit = p95_limit if p95_limit is not None else DEFAULT_P95[journey]
    name = f"stack-knobs-{journey}"
    folder = bench_path(name)
    counter = itertools.count()
    started = now_utc()
    points: list[tun.TuningPoint] = []
    windows: list[idle.IdleWindow] = []
    raw: list[dict] = []
    log(f"A = deployed: {describe(deployed)}\nB = {spec}: {describe(variant)}\n{journey} journey, idle "
        f"{idle_seconds:g}s then rates {'/'.join(f'{r:g}' for r in steps)} per s of {seconds:g}s per side; {repeats} "
        f"repeats; started {started}")
    try:
        for repeat in range(1, repeats + 1):
            order = SIDES if repeat % 2 else tuple(reversed(SIDES))
            for which in order:
                took = converge(sides[which], log)
                log(f"repeat {repeat}/{repeats}, {'A' if which == 'stock' else 'B'}: converged in {took:.0f}s")
                w, mine = measure_side(ctx_load(), journey, which, repeat, steps, seconds, idle_seconds, p95_limit,
                                       folder, counter, log)
                windows.append(w)
                points += [p for p, _, _ in mine]
                raw += [{"side": which, "repeat": repeat, "step": step, "throttled": t} for _, step, t in mine]
    finally:
        took = converge(deployed, log)
        log(f"converged back to A in {took:.0f}s")
    rows = tun.summarise(points)
    summaries = {s: idle.summarise(windows, s) for s in SIDES}
    result = StackKnobsResult(spec, started, deployed, variant, rows, summaries)
    result.payload = {"journey": journey, "rates": steps, "seconds": seconds, "repeats": repeats,
                      "idle_seconds": idle_seconds, "p95_limit": p95_limit, "cores": os.cpu_count(), "spec": spec,
                      "started": started, "a": deployed.model_dump(), "b": variant.model_dump(),
                      "b_changed": {**hacost.changed(hacost.knobs(variant)), **tuning.changed(tuning.knobs(variant))},
                      "points": points, "steps": raw, "windows": windows, "summary": rows, "idle": summaries}
    result.figures = b.save(name, result.payload)
    return result


__all__ = ["DEFAULT_RATES", "StackKnobsResult", "VARIABLE", "bench_stack_knobs", "variant_params"]
