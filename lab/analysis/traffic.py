"""Admission control compared: the same offered load with and without it, from the run folders alone.

Goodput is purchases per minute over the run's window (first scheduled arrival to last attempt end).
Latency of admitted buyers runs from the first request the proxy let through to the purchase; queue wait is the
time a buyer spent being told to come back. Fairness: Spearman rank correlation between arrival order and
purchase order among buyers who bought (1 = strictly first come, first served).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lab.analysis.figures import use_style
from lab.analysis.frames import Run
from lab.evidence.runfolder import RunFolder
from lab.stack.admission import LABELS

FAILED = ("failed", "dropped", "cancelled")


def _loaded(run: Path | Run) -> Run:
    """A run folder as a Run, whose files are read once however many tables and figures look at it; a Run
    (a study's, already loaded by lab.analysis.summary) is taken as it is, so nothing is read again."""
    return run if isinstance(run, Run) else Run.load(Path(run))


def label_of(run_dir: Path | Run) -> str:
    meta = _loaded(run_dir).meta
    mode = (meta.get("admission") or {}).get("mode", "off")
    return LABELS.get(mode, mode)


def admitted_at(requests: pd.DataFrame) -> pd.Series:
    """Per attempt: when its first request that was not refused by admission control started."""
    let_in = requests[requests["outcome"] != "queued"]
    return let_in.groupby("attempt_id")["start"].min()


def fairness(purchased: pd.DataFrame) -> float:
    """Spearman rank correlation of arrival (scheduled) and purchase (end) order; NaN below 3 purchases."""
    if len(purchased) < 3:
        return float("nan")
    return float(purchased["scheduled"].rank().corr(purchased["end"].rank()))


def _quantile(values: pd.Series, q: float) -> float:
    values = values.dropna()
    return float(values.quantile(q)) if len(values) else float("nan")


def _audit(run_dir: Path) -> dict[str, float]:
    path = RunFolder(run_dir).audit_path
    if not path.exists():
        return {k: float("nan") for k in ("lost", "ghost", "duplicate", "oversold")}
    doc = json.loads(path.read_text())
    return {k: doc[k]["count"] for k in ("lost", "ghost", "duplicate", "oversold")}


def run_row(run_dir: Path | Run, label: str | None = None) -> dict:
    """One run's figures for the comparison table."""
    run = _loaded(run_dir)
    attempts, requests = run.attempts, run.requests
    queued = attempts["queued"].fillna(0) if "queued" in attempts else pd.Series(0, index=attempts.index)
    waits = attempts["queue_wait"].fillna(0.0) if "queue_wait" in attempts else pd.Series(0.0, index=attempts.index)
    bought = attempts[attempts["outcome"] == "purchased"].copy()
    window = (attempts["end"].max() - attempts["scheduled"].min()) if len(attempts) else float("nan")
    admitted = bought["attempt_id"].map(admitted_at(requests))
    in_queue = waits[queued > 0]
    failed = int(attempts["outcome"].isin(FAILED).sum())
    return {
        "label": label or label_of(run),
        "offered": len(attempts),
        "purchased": len(bought),
        "window_s": float(window),
        "goodput_per_min": 60.0 * len(bought) / window if window and window > 0 else float("nan"),
        "admitted_p50_s": _quantile(bought["end"] - admitted, 0.5),
        "admitted_p95_s": _quantile(bought["end"] - admitted, 0.95),
        "total_p95_s": _quantile(bought["end"] - bought["scheduled"], 0.95),
        "queued_buyers": int((queued > 0).sum()),
        "queue_wait_p50_s": _quantile(in_queue, 0.5),
        "queue_wait_p95_s": _quantile(in_queue, 0.95),
        "gave_up_in_queue": int((attempts["outcome"] == "queued").sum()),
        "failed": failed,
        "error_rate": failed / len(attempts) if len(attempts) else float("nan"),
        "fcfs_rank_corr": fairness(bought),
        **_audit(run.path),
    }


def admission_table(run_dirs: list[Path | Run], labels: list[str] | None = None) -> pd.DataFrame:
    """One row per run (a run folder, or a Run already loaded): goodput, admitted latency, queue, fairness,
    errors and the audit."""
    labels = labels or [None] * len(run_dirs)
    return pd.DataFrame([run_row(d, lab) for d, lab in zip(run_dirs, labels, strict=True)])


def _frames(runs: list[Run], labels: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    timeline, buyers = [], []
    labels = labels or [label_of(r) for r in runs]
    for run, label in zip(runs, labels, strict=True):
        attempts, requests = run.attempts, run.requests
        if attempts.empty:
            continue
        t0 = attempts["scheduled"].min()
        bought = attempts[attempts["outcome"] == "purchased"].copy()
        bins = np.floor((bought["end"] - t0) / 5.0) * 5.0
        per_min = bins.value_counts().sort_index() * 12.0  # purchases in 5 s -> per minute
        full = np.arange(0.0, (bins.max() if len(bins) else 0.0) + 5.0, 5.0)
        per_min = per_min.reindex(full, fill_value=0.0)
        timeline.append(pd.DataFrame({"t": per_min.index, "per_min": per_min.values, "run": label}))
        bought["admitted_latency"] = bought["end"] - bought["attempt_id"].map(admitted_at(requests))
        waits = attempts["queue_wait"].fillna(0.0) if "queue_wait" in attempts else 0.0
        attempts = attempts.assign(queue_wait=waits, run=label)
        buyers.append(attempts.merge(bought[["attempt_id", "admitted_latency"]], on="attempt_id", how="left"))
    return (pd.concat(timeline, ignore_index=True) if timeline else pd.DataFrame(columns=["t", "per_min", "run"]),
            pd.concat(buyers, ignore_index=True) if buyers else pd.DataFrame())


def admission_figure(run_dirs: list[Path | Run], labels: list[str] | None = None):
    """Four panels: goodput over time, admitted buyers' latency, queue waits, and what became of every buyer
    (each run a run folder, or a Run already loaded)."""
    use_style()
    timeline, buyers = _frames([_loaded(d) for d in run_dirs], labels)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (goodput, latency), (queue, outcomes) = axes
    if not timeline.empty:
        sns.lineplot(data=timeline, x="t", y="per_min", hue="run", ax=goodput)
    goodput.set(title="Goodput: purchases completed (5 s bins)", xlabel="time since first arrival (s)",
                ylabel="purchases per minute")
    if not buyers.empty:
        sns.ecdfplot(data=buyers.dropna(subset=["admitted_latency"]), x="admitted_latency", hue="run", ax=latency)
        waited = buyers[buyers["queue_wait"] > 0]
        if not waited.empty:
            sns.ecdfplot(data=waited, x="queue_wait", hue="run", ax=queue)
        counts = buyers.groupby(["run", "outcome"]).size().rename("buyers").reset_index()
        sns.barplot(data=counts, x="outcome", y="buyers", hue="run", ax=outcomes)
    latency.set(title="Latency of admitted buyers (admission to purchase)", xlabel="seconds",
                ylabel="share of purchases")
    queue.set(title="Time queued buyers waited", xlabel="seconds in the queue", ylabel="share of queued buyers")
    outcomes.set(title="What became of every buyer", xlabel="outcome", ylabel="buyers")
    fig.suptitle("Same offered load, with and without admission control", fontweight="bold")
    fig.tight_layout()
    return fig


__all__ = ["admission_figure", "admission_table", "admitted_at", "fairness", "label_of", "run_row"]
