"""`lab bench efficiency`: the deployed HA stack against pretix alone, in one run, interleaved.

Figures from different days do not compare on this shared machine, so both sides are measured in the same run by
the same generator with the same steps, alternating which goes first (repeat 1: stack then alone; repeat 2: alone
then stack; ...) after a short warm-up of each, and each figure is a median over the repeats with its min-max. The
alone side's whole life (start from a copy of the stack's database, wait, measure, remove) is here, removed in a
finally.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.analysis import costs, pyspy
from lab.analysis import efficiency as eff
from lab.common.paths import bench_path
from lab.experiments import bench as b
from lab.experiments.bench_capacity import DEFAULT_P95
from lab.experiments.bench_profile import ProfiledStep, ProfileError, ensure_pyspy, profiled_step
from lab.experiments.capacity import journey_builder
from lab.stack import alone, pgstat, tuning
from lab.stack.containers import container, project_containers, service_of
from lab.stack.cpu import stack_seconds

# api: from a slow day's edge to past pretix alone's on a fast day (docs/findings.md); a side that still meets the
# SLO at the last step is reported as a floor
DEFAULT_RATES = {"api": (3.0, 4.5, 6.0, 7.5, 9.0, 10.5, 12.0, 13.5, 15.0, 18.0, 21.0),
                 "shop": (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)}
DEFAULT_SECONDS = {"api": 20.0, "shop": 40.0}
SETTLE_CORES = 0.3  # a side counts as drained when it uses less than this over a second
WARMUP_SECONDS = 5.0  # a step before the first repeat, so neither side's first step pays for a cold start
SETTLE_MAX = 60.0  # seconds to wait at most for a saturated side to drain before the other side is measured


@dataclass
class EfficiencyResult:
    journey: str
    repeats: list[eff.SideRepeat]
    stack: eff.SideSummary
    alone: eff.SideSummary
    figures: Path | None = None
    payload: dict = field(default_factory=dict)
    profiles: dict[str, ProfiledStep] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [line for which, step in self.profiles.items() for program, p in step.profiles.items()
               for line in pyspy.lines(f"{which} {program}", p, pyspy.DOING[program])]
        if self.profiles:
            out += profile_lines(self.profiles)
        out += eff.table(self.stack, self.alone)
        out.append("(median over the repeats, min-max in brackets; CPU at the top sustained step of each repeat, "
                   "generator = this process; idle cores = the host's, other work on the machine included)")
        if (note := eff.capped_note(self.repeats)) is not None:
            out.append(note)
        if self.figures is not None:
            out.append(f"figures saved: {self.figures}")
        out.append(eff.efficiency_line(self.stack.sustained.median, self.alone.sustained.median))
        return out


def side_repeat(side: str, repeat: int, best: b.Step | None, cores: int, capped: bool = False) -> eff.SideRepeat:
    """One search's top sustained step -> its figures (sustained 0 and no costs when no step met the SLO);
    `capped`: that step was the highest offered, so the side never broke."""
    if best is None:
        return eff.SideRepeat(side, repeat, 0.0, None, 0)
    modules = eff.by_module(best.stack_cpu, best.generator_cpu)
    return eff.SideRepeat(side, repeat, best.achieved_per_min, best.rate, best.purchased,
                          eff.per_order(modules, best.purchased), eff.idle_cores(cores, best.host_busy, best.wall),
                          capped)


def top_rate(results: list[eff.SideRepeat], side: str, steps: list[float]) -> float:
    """The side's top sustained rate (median over its repeats), or the lowest step when none was sustained."""
    rates = [r.rate for r in results if r.side == side and r.rate is not None]
    return eff.spread(rates).median if rates else min(steps)


