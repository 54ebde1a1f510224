"""`lab bench capacity`: step the arrival rate up through the full stack until the SLO breaks, and the same steps
against one bare pretix web container (no proxy), so the ratio shows what the HA front costs.

The bare container's whole life (start, wait for health, measure, remove) is here, not in the CLI.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from lab.common.paths import bench_path
from lab.experiments import bench as b
from lab.experiments.capacity import journey_builder

DEFAULT_RATES = {"api": (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0), "shop": (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)}
DEFAULT_P95 = {"api": 1.0, "shop": 10.0}  # a whole 16-request shop checkout cannot finish in 1 s


@dataclass
class CapacityBench:
    journey: str
    full: b.Step | None
    bare: b.Step | None
    measured_bare: bool
    figures: Path | None = None
    payload: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        sustained = self.full.achieved_per_min if self.full else 0.0
        out = [f"sustained under the SLO, full stack: {sustained:.0f} purchases/min"]
        if self.measured_bare:
            bare_rate = self.bare.achieved_per_min if self.bare else 0.0
            ratio = sustained / bare_rate if bare_rate else float("nan")
            out.append(f"sustained under the SLO, one bare web container: {bare_rate:.0f} purchases/min; "
                       f"ratio full/bare = {ratio:.2f}")
        if self.full:
            gen, stack = self.full.generator_cpu, sum(self.full.stack_cpu.values())
            out.append(f"generator CPU at the sustained step: {gen:.1f}s = {gen / stack:.1%} of the stack's "
                       f"{stack:.1f}s")
        if self.figures is not None:
            out.append(f"figures saved: {self.figures}")
        return out


def bench_capacity(ctx, journey: str, rates: tuple[float, ...] | None = None, seconds: float = 20.0, *,
                   bare: bool = True, login_share: float = 0.2, p95_limit: float | None = None,
                   log=print) -> CapacityBench:
    """Full stack, then (with `bare`) one bare web container on a free 127.0.0.1 port with a web instance's limits
    (a fixed port could be another world's, e.g. the test suite's)."""
    steps = list(rates or DEFAULT_RATES[journey])
    p95_limit = p95_limit if p95_limit is not None else DEFAULT_P95[journey]
    build = journey_builder(ctx, journey, login_share=login_share)
    folder = bench_path(f"capacity-{journey}")  # each step's run folder; the figures go beside it at the end
    counter = itertools.count()

    def factory(base_url, tls, headers=None):
        return lambda: build(folder / f"step-{next(counter):02d}", base_url, tls, headers)

    log(f"full stack ({journey} journey, through the proxy; SLO p95 <= {p95_limit:g} s, errors <= 1%, "
        "goodput and latency trend as the study's):")
    full_steps, full = b.capacity_search(factory(ctx.access.base_url, ctx.access.tls()), ctx.docker, steps,
                                         seconds, p95_limit=p95_limit, journey=journey, log=log)
    result = CapacityBench(journey, full, None, bare, payload={"journey": journey, "full": full_steps})
    if bare:
        from lab.stack.alone import free_port

        port = free_port()
        container = b.bare_web_container(ctx.docker, port=port)
        try:
            headers = {"Host": ctx.access.base_url.split("//")[1], "X-Forwarded-Proto": "https"}
            b.wait_http(f"http://127.0.0.1:{port}/healthcheck/", headers)
            log("one bare pretix web container (no proxy, same limits as one web instance):")
            bare_steps, result.bare = b.capacity_search(
                factory(f"http://127.0.0.1:{port}", ctx.access.tls(), headers), ctx.docker, steps, seconds,
                p95_limit=p95_limit, journey=journey, log=log)
            result.payload["bare"] = bare_steps
        finally:
            container.remove(force=True)
    result.figures = b.save(f"capacity-{journey}", result.payload)
    return result


__all__ = ["DEFAULT_P95", "DEFAULT_RATES", "CapacityBench", "bench_capacity"]
