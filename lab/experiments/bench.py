"""Benchmarks that print figures (never timed assertions): the load generator, and capacity under the SLO.

Ratios are measured within one run where possible, so a noisy shared machine cancels out.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from lab.common.paths import bench_path
from lab.load.http import new_client
from lab.load.runner import Attempt, run_open
from lab.load.workload import parse_workload
from lab.stack.cpu import delta, host_busy_seconds, process_seconds, stack_seconds

PING = "/lab-ping"


# --- the load generator -----------------------------------------------------------------------------

@dataclass
class GeneratorFigures:
    tool: str
    requests: int
    seconds: float
    achieved_rate: float
    target_rate: float | None
    cpu_seconds: float
    cpu_per_1000: float
    lag_p50_ms: float | None = None
    lag_p99_ms: float | None = None
    errors: int = 0
    note: str = ""


async def _ours(base_url: str, tls, rate: float, duration: float, clients: int) -> GeneratorFigures:
    pool = [new_client(base_url, tls) for _ in range(clients)]
    errors = 0
    counter = iter(range(10**9))

    async def ping(attempt: Attempt) -> None:
        nonlocal errors
        try:
            r = await pool[next(counter) % clients].get(PING)
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        errors += not ok
        attempt.outcome = "purchased" if ok else "failed"

    workload = parse_workload({"model": "constant", "rate": rate, "duration": duration, "grace": 10})
    cpu0 = process_seconds()
    summary = await run_open(workload, ping)
    cpu = process_seconds() - cpu0
    await asyncio.gather(*(c.aclose() for c in pool))
    return GeneratorFigures(
        tool="pretix-lab (httpx, open model)", requests=summary.launched, seconds=summary.wall_duration,
        achieved_rate=summary.achieved_rate, target_rate=rate, cpu_seconds=cpu,
        cpu_per_1000=1000 * cpu / max(1, summary.launched), lag_p50_ms=summary.lag_p50_ms,
        lag_p99_ms=summary.lag_p99_ms, errors=errors)


def _ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found is None and shutil.which("apt-get") and Path("/etc/debian_version").exists():
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True)
        found = shutil.which("wrk")
    return found


def _wrk(base_url: str, duration: float, connections: int = 16) -> GeneratorFigures:
    wrk = _ensure_wrk()
    if wrk is None:
        return GeneratorFigures("wrk", 0, 0, 0, None, 0, 0, note="wrk is not installed (apt-get install wrk)")
    cpu0 = process_seconds()
    out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{int(duration)}s", f"{base_url}{PING}"],
                         capture_output=True, text=True, timeout=duration + 30).stdout
    cpu = process_seconds() - cpu0
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    requests, secs = (int(match.group(1)), float(match.group(2))) if match else (0, duration)
    if match and match.group(3) == "ms":
        secs /= 1000
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return GeneratorFigures("wrk (closed loop, as fast as it can)", requests, secs, requests / secs, None, cpu,
                            1000 * cpu / max(1, requests), errors=int(errors.group(1)) if errors else 0,
                            note="wrk cannot verify TLS against our CA and keeps no schedule")


def _ensure_locust() -> str | None:
    """Locust is pinned in the `bench` extra; install it on first use (it is heavy: gevent)."""
    import sys

    binary = Path(sys.executable).parent / "locust"
    if not binary.exists():
        from lab.common.paths import ROOT

        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[bench]"],
                       capture_output=True)
    return str(binary) if binary.exists() else None


def _locust(base_url: str, rate: float, duration: float) -> GeneratorFigures:
    import csv
    import tempfile

    locust = _ensure_locust()
    if locust is None:
        return GeneratorFigures("locust", 0, 0, 0, rate, 0, 0, note="Locust could not be installed")
    users = max(1, int(rate))
    with tempfile.TemporaryDirectory() as tmp:
        cpu0 = process_seconds()
        subprocess.run([locust, "-f", str(Path(__file__).with_name("bench_locustfile.py")), "--headless",
                        "-u", str(users), "-r", str(users), "-t", f"{int(duration)}s", "--host", base_url,
                        "--only-summary", "--csv", f"{tmp}/stats", "--loglevel", "WARNING"],
                       capture_output=True, timeout=duration + 60)
        cpu = process_seconds() - cpu0
        with open(f"{tmp}/stats_stats.csv") as f:
            total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    return GeneratorFigures("locust 2.47 (FastHttpUser, constant_throughput)", requests, duration,
                            requests / duration, rate, cpu, 1000 * cpu / max(1, requests), errors=failures,
                            note="includes Locust's ramp-up; does not verify TLS")


def bench_loadgen(access, rates: tuple[float, ...] = (200.0, 1000.0), duration: float = 10.0,
                  clients: int = 8) -> list[GeneratorFigures]:
    """Our generator at fixed arrival rates, beside wrk, all against the proxy's cheap /lab-ping."""
    results = [asyncio.run(_ours(access.base_url, access.tls(), rate, duration, clients)) for rate in rates]
    results.append(_wrk(access.base_url, duration))
    results.append(_locust(access.base_url, rates[0], duration))
    return results


# --- capacity under the SLO ---------------------------------------------------------------------------