def settle(read_cpu: Callable[[], dict[str, float]], log=print) -> float:
    """Wait (at most SETTLE_MAX s) until a side that was just saturated has drained its backlog, so its leftover
    work is not counted against the other side. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_MAX:
        before = sum(read_cpu().values())
        time.sleep(1.0)
        if sum(read_cpu().values()) - before < SETTLE_CORES:
            break
    waited = time.monotonic() - started
    if waited >= SETTLE_MAX:
        log(f"  (still busy after {SETTLE_MAX:.0f}s of waiting: going on)")
    return waited


def profile_lines(profiles: dict[str, ProfiledStep]) -> list[str]:
    """The profiled steps' top costs per order (lab.analysis.costs), with what each step was."""
    out = ["top costs per order, one profiled step per side (" + "; ".join(
        f"{which} {s.orders} orders at {s.rate:g}/s in {s.seconds:g}s" for which, s in profiles.items()) +
        "): ms/order: gunicorn and celery = GIL-held Python (py-spy; a process waiting for a core counts too), "
        "postgres = statement execution in pretix's database, lock waits included (pg_stat_statements); CPU ms = the "
        "containers' CPU per order (cgroups) split by py-spy's shares; share = of the serving samples or time:"]
    out += costs.lines(costs.top_costs({which: asdict(s) for which, s in profiles.items()}))
    out += [f"  ({which}: {problem})" for which, s in profiles.items() for problem in s.problems]
    return out


PG_HOW = ("deploy with the stack parameter pg_stat_statements=true (`lab up --pg-stat-statements`, or "
          "`stack: {pg_stat_statements: true}` in a --params file); --profile reads it")


@contextmanager
def alone_side(ctx, log=print, pg_stat_statements: bool = False) -> Iterator[object]:
    """pretix alone for the block: started from a copy of the stack's database, always removed afterwards."""
    from lab.stack.deploy import saved_params
    from lab.stack.params import StackParams

    params = saved_params() or StackParams()
    started = time.monotonic()
    try:
        side = alone.start(ctx.docker, params.web_workers, params.worker_concurrency, log=log,
                           tuning_env=tuning.pretix_env(params),  # the deployed stack's tuning knobs, alike
                           pg_stat_statements=pg_stat_statements, python=params.python)  # the stack's image
        log(f"pretix alone up at {side.base_url} in {time.monotonic() - started:.0f}s (gunicorn "
            f"{params.web_workers} workers, celery concurrency {params.worker_concurrency}, no limits)")
        yield side
    finally:
        left = alone.remove(ctx.docker)
        log("pretix alone removed" if not left else f"pretix alone: left behind: {', '.join(left)}")


def profile_targets(ctx, which: str, side) -> tuple[dict[str, list], object]:
    """A side's containers to profile: gunicorn's and celery's (py-spy), and its read-write PostgreSQL."""
    if which == "alone":
        return ({"gunicorn": [side.containers[alone.WEB]], "celery": [side.containers[alone.WORKER]]},
                side.containers[alone.POSTGRES])
    running = project_containers(ctx.docker)
    return ({"gunicorn": [c for c in running if service_of(c).startswith("pretix-web")],
             "celery": [c for c in running if service_of(c).startswith("pretix-worker")]},
            container(ctx.docker, "postgres-primary"))


