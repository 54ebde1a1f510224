"""`lab bench efficiency --compare-tuning SPEC`: pretix alone with stock settings against pretix alone with the
tuning knobs (lab/stack/tuning.py), in one run, interleaved. The knob `python` gives a side its own pretix image
(lab/stack/pybuild.py), so the same mechanism compares two Python builds.

Two alone sides run at once (variants "stock" and "tuned", each from its own copy of the stack's database, the same
image, the deployed stack's worker counts); only the side being measured gets load, and only its containers' CPU is
counted. Each repeat offers every rate to both sides back to back, alternating which goes first, so the tuned/stock
ratio of pretix's own CPU per order is a pair measured seconds apart. SPEC: a parameter file (its `stack:` section's
knobs), `deployed` (the knobs the stack was deployed with) or `stock` (an A/A run: both sides stock, which shows the
noise a real cut must clear).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab.analysis import efficiency as eff
from lab.analysis import tuning as tun
from lab.common.paths import bench_path, deploy_dir
from lab.errors import InputError
from lab.experiments import bench as b
from lab.experiments.bench_capacity import DEFAULT_P95
from lab.experiments.bench_efficiency import DEFAULT_SECONDS, WARMUP_SECONDS, settle
from lab.experiments.capacity import journey_builder
from lab.stack import alone, tuning
from lab.stack.params import StackParams

DEFAULT_TUNING_RATES = {"api": (3.0, 5.0), "shop": (0.5, 1.0)}  # below saturation: CPU per order, not capacity


def tuned_params(spec: str) -> StackParams:
    """SPEC -> the parameters whose knobs the tuned side runs with (other fields are not used)."""
    from lab.stack import params as stack_params
    from lab.stack.deploy import saved_params

    if spec == "stock":
        return StackParams()
    if spec == "deployed":
        found = saved_params()
        if found is None:
            raise InputError.of("bench parameters", "--compare-tuning", "no deployed stack here to take the knobs "
                                "from; allowed: stock, deployed or a parameter file",
                                ("stock", "deployed", "a parameter file"))
        return found
    path = Path(spec)
    if not path.is_file():
        raise InputError.of("bench parameters", "--compare-tuning", f"{spec!r} is not a file; allowed: stock, "
                            "deployed or a parameter file", ("stock", "deployed", "a parameter file"))
    return stack_params.load(path)


def counts(params: StackParams, deployed: StackParams) -> tuple[int, int]:
    """gunicorn workers and celery processes of a side: the file's when it sets them, else the deployed stack's."""
    given = params.model_fields_set
    return (params.web_workers if "web_workers" in given else deployed.web_workers,
            params.worker_concurrency if "worker_concurrency" in given else deployed.worker_concurrency)


def side_env(params: StackParams) -> dict[str, str]:
    """The tuning env of one alone side, with pretix's metrics on as in the stack when the knob says so (they need
    the deployment's metrics credentials; pretix alone otherwise runs without metrics)."""
    env = tuning.pretix_env(params)
    if params.pretix_metrics:
        s = json.loads((deploy_dir() / "secrets.json").read_text())
        env.update({"PRETIX_METRICS_ENABLED": "true", "PRETIX_METRICS_USER": s["metrics_user"],
                    "PRETIX_METRICS_PASSPHRASE": s["metrics_password"]})
    return env


@dataclass
class TuningResult:
    journey: str
    tuned: dict
    rows: list[tun.RateSummary]
    figures: Path | None = None
    payload: dict = field(default_factory=dict)
    counts: tuple[int, int] | None = None  # the tuned side's gunicorn workers and celery processes
    sustained: str = ""  # each side's purchases/min at its highest rate within the SLO

    def lines(self) -> list[str]:
        out = [f"tuned knobs: {tuning.describe(self.tuned)}"
               + (f"; gunicorn {self.counts[0]} workers, celery concurrency {self.counts[1]}" if self.counts else "")]
        out += tun.table(self.rows)
        out.append("(median over the repeats, min-max in brackets; pretix CPU = every container of the alone side, "
                   "the generator left out)")
        if self.sustained:
            out.append(self.sustained)
        if self.figures is not None:
            out.append(f"figures saved: {self.figures}")
        out.append(tun.verdict_line(self.rows))
        return out


