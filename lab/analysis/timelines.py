"""Time series of one run for its timelines: errors by kind, and the monitor's gauges (celery queue, PostgreSQL
lock waits, replication lag), all on the run's clock (seconds since its first scheduled attempt)."""

from __future__ import annotations

import numpy as np
import pandas as pd

# (metric, y-axis label, scale); what lab/evidence/monitor/ samples
GAUGES = {
    "celery queue": ("celery_queue_length_total", "tasks waiting", 1.0),
    "PostgreSQL lock waits": ("lock_waits", "waiting locks", 1.0),
    "PostgreSQL advisory lock waits": ("lock_waits_advisory", "waiting locks", 1.0),
    "replication lag (bytes)": ("replication_lag_bytes", "lag (KiB)", 1 / 1024),
    "replication replay lag": ("replication_replay_lag_seconds", "lag (s)", 1.0),
}


def errors_over_time(requests: pd.DataFrame, t0: float, bin_seconds: float = 5.0) -> pd.DataFrame:
    """Failed requests per second, per error kind and time bin (by the request's end): columns t, error_kind,
    per_second."""
    failed = requests[requests["outcome"] == "error"].copy()
    if failed.empty:
        return pd.DataFrame(columns=["t", "error_kind", "per_second"])
    failed["error_kind"] = failed["error_kind"].fillna("unknown")
    failed["t"] = np.floor((failed["end"].fillna(failed["start"]) - t0) / bin_seconds) * bin_seconds
    counts = failed.groupby(["t", "error_kind"]).size().rename("count").reset_index()
    counts["per_second"] = counts["count"] / bin_seconds
    return counts[["t", "error_kind", "per_second"]]


def label_values(labels: str) -> str:
    """'application_name=walreceiver,state=streaming' -> 'walreceiver/streaming' (short legend entries)."""
    return "/".join(part.partition("=")[2] or part for part in labels.split(",") if part)


def gauge(metrics: pd.DataFrame, metric: str, t0: float, scale: float = 1.0) -> pd.DataFrame:
    """One monitor metric as columns t, series (service, plus its label when it has one), value."""
    rows = metrics[metrics["metric"] == metric].copy()
    if rows.empty:
        return pd.DataFrame(columns=["t", "series", "value"])
    rows["t"] = rows["time"] - t0
    labels = rows["labels"].fillna("").map(label_values) if "labels" in rows else ""
    rows["series"] = rows["service"].where(labels == "", rows["service"] + " " + labels)
    rows["value"] = rows["value"] * scale
    return rows[["t", "series", "value"]].sort_values("t").reset_index(drop=True)


def available_gauges(metrics: pd.DataFrame) -> list[str]:
    """The GAUGES this run's monitor recorded (non-empty)."""
    present = set(metrics["metric"].unique()) if len(metrics) else set()
    return [name for name, (metric, *_rest) in GAUGES.items() if metric in present]


def resource_series(metrics: pd.DataFrame, metric: str, t0: float, scale: float = 1.0) -> pd.DataFrame:
    """cpu_cores or memory_bytes per service and whole second, columns t, service, value; a second without a
    sample (a killed or restarting container) is NaN, so a line breaks there instead of bridging the gap."""
    rows = metrics[(metrics["metric"] == metric) & (metrics["service"] != "monitor")].copy()
    if rows.empty:
        return pd.DataFrame(columns=["t", "service", "value"])
    rows["t"] = np.floor(rows["time"] - t0)
    wide = rows.pivot_table(index="t", columns="service", values="value", aggfunc="mean") * scale
    wide = wide.reindex(np.arange(wide.index.min(), wide.index.max() + 1.0))
    return wide.rename_axis("t").reset_index().melt("t", var_name="service", value_name="value")


__all__ = ["GAUGES", "available_gauges", "errors_over_time", "gauge", "label_values", "resource_series"]
