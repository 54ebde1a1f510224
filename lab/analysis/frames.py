"""From a run folder's raw files to the frames every figure and verdict is computed from.

Latency is always counted from an attempt's *scheduled* start (no coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from lab.evidence.runfolder import RunFolder
from lab.load.recorder import read_attempts, read_requests


class Run:
    """Everything one run recorded. Each of its frames is read from the run folder once, when first asked for,
    and kept: every analysis of the run (report tables, figures, traffic control) shares the one read, and a run
    whose requests or metrics nothing looks at never has them read. Frames given to the constructor stand as read.
    """

    def __init__(self, path: Path, meta: dict, attempts: pd.DataFrame | None = None,
                 requests: pd.DataFrame | None = None, metrics: pd.DataFrame | None = None):
        self.path, self.meta = Path(path), meta
        for name, frame in (("attempts", attempts), ("requests", requests), ("metrics", metrics)):
            if frame is not None:
                self.__dict__[name] = frame  # what the cached_property below would have read

    @classmethod
    def load(cls, path: Path) -> Run:
        """The run in `path`, its run.json read now (RunSchemaError for a schema newer than this code reads)."""
        folder = RunFolder(path)
        return cls(folder.path, folder.meta_or_empty())

    @cached_property
    def attempts(self) -> pd.DataFrame:
        return read_attempts(self.path)

    @cached_property
    def requests(self) -> pd.DataFrame:
        return read_requests(self.path)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        from lab.evidence.monitor.writer import read_metrics

        return read_metrics(self.path)

    @property
    def t0(self) -> float:
        """The run's clock origin: its first scheduled attempt (or its start)."""
        if len(self.attempts):
            return float(self.attempts["scheduled"].min())
        return float(self.meta.get("started", 0.0))


def attempt_latency(attempts: pd.DataFrame) -> pd.Series:
    """Seconds from each finished attempt's scheduled start to its end."""
    done = attempts.dropna(subset=["end"])
    return (done["end"] - done["scheduled"]).rename("latency")


def throughput(attempts: pd.DataFrame, t0: float, bin_seconds: float = 1.0) -> pd.DataFrame:
    """Per time bin (by attempt end): purchases, sold-out answers and failures, per second."""
    done = attempts.dropna(subset=["end"]).copy()
    if done.empty:
        return pd.DataFrame(columns=["t", "purchased", "sold_out", "failed"])
    done["t"] = np.floor((done["end"] - t0) / bin_seconds) * bin_seconds
    table = done.pivot_table(index="t", columns="outcome", values="attempt_id", aggfunc="count", fill_value=0)
    for column in ("purchased", "sold_out", "failed"):
        if column not in table:
            table[column] = 0
    full = np.arange(0, table.index.max() + bin_seconds, bin_seconds)
    table = table.reindex(full, fill_value=0)[["purchased", "sold_out", "failed"]] / bin_seconds
    return table.rename_axis("t").reset_index()


def latency_over_time(attempts: pd.DataFrame, t0: float, bin_seconds: float = 5.0) -> pd.DataFrame:
    """p50/p95/p99 of attempt latency (from scheduled start) per time bin of the scheduled start."""
    done = attempts[attempts["outcome"].isin(["purchased", "sold_out"])].dropna(subset=["end"]).copy()
    if done.empty:
        return pd.DataFrame(columns=["t", "p50", "p95", "p99"])
    done["latency"] = done["end"] - done["scheduled"]
    done["t"] = np.floor((done["scheduled"] - t0) / bin_seconds) * bin_seconds
    grouped = done.groupby("t")["latency"]
    return pd.DataFrame({"p50": grouped.quantile(0.5), "p95": grouped.quantile(0.95),
                         "p99": grouped.quantile(0.99)}).reset_index()


def errors_by_kind(requests: pd.DataFrame) -> pd.DataFrame:
    """Failed requests counted by (journey step, error kind): a failed request is data."""
    failed = requests[requests["outcome"] == "error"]
    if failed.empty:
        return pd.DataFrame(columns=["step", "error_kind", "count"])
    return failed.groupby(["step", "error_kind"]).size().rename("count").reset_index()


def cpu_seconds_by_service(metrics: pd.DataFrame, start: float, end: float) -> pd.Series:
    """CPU seconds each service used within [start, end], from the monitor's cumulative counters."""
    cpu = metrics[(metrics["metric"] == "cpu_seconds") & (metrics["service"] != "monitor")]
    cpu = cpu[(cpu["time"] >= start) & (cpu["time"] <= end)]
    if cpu.empty:
        return pd.Series(dtype=float)
    per_container = cpu.groupby(["service", "container"])["value"].agg(lambda v: v.max() - v.min())
    return per_container.groupby("service").sum().sort_values(ascending=False)


def cpu_per_purchase(run: Run) -> pd.Series:
    """CPU-seconds per completed purchase, per service: the unit of capacity planning."""
    purchased = int((run.attempts["outcome"] == "purchased").sum())
    if purchased == 0 or run.metrics.empty:
        return pd.Series(dtype=float)
    start, end = run.meta.get("started", run.t0), run.meta.get("ended", run.t0)
    return cpu_seconds_by_service(run.metrics, start, end) / purchased


def cores_needed(per_purchase: pd.Series, purchases_per_minute: float, headroom: float = 0.7) -> pd.Series:
    """Cores of each service that a purchase rate needs, running each at `headroom` utilisation."""
    return per_purchase * (purchases_per_minute / 60.0) / headroom


@dataclass
class Verdict:
    name: str
    passed: bool
    measured: str
    target: str


def slo_verdicts(attempts: pd.DataFrame, duration: float, *, target_per_min: float = 800.0,
                 p95_limit: float = 1.0, error_limit: float = 0.01) -> list[Verdict]:
    """The seed's bar and the SLOs, each computed from the attempts (no number typed in by hand)."""
    n = len(attempts)
    purchased = int((attempts["outcome"] == "purchased").sum())
    failed = int(attempts["outcome"].isin(["failed", "dropped", "cancelled"]).sum())
    latency = attempt_latency(attempts[attempts["outcome"].isin(["purchased", "sold_out"])])
    p95 = float(latency.quantile(0.95)) if len(latency) else float("nan")
    rate = 60.0 * purchased / duration if duration > 0 else 0.0
    errors = failed / n if n else 0.0
    return [
        Verdict("purchases per minute", rate >= target_per_min, f"{rate:.0f}/min", f">= {target_per_min:.0f}/min"),
        Verdict("p95 latency from scheduled start", bool(p95 <= p95_limit), f"{p95:.2f} s", f"<= {p95_limit:.1f} s"),
        Verdict("failed attempts", errors <= error_limit, f"{errors:.2%}", f"<= {error_limit:.0%}"),
    ]