@contextmanager
def two_sides(ctx, deployed: StackParams, sides: dict[str, StackParams],
              log=print) -> Iterator[dict[str, alone.AloneSide]]:
    """Both alone sides for the block, always removed afterwards."""
    started: dict[str, alone.AloneSide] = {}
    try:
        for which, params in sides.items():
            t0 = time.monotonic()
            web, worker = counts(params, deployed)
            started[which] = alone.start(ctx.docker, web, worker, log=log, tuning_env=side_env(params),
                                         variant=which, python=params.python)
            log(f"pretix alone ({which}: {tuning.describe(tuning.knobs(params))}; gunicorn {web} workers, celery "
                f"concurrency {worker}) up at {started[which].base_url} in {time.monotonic() - t0:.0f}s")
        yield started
    finally:
        for which in sides:
            left = alone.remove(ctx.docker, which)
            log(f"pretix alone ({which}) removed" if not left else f"pretix alone: left behind: {', '.join(left)}")


def interleave(ctx, sides: dict, journey: str, steps: list[float], seconds: float, repeats: int, p95_limit: float,
               folder: Path, log=print) -> tuple[list[tun.TuningPoint], list[dict]]:
    """Warm every side up, then every rate to every side, `repeats` times, alternating which goes first; a side is
    anything with `base_url` and `cpu_seconds()` (only the measured side's CPU is counted). Returns the points and
    the raw steps."""
    build = journey_builder(ctx, journey)
    counter = itertools.count()
    points: list[tun.TuningPoint] = []
    raw: list[dict] = []
    names = tuple(sides)
    tls = ctx.access.tls()
    for which, side in sides.items():  # a fresh gunicorn's first requests load code
        asyncio.run(b.constant_step(lambda side=side, which=which: build(
            folder / f"warmup-{which}", side.base_url, tls, None), min(steps), WARMUP_SECONDS))
        settle(side.cpu_seconds, log=log)
    log(f"{journey} journey, rates {'/'.join(f'{r:g}' for r in steps)} per s of {seconds:g}s each, both sides "
        f"warmed up; {repeats} repeats")
    for repeat in range(1, repeats + 1):
        order = names if repeat % 2 else tuple(reversed(names))
        for rate in steps:
            for which in order:
                side = sides[which]
                log(f"repeat {repeat}/{repeats}, {which}:")

                def make(side=side, which=which, repeat=repeat):
                    return build(folder / f"r{repeat}-{which}-{next(counter):02d}", side.base_url, tls, None)

                found, _ = b.capacity_search(make, ctx.docker, [rate], seconds, p95_limit=p95_limit,
                                             journey=journey, log=log, cpu=side.cpu_seconds)
                step = found[0]
                modules = eff.by_module(step.stack_cpu)
                points.append(tun.TuningPoint(which, repeat, rate, step.purchased, step.achieved_per_min,
                                              step.p95, step.meets(p95_limit, 0.01),
                                              eff.per_order(modules, step.purchased)))
                raw.append({"side": which, "repeat": repeat, "step": step})
                settle(side.cpu_seconds, log=log)
    return points, raw


def bench_tuning(ctx, tuned: StackParams, spec: str, journey: str = "api", rates: tuple[float, ...] | None = None,
                 seconds: float | None = None, repeats: int = 3, *, p95_limit: float | None = None,
                 log=print) -> TuningResult:
    """Every rate to both sides, `repeats` times, alternating which goes first; medians and paired ratios."""
    from lab.stack.deploy import saved_params

    deployed = saved_params() or StackParams()
    steps = list(rates or DEFAULT_TUNING_RATES[journey])
    seconds = seconds or DEFAULT_SECONDS[journey]
    p95_limit = p95_limit if p95_limit is not None else DEFAULT_P95[journey]
    name = f"tuning-{journey}"
    folder = bench_path(name)
    with two_sides(ctx, deployed, {"stock": StackParams(), "tuned": tuned}, log=log) as sides:
        points, raw = interleave(ctx, sides, journey, steps, seconds, repeats, p95_limit, folder, log=log)
    rows = tun.summarise(points)
    payload = {"journey": journey, "rates": steps, "seconds": seconds, "repeats": repeats, "p95_limit": p95_limit,
               "cores": os.cpu_count(), "spec": spec, "tuned": tuning.knobs(tuned), "stock": tuning.stock(),
               "on": tuning.changed(tuning.knobs(tuned)),
               "counts": {"stock": counts(StackParams(), deployed), "tuned": counts(tuned, deployed)},
               "points": points, "steps": raw, "summary": rows, "verdict": tun.verdict_line(rows),
               "sustained": tun.sustained(points), "sustained_line": tun.sustained_line(points)}
    result = TuningResult(journey, tuning.knobs(tuned), rows, payload=payload, counts=counts(tuned, deployed),
                          sustained=tun.sustained_line(points))
    result.figures = b.save(name, payload)
    return result


__all__ = ["DEFAULT_TUNING_RATES", "TuningResult", "bench_tuning", "interleave", "side_env", "tuned_params"]
