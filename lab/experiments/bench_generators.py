"""`lab bench loadgen --generators K`: does the fan-out hold a rate that one generator process cannot?

One process and K processes (lab.load.fanout) offer the same constant rate of pings to a cheap page on 127.0.0.1,
in one run, interleaved (the first repeat one process first, the second K first, ...) so a noisy shared machine
hits both sides alike. Per side: the rate held (attempts launched per second of schedule, against the offered
rate), the lag between each attempt's scheduled and actual start (p50, p99), errors and the generator's CPU per
1,000 requests; printed as the median (min-max) over the repeats.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import numpy as np

from lab.errors import InputError
from lab.load.fanout import run_fanout
from lab.load.recipes import PingJourney
from lab.load.runner import RunSummary, run_open
from lab.load.workload import ConstantWorkload

LOCAL_HOSTS = ("127.0.0.1", "localhost")
PAUSE = 1.0  # seconds between measurements: the previous side's connections close


@dataclass
class Sample:
    """One side of one repeat."""

    generators: int
    repeat: int
    offered: float
    achieved: float
    launched: int
    dropped: int
    errors: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    cpu_seconds: float
    seconds: float

    @property
    def held(self) -> float:
        return self.achieved / self.offered

    @property
    def cpu_per_1000(self) -> float:
        return 1000 * self.cpu_seconds / max(1, self.launched)


@dataclass
class GeneratorsBench:
    target: str
    rate: float
    seconds: float
    generators: int
    repeats: int
    started: str  # UTC, ISO 8601
    samples: list[Sample] = field(default_factory=list)

    def side(self, generators: int) -> list[Sample]:
        return [s for s in self.samples if s.generators == generators]

    def lines(self) -> list[str]:
        def spread(values: list[float], fmt: str) -> str:
            return f"{np.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"

        out = [f"{self.started} UTC: {self.rate:g}/s offered for {self.seconds:g} s to {self.target}, "
               f"{self.repeats} interleaved repeats; median (min-max)",
               f"{'generators':>10} {'rate held /s':>24} {'held %':>22} {'lag p50 ms':>22} {'lag p99 ms':>24} "
               f"{'CPU s/1000':>20} {'errors':>7} {'dropped':>8}"]
        for k in sorted({1, self.generators}):
            side = self.side(k)
            if not side:
                continue
            out.append(f"{k:>10} {spread([s.achieved for s in side], '.1f'):>24} "
                       f"{spread([100 * s.held for s in side], '.1f'):>22} "
                       f"{spread([s.lag_p50_ms for s in side], '.1f'):>22} "
                       f"{spread([s.lag_p99_ms for s in side], '.1f'):>24} "
                       f"{spread([s.cpu_per_1000 for s in side], '.2f'):>20} "
                       f"{sum(s.errors for s in side):>7} {sum(s.dropped for s in side):>8}")
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "samples": [{**asdict(s), "held": s.held, "cpu_per_1000": s.cpu_per_1000}
                                            for s in self.samples]}


def check_local(base_url: str) -> None:
    """The network rule: a bench sends load to 127.0.0.1 only."""
    host = urlsplit(base_url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise InputError.of("--target", "--target", f"{base_url}: the generator bench sends load to 127.0.0.1 "
                            "only", LOCAL_HOSTS)


def _errors(summary: RunSummary) -> int:
    return summary.failed_total + summary.outcomes.get("failed", 0) + summary.cancelled


def _sample(generators: int, repeat: int, rate: float, seconds: float, summary: RunSummary,
            cpu: float) -> Sample:
    return Sample(generators=generators, repeat=repeat, offered=rate, achieved=summary.achieved_rate,
                  launched=summary.launched, dropped=summary.dropped, errors=_errors(summary),
                  lag_p50_ms=summary.lag_p50_ms, lag_p99_ms=summary.lag_p99_ms, lag_max_ms=summary.lag_max_ms,
                  cpu_seconds=cpu, seconds=seconds)


async def _one(recipe: PingJourney, workload: ConstantWorkload) -> tuple[RunSummary, float]:
    """The ordinary single-process generator, as `lab load` runs it."""
    async with recipe.build(None) as journey:
        cpu0 = time.process_time()
        summary = await run_open(workload, journey)
        return summary, time.process_time() - cpu0


def measure(recipe: PingJourney, rate: float, seconds: float, generators: int, repeat: int = 0,
            log=print) -> Sample:
    workload = ConstantWorkload(rate=rate, duration=seconds, grace=10, max_in_flight=max(100, int(rate * 2)))
    if generators == 1:
        summary, cpu = asyncio.run(_one(recipe, workload))
    else:
        result = asyncio.run(run_fanout(workload, recipe, generators, log=lambda _: None))
        summary, cpu = result.summary, result.cpu_seconds
    sample = _sample(generators, repeat, rate, seconds, summary, cpu)
    log(f"  repeat {repeat + 1}, {generators} generator(s): {sample.achieved:.1f}/s of {rate:g} "
        f"({100 * sample.held:.1f}%), lag p50 {sample.lag_p50_ms:.1f} ms p99 {sample.lag_p99_ms:.1f} ms, "
        f"{sample.errors} errors, {sample.dropped} dropped, CPU {sample.cpu_per_1000:.2f} s/1000")
    return sample


def bench_generators(base_url: str, rate: float, seconds: float, generators: int, repeats: int = 3, *,
                     ca_file: str | None = None, path: str = "/lab-ping", clients: int = 8,
                     log=print) -> GeneratorsBench:
    """1 vs `generators` processes at the same offered rate, interleaved, `repeats` times (load to 127.0.0.1)."""
    check_local(base_url)
    recipe = PingJourney(base_url, path=path, clients=clients, ca_file=ca_file)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    bench = GeneratorsBench(target=f"{base_url}{path}", rate=rate, seconds=seconds, generators=generators,
                            repeats=repeats, started=started)
    for repeat in range(repeats):
        order = sorted({1, generators}, reverse=repeat % 2 == 1)  # odd repeats one process first
        for k in order:
            bench.samples.append(measure(recipe, rate, seconds, k, repeat, log))
            time.sleep(PAUSE)
    return bench


__all__ = ["GeneratorsBench", "Sample", "bench_generators", "check_local", "measure"]