@dataclass
class Step:
    rate: float
    launched: int
    purchased: int
    sold_out: int
    failed: int
    dropped: int
    p50: float
    p95: float
    p99: float
    achieved_per_min: float
    generator_cpu: float
    stack_cpu: dict[str, float] = field(default_factory=dict)
    growth: float = float("nan")  # median latency of the last third of arrivals minus the first third's (s)
    journey: str = "api"
    wall: float = float("nan")  # seconds the step took, grace and drain included (its CPU counters' window)
    host_busy: float = float("nan")  # busy CPU seconds of the whole host over `wall` (/proc/stat)

    def error_share(self) -> float:
        return (self.failed + self.dropped) / max(1, self.launched + self.dropped)

    def row(self) -> dict:
        """This step as a run-table row, the shape the lab's one SLO definition (slo_misses) reads."""
        return {"journey": self.journey, "attempts": self.launched + self.dropped, "p95": self.p95,
                "error_rate": self.error_share(), "purchased": self.purchased + self.sold_out,
                "latency_growth": self.growth}

    def misses(self, p95_limit: float, error_limit: float) -> list[str]:
        """Why this step does not meet the SLO (empty when it does): lab.analysis.capacity.slo_misses."""
        from lab.analysis.capacity import slo_misses
        from lab.analysis.verdicts import Targets

        targets = Targets(slo_p95_seconds=p95_limit, slo_p95_shop_seconds=p95_limit, slo_error_rate=error_limit)
        return slo_misses(self.row(), targets)

    def meets(self, p95_limit: float, error_limit: float) -> bool:
        return not self.misses(p95_limit, error_limit)


async def constant_step(journey_factory, rate: float, seconds: float,
                        grace: float = 20.0) -> tuple[object, list[Attempt]]:
    """One constant-rate run of a fresh journey; (summary, the attempts that finished)."""
    finished: list[Attempt] = []

    def listen(event) -> None:
        if event.attempt is not None and event.kind != "launched":
            finished.append(event.attempt)

    workload = parse_workload({"model": "constant", "rate": rate, "duration": seconds, "grace": grace,
                               "max_in_flight": max(50, int(rate * 10))})
    journey = journey_factory()
    async with journey:
        summary = await run_open(workload, journey, on_event=listen)
    return summary, finished


def capacity_search(journey_factory, docker_client, rates: list[float], seconds: float = 20.0,
                    p95_limit: float = 1.0, error_limit: float = 0.01, journey: str = "api",
                    log=print, cpu: Callable[[], dict[str, float]] | None = None) -> tuple[list[Step], Step | None]:
    """Raise the arrival rate step by step until the SLO breaks (the study's definition: p95 from scheduled start,
    failed attempts, goodput, latency not still rising). `cpu` reads the measured side's CPU seconds per service
    (default: the stack's containers), so another deployment can be measured with the same steps."""
    import time

    from lab.analysis.capacity import latency_growth

    read_cpu = cpu or (lambda: stack_seconds(docker_client))
    steps: list[Step] = []
    best: Step | None = None
    for rate in rates:
        cpu0, stack0, host0, wall0 = process_seconds(), read_cpu(), host_busy_seconds(), time.monotonic()
        summary, attempts = asyncio.run(constant_step(journey_factory, rate, seconds))
        gen_cpu, stack_cpu = process_seconds() - cpu0, delta(stack0, read_cpu())
        host_busy, wall = host_busy_seconds() - host0, time.monotonic() - wall0
        done = [a for a in attempts if a.ended is not None and a.started is not None]
        latency = np.array([a.ended - a.scheduled for a in done]) if done else np.array([np.inf])
        outcomes = [a.outcome for a in attempts]
        step = Step(
            rate=rate, launched=summary.launched, purchased=outcomes.count("purchased"),
            sold_out=outcomes.count("sold_out"), failed=summary.launched - outcomes.count("purchased")
            - outcomes.count("sold_out"), dropped=summary.dropped,
            p50=float(np.percentile(latency, 50)), p95=float(np.percentile(latency, 95)),
            p99=float(np.percentile(latency, 99)),
            achieved_per_min=60 * outcomes.count("purchased") / seconds, generator_cpu=gen_cpu,
            stack_cpu={k: round(v, 2) for k, v in stack_cpu.items()},
            growth=latency_growth((a.scheduled, a.ended - a.scheduled) for a in done), journey=journey,
            wall=wall, host_busy=host_busy,
        )
        steps.append(step)
        misses = step.misses(p95_limit, error_limit)
        verdict = "BREAKS" if misses else "meets"
        log(f"  {rate:6.1f}/s offered: {step.achieved_per_min:7.0f} purchases/min, p50 {step.p50:.2f}s "
            f"p95 {step.p95:.2f}s, errors {step.error_share():.1%}, generator CPU {gen_cpu:.1f}s vs stack "
            f"{sum(stack_cpu.values()):.1f}s -> {verdict} the SLO" + (f" ({'; '.join(misses)})" if misses else ""))
        if verdict == "BREAKS":
            break
        best = step
    return steps, best


def bare_web_container(docker_client, port: int):
    """One pretix web container alone (same image, env and limits as a web instance) on 127.0.0.1:port.

    It talks to the same database and redis, so the comparison isolates what the HA front costs.
    """
    from lab.stack.containers import container
    from lab.stack.topology import project

    template = container(docker_client, "pretix-web-1")
    name = f"{project()}-bench-bare-web"
    for old in docker_client.containers.list(all=True, filters={"name": f"^{name}$"}):
        old.remove(force=True)
    limits = template.attrs["HostConfig"]
    bare = docker_client.containers.run(
        template.image.id, ["web"], name=name, detach=True, environment=template.attrs["Config"]["Env"],
        network=f"{project()}_edge", ports={"8000/tcp": ("127.0.0.1", port)},
        nano_cpus=limits.get("NanoCpus") or None, mem_limit=limits.get("Memory") or None,
        volumes={f"{project()}_pretix-data": {"bind": "/data", "mode": "rw"}},
        labels={"org.pretix-lab.experiments.bench": "bare-web"},
    )
    docker_client.networks.get(f"{project()}_backend").connect(bare)
    return bare


def wait_http(url: str, headers: dict[str, str], timeout: float = 90) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")


def save(name: str, payload: dict) -> Path:
    path = bench_path(f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__")
                               else str(o)))
    return path