def bench_efficiency(ctx, journey: str = "api", rates: tuple[float, ...] | None = None,
                     seconds: float | None = None, repeats: int = 3, *, p95_limit: float | None = None,
                     profile: bool = False, log=print) -> EfficiencyResult:
    """Step both sides up to saturation `repeats` times, alternating which goes first; medians per side. With
    `profile`, one more step per side at its top sustained rate runs under py-spy (gunicorn and celery) and
    pg_stat_statements (its figures are not used for the efficiency); the stack must have been deployed with the
    parameter pg_stat_statements, checked before anything is measured."""
    from lab.stack import admission

    steps = list(rates or DEFAULT_RATES[journey])
    seconds = seconds or DEFAULT_SECONDS[journey]
    p95_limit = p95_limit if p95_limit is not None else DEFAULT_P95[journey]
    cores = os.cpu_count() or 1
    build = journey_builder(ctx, journey)
    name = f"efficiency-{journey}"
    folder = bench_path(name)  # each step's run folder; the figures go beside it at the end
    counter = itertools.count()
    results: list[eff.SideRepeat] = []
    raw: list[dict] = []
    profiles: dict[str, ProfiledStep] = {}
    if profile:  # fail before the long search, not after it
        ensure_pyspy()
        pgstat.require(container(ctx.docker, "postgres-primary"), PG_HOW)
    with admission.applied(admission.OFF, docker_client=ctx.docker, access=ctx.access, log=log), \
            alone_side(ctx, log=log, pg_stat_statements=profile) as side:
        stack_cpu = lambda: stack_seconds(ctx.docker)  # noqa: E731
        where = {"stack": (ctx.access.base_url, ctx.access.tls(), stack_cpu),
                 "alone": (side.base_url, ctx.access.tls(), side.cpu_seconds)}  # type: ignore[attr-defined]
        log(f"{journey} journey, steps {'/'.join(f'{r:g}' for r in steps)} per s of {seconds:g}s each; SLO p95 <= "
            f"{p95_limit:g}s, failed <= 1%, goodput and latency trend as the study's; {repeats} repeats")
        for which, (base_url, tls, read_cpu) in where.items():  # a fresh gunicorn's first requests load code
            asyncio.run(b.constant_step(lambda base_url=base_url, tls=tls, which=which: build(
                folder / f"warmup-{which}", base_url, tls, None), min(steps), WARMUP_SECONDS))
            settle(read_cpu, log=log)
        log(f"both sides warmed up ({WARMUP_SECONDS:g}s at {min(steps):g}/s each, not counted)")
        for repeat in range(repeats):
            order = eff.SIDES if repeat % 2 == 0 else tuple(reversed(eff.SIDES))
            for which in order:
                base_url, tls, read_cpu = where[which]
                log(f"repeat {repeat + 1}/{repeats}, {which}:")

                def make(which=which, base_url=base_url, tls=tls, repeat=repeat):
                    return build(folder / f"r{repeat + 1}-{which}-{next(counter):02d}", base_url, tls, None)

                found, best = b.capacity_search(make, ctx.docker, steps, seconds, p95_limit=p95_limit,
                                                journey=journey, log=log, cpu=read_cpu)
                results.append(side_repeat(which, repeat + 1, best, cores,
                                           capped=best is not None and best is found[-1] and len(found) == len(steps)))
                raw.append({"side": which, "repeat": repeat + 1, "steps": found,
                            "best_rate": best.rate if best else None})
                waited = settle(read_cpu, log=log)
                if waited > 2:
                    log(f"  ({which} drained for {waited:.0f}s before the next measurement)")
        if profile:
            for which in eff.SIDES:
                base_url, tls, read_cpu = where[which]
                rate = top_rate(results, which, steps)
                log(f"profiling {which}'s gunicorn and celery (py-spy) and PostgreSQL (pg_stat_statements) for one "
                    f"{seconds:g}s step at {rate:g}/s:")
                try:
                    targets, pg = profile_targets(ctx, which, side)
                    pgstat.prepare(pg)
                    profiles[which] = profiled_step(
                        lambda base_url=base_url, tls=tls, which=which: build(
                            folder / f"profile-{which}", base_url, tls, None), rate, seconds, targets,
                        folder / f"profile-{which}-pyspy", postgres=pg, cpu=read_cpu)
                except (ProfileError, pgstat.StatementsError, OSError) as error:  # the measurement above stands
                    log(f"  no profile of {which}: {error}")
                settle(read_cpu, log=log)
    stack, alone_summary = eff.summarise("stack", results), eff.summarise("alone", results)
    payload = {"journey": journey, "rates": steps, "seconds": seconds, "repeats": repeats, "p95_limit": p95_limit,
               "cores": cores, "searches": raw, "per_repeat": results,
               "summary": {"stack": stack, "alone": alone_summary,
                           "ratio": eff.ratio(stack.sustained.median, alone_summary.sustained.median)}}
    payload["profile"] = {which: asdict(step) for which, step in profiles.items()}  # lab.analysis.costs reads it
    result = EfficiencyResult(journey, results, stack, alone_summary, payload=payload, profiles=profiles)
    result.figures = b.save(name, payload)
    return result


__all__ = ["DEFAULT_RATES", "DEFAULT_SECONDS", "EfficiencyResult", "alone_side", "bench_efficiency",
           "profile_lines", "profile_targets", "side_repeat", "settle"]
