"""pretix's Prometheus /metrics of each web instance, over HTTP from the host or, failing that, by exec."""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from lab.evidence.monitor.base import Emit, Sampler, StreamEnded, Target, samplers
from lab.evidence.monitor.execstream import feed_lines
from lab.evidence.monitor.names import PRETIX_HOST, WEB_PREFIX
from lab.evidence.monitor.parsers import Blocks, MetricRow, parse_prometheus, pretix_subset
from lab.evidence.monitor.scripts import PRETIX_EXEC_SCRIPT
from lab.stack.topology import project

if TYPE_CHECKING:
    from lab.evidence.monitor.monitor import Monitor

log = logging.getLogger(__name__)


@samplers.register("pretix")
class PretixSampler(Sampler):
    """pretix's Prometheus /metrics from each web instance on its own (gunicorn on its edge address :8000,
    Host: the site's host, basic auth): a useful subset (PRETIX_KEEP_PREFIXES), plus `scrape_seconds` and `up`.

    pretix keeps its counters in redis (one hash for all instances, pretix/base/metrics.py), so both instances
    report the same totals; the per-instance view says whether that instance answers, and how fast. Falls back
    to an exec'd loop inside the container when the host cannot reach the edge address.
    """

    timeout = 5.0

    def __init__(self, monitor: Monitor):
        super().__init__(monitor)
        self.interval = monitor.pretix_interval

    def targets(self) -> list[str]:
        return [s for s in self.monitor.services if s.startswith(WEB_PREFIX)]

    def _rows(self, text: str) -> list[MetricRow]:
        return list(pretix_subset(parse_prometheus(text), buckets=self.monitor.pretix_buckets))

    def stream(self, target: Target, emit: Emit) -> None:
        c = self.running_container(target)
        if target.service in self.monitor.pretix_via_exec:
            return self._stream_exec(target, c, emit)
        auth = self.monitor.metrics_auth
        if auth is None:
            raise StreamEnded("no metrics credentials (secrets.json of the deployment)")
        env = dict(e.split("=", 1) for e in c.attrs["Config"].get("Env") or [] if "=" in e)
        host = urlsplit(env.get("PRETIX_PRETIX_URL", "")).netloc or PRETIX_HOST
        edge = ((c.attrs["NetworkSettings"]["Networks"] or {}).get(f"{project()}_edge") or {}).get("IPAddress")
        if not edge:
            raise StreamEnded(f"{c.name} has no address on {project()}_edge")
        url = f"http://{edge}:8000/metrics"
        answered = False
        with httpx.Client(headers={"Host": host}, auth=auth, timeout=self.timeout, trust_env=False) as http:
            next_t = time.monotonic()
            while not self.stopping.is_set():
                t0, p0 = time.time(), time.perf_counter()
                try:
                    r = http.get(url)
                except httpx.TransportError as error:
                    if not answered and self._exec_works(c):
                        self.monitor.pretix_via_exec.add(target.service)
                        log.info("monitor: %s unreachable from here (%s); reading /metrics by exec", url, error)
                        return self._stream_exec(target, c, emit)
                    raise StreamEnded(f"/metrics: {type(error).__name__}") from None
                elapsed = time.perf_counter() - p0
                if r.status_code != 200:
                    emit("up", 0.0, "", t0)
                    raise StreamEnded(f"/metrics answered HTTP {r.status_code}")
                answered = True
                for metric, labels, value in self._rows(r.text):
                    emit(metric, value, labels, t0)
                emit("scrape_seconds", elapsed, "", t0)
                emit("up", 1.0, "", t0)
                next_t += self.interval
                if next_t < time.monotonic():  # a slow scrape: start again from now, no burst to catch up
                    next_t = time.monotonic()
                self.stopping.wait(next_t - time.monotonic())

    @staticmethod
    def _exec_works(c) -> bool:
        try:
            return c.exec_run(["python3", "-I", "-c", "pass"]).exit_code == 0
        except Exception:  # noqa: BLE001
            return False

    def _stream_exec(self, target: Target, c, emit: Emit) -> None:
        ex = self.monitor.open_exec(c, PRETIX_EXEC_SCRIPT, self.interval, {})
        target.closer, target.aborter = ex.close, ex.abort

        def parse(lines: list[str]) -> list[MetricRow]:
            if lines and lines[0].startswith("#FAIL"):
                self.monitor.record_error(target, f"/metrics via exec: {lines[0][5:].strip()}")
                return [("up", "", 0.0)]
            rows = self._rows("\n".join(lines[1:]))
            elapsed = float(lines[0].split()[1]) if lines and lines[0].startswith("scrape_seconds") else math.nan
            return rows + [("scrape_seconds", "", elapsed), ("up", "", 1.0)]

        feed_lines(ex, Blocks(parse, emit), self.stopping)


__all__ = ["PretixSampler"]
