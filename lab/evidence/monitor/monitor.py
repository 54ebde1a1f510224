"""The Monitor: starts one thread per (sampler, service), writes their rows, reports silence, counts its own cost.

Stopping: every exec'd script reads its stdin and ends at EOF; stop() half-closes each exec connection, so the
loop (and the psql it started) ends inside the container, then joins every thread (a docker stats poll ends at
its next tick). The scripts are also bounded by a maximum duration, so nothing outlives a crashed monitor for
long (a dropped connection is an EOF too).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.evidence.monitor import docker_sampler, exec_samplers, pretix_sampler  # noqa: F401 - register built-ins
from lab.evidence.monitor.base import Target, samplers
from lab.evidence.monitor.execstream import ExecStream
from lab.evidence.monitor.names import MONITOR_SERVICE
from lab.evidence.monitor.writer import METRICS, MetricWriter
from lab.evidence.secretscan import Scrubber, SecretsUnavailable, load_scrubber
from lab.stack.topology import long_running

log = logging.getLogger(__name__)

SAMPLER_ERROR = "sampler_error"
DEFAULT_SAMPLERS = ("docker", "pretix", "postgres", "redis", "sentinel", "nginx")


class Monitor:
    """Samples every service about once a second into run_dir/metrics.parquet until stop() (or max_duration).

        with Monitor(run_dir, client, run_id="r1"):
            ...  # the run

    interval: period of every sampler (docker's own stats cadence is 1 s: a longer interval thins it out).
    pretix_interval: period of the /metrics scrape of each web instance. 5 s by default, not 1 s: pretix counts
        the rows of every model on each scrape (gunicorn + PostgreSQL CPU taken from the stack it measures); its
        counters are cumulative, so rates lose little.
    sampler_names: which registered samplers run (an unknown name fails here, before anything starts).
    services: the services to sample (default: the long-running services of stack/compose.yaml).
    max_duration: the monitor stops by itself after this long; its exec'd loops end a minute later at most.
    scrubber: what removes secrets from the error texts it records; by default the deployment's. Without one
        (the secrets cannot be read) an error is recorded by its kind only, never its text.
    """

    def __init__(self, run_dir: Path, docker_client, *, interval: float = 1.0, run_id: str,
                 sampler_names: Iterable[str] = DEFAULT_SAMPLERS, pretix_interval: float = 5.0,
                 pretix_buckets: bool = False, max_duration: float = 6 * 3600, flush_seconds: float = 5.0,
                 services: Iterable[str] | None = None, metrics_auth: tuple[str, str] | None = None,
                 scrubber: Scrubber | None = None):
        if interval < 0.2:
            raise ValueError(f"interval={interval}: must be at least 0.2 s")
        if pretix_interval < 0.2:
            raise ValueError(f"pretix_interval={pretix_interval}: must be at least 0.2 s")
        if max_duration <= 0 or flush_seconds <= 0:
            raise ValueError("max_duration and flush_seconds must be > 0")
        self.run_dir = Path(run_dir)
        self.client = docker_client
        self.run_id = run_id
        self.interval = float(interval)
        self.pretix_interval = float(pretix_interval)
        self.pretix_buckets = pretix_buckets
        self.max_duration = float(max_duration)
        self.flush_seconds = float(flush_seconds)
        self.services = list(services) if services is not None else long_running()
        self.sampler_classes = [samplers.get(name) for name in sampler_names]
        self.metrics_auth = metrics_auth if metrics_auth is not None else metrics_auth_of_deployment()
        self.scrub = scrubber if scrubber is not None else _deployment_scrubber()
        self.stopping = threading.Event()
        self.pretix_via_exec: set[str] = set()
        self._stop_lock = threading.Lock()
        self._writer: MetricWriter | None = None
        self._targets: list[Target] = []
        self._execs: list[ExecStream] = []
        self._housekeeper: threading.Thread | None = None
        self._housekeeper_cpu = 0.0
        self._cpu_mark = (0.0, 0.0)
        self._started = 0.0
        self._ended = 0.0
        self._stopped = False
        self.leftover_execs: list[str] = []
        self.errors: list[tuple[str, str, str]] = []  # (sampler, service, problem)

    # ----------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> Monitor:
        if self._housekeeper is not None:
            raise RuntimeError("a monitor starts once")
        self._writer = MetricWriter(self.run_dir / METRICS, self.run_id)
        self._started = time.monotonic()
        self._cpu_mark = (self._started, 0.0)
        for cls in self.sampler_classes:
            sampler = cls(self)
            for service in sampler.targets():
                target = Target(sampler.name, service)
                target.thread = threading.Thread(target=sampler.run, args=(target,), daemon=True,
                                                 name=f"monitor-{sampler.name}-{service}")
                self._targets.append(target)
        for target in self._targets:
            target.thread.start()
        self._housekeeper = threading.Thread(target=self._housekeeping, daemon=True, name="monitor-housekeeping")
        self._housekeeper.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End every stream (exec'd loops see stdin EOF and end), join every thread, write what is left."""
        with self._stop_lock:
            if self._housekeeper is None or self._stopped:
                return
            self._stopped = True
        self.stopping.set()
        for target in self._targets:
            if target.closer is not None:
                target.closer()
        self._join(timeout / 2)
        for target in self._targets:  # still blocked (e.g. a paused container): cut the connection
            if target.thread.is_alive() and target.aborter is not None:
                target.aborter()
        self._join(timeout / 2)
        if threading.current_thread() is not self._housekeeper:
            self._housekeeper.join(timeout)
        self.leftover_execs = self._wait_execs_ended(5.0)
        for exec_id in self.leftover_execs:
            log.warning("monitor: exec %s still running after stop", exec_id[:12])
        self._ended = time.monotonic()
        self._write_self_metrics(final=True)
        self._flush()

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for target in self._targets:
            target.thread.join(max(0.0, deadline - time.monotonic()))

    def _wait_execs_ended(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        pending = list(self._execs)
        while pending and time.monotonic() < deadline:
            pending = [ex for ex in pending if ex.running()]
            if pending:
                time.sleep(0.2)
        for ex in pending:
            ex.abort()
        return [ex.exec_id for ex in pending]

    # ------------------------------------------------------------------------------------- for the samplers
    def open_exec(self, container, script: str, interval: float, env: dict[str, str]) -> ExecStream:
        ex = ExecStream(self.client, container, script, [f"{interval:g}", str(int(self.max_duration + 60))], env)
        self._execs.append(ex)
        return ex

    def emit(self, t: float, service: str, container: str, metric: str, value: float, labels: str) -> None:
        self._writer.add((t, service, container, metric, float(value), labels))

    def record_error(self, target: Target, problem: str) -> None:
        if self.scrub is None:  # fail closed: without the secrets, the text could hold one
            problem = problem.split(":", 1)[0][:80] + " (details withheld: the secrets could not be read)"
        else:
            problem = self.scrub(problem)
        problem = problem.replace("\n", " ").replace(",", ";")[:300]
        self.errors.append((target.sampler, target.service, problem))
        log.info("monitor: %s/%s: %s", target.sampler, target.service, problem)
        self.emit(time.time(), target.service, target.container, SAMPLER_ERROR, 1.0,
                  f"sampler={target.sampler},error={problem}")

    # --------------------------------------------------------------------------------------------- internals
    def _housekeeping(self) -> None:
        """Flush part files, report silent samplers, record the monitor's own cost; stop at max_duration."""
        last_flush = last_self = time.monotonic()
        while not self.stopping.wait(1.0):
            now = time.monotonic()
            for target in self._targets:
                silent = now - (target.last_sample or self._started)
                period = self.pretix_interval if target.sampler == "pretix" else self.interval
                if silent > max(10.0, 5 * period) and not target.silent_reported:
                    target.silent_reported = True
                    self.record_error(target, f"no sample for {silent:.0f} s")
            self._housekeeper_cpu = time.thread_time()
            if now - last_self >= 5.0:
                self._write_self_metrics()
                last_self = now
            if now - last_flush >= self.flush_seconds:
                self._flush()
                last_flush = now
            if now - self._started >= self.max_duration:
                log.warning("monitor: max_duration %.0f s reached: stopping by itself", self.max_duration)
                self._housekeeper_cpu = time.thread_time()
                self.stop()
                return
        self._housekeeper_cpu = time.thread_time()
        self._flush()

    def _flush(self) -> None:
        try:
            self._writer.flush()
        except Exception as error:  # noqa: BLE001 - a full disk must not kill the run; say so
            log.error("monitor: writing %s failed: %s", self._writer.path, error)

    @property
    def cpu_seconds(self) -> float:
        """CPU the monitor's own threads used (samplers and housekeeping)."""
        return sum(t.cpu_seconds for t in self._targets) + self._housekeeper_cpu

    @property
    def exec_cpu_seconds(self) -> float:
        """CPU the exec'd loops used inside the containers (as they report it)."""
        return sum(ex.cpu_seconds for ex in self._execs)

    def _write_self_metrics(self, final: bool = False) -> None:
        now, total, t = time.monotonic(), self.cpu_seconds, time.time()
        before_t, before_cpu = self._cpu_mark
        if now - before_t > 0.5:
            self.emit(t, MONITOR_SERVICE, "", "cpu_cores", (total - before_cpu) / (now - before_t), "")
        self._cpu_mark = (now, total)
        self.emit(t, MONITOR_SERVICE, "", "cpu_seconds", total, "")
        self.emit(t, MONITOR_SERVICE, "", "exec_cpu_seconds", self.exec_cpu_seconds, "")
        self.emit(t, MONITOR_SERVICE, "", "rows_written", float(self._writer.rows_written), "")
        if final:
            self.emit(t, MONITOR_SERVICE, "", "wall_seconds", now - self._started, "")

    # ------------------------------------------------------------------------------------------------- report
    def summary(self) -> dict[str, Any]:
        """What the monitor did and cost, what went wrong (for a run's journal; secrets scrubbed)."""
        end = self._ended or time.monotonic()
        wall = end - self._started if self._started else 0.0
        return {
            "wall_seconds": round(wall, 3),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "cpu_percent_of_one_core": round(100.0 * self.cpu_seconds / wall, 3) if wall else 0.0,
            "exec_cpu_seconds": round(self.exec_cpu_seconds, 3),
            "rows_written": self._writer.rows_written if self._writer else 0,
            "targets": {f"{t.sampler}/{t.service}": {"samples": t.samples, "errors": t.errors}
                        for t in self._targets},
            "pretix_via_exec": sorted(self.pretix_via_exec),
            "errors": [f"{s}/{svc}: {p}" for s, svc, p in self.errors[-20:]],
            "leftover_execs": list(self.leftover_execs),
        }


def _deployment_scrubber() -> Scrubber | None:
    try:
        return load_scrubber()
    except SecretsUnavailable as error:
        log.warning("monitor: %s; sampler errors are recorded without their text", error)
        return None


def metrics_auth_of_deployment() -> tuple[str, str] | None:
    """pretix's /metrics credentials from the deployment's secrets.json (None when there is no deployment)."""
    from lab.common.paths import deploy_dir

    path = deploy_dir() / "secrets.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return doc["metrics_user"], doc["metrics_password"]


__all__ = ["DEFAULT_SAMPLERS", "Monitor", "SAMPLER_ERROR", "metrics_auth_of_deployment"]
