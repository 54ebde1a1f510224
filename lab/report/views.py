"""The report's tables as the reader sees them: the summary's frames with readable headings and formats."""

from __future__ import annotations

import pandas as pd

RUNS_FORMAT = {"failed": "{:.2%}", "sustained (/min)": "{:.0f}", "p50 (s)": "{:.2f}", "ghosts": "{:.0f}",
               "false avail.": "{:.0f}", "p95 (s)": "{:.2f}", "p99 (s)": "{:.2f}"}
SELLOUT_COUNTS = ("buyers", "sold", "refused (sold out)", "oversold", "false availability")
SELLOUT_FORMAT = {**{c: "{:.0f}" for c in SELLOUT_COUNTS}, "quota reached (s)": "{:.1f}"}


def styled(frame: pd.DataFrame, formatter: dict | None = None):
    """A table without its index, numbers to three decimals unless `formatter` says otherwise, '-' for missing."""
    return frame.style.format(formatter, precision=3, na_rep="-").hide(axis="index")


def runs_view(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its load, attempts, failures, sustained rate, latency percentiles and audit."""
    load = [f"{r.offered_per_min:.0f}/min offered" if r.model == "open" else f"{r.users:.0f} buyers (closed)"
            for r in table.itertuples()]
    audit = [("audit incomplete: " + r.audit_incomplete if r.audit_incomplete else
              f"{r.lost:.0f} / {r.duplicate:.0f} / {r.oversold:.0f}") if r.audited else "not audited"
             for r in table.itertuples()]
    return pd.DataFrame({
        "run": table["run_id"], "kind": table["kind"], "journey": table["journey"], "load": load,
        "attempts": table["attempts"], "failed": table["error_rate"], "sustained (/min)": table["throughput_per_min"],
        "p50 (s)": table["p50"], "p95 (s)": table["p95"], "p99 (s)": table["p99"],
        "lost / dup. / oversold": audit, "ghosts": table["ghost"], "false avail.": table["false_availability"]})


def faults_view(f: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "run": f["run_id"], "fault": f["fault_id"], "action": f["action"], "target": f["target"],
        "lasted (s)": f["fault_seconds"], "failed attempts": f["failed_attempts"],
        "errors from (s)": f["attempt_errors_from"], "errors to (s)": f["attempt_errors_to"],
        "failed requests": f["failed_requests"],
        "recovered": f["recovery_recovered"], "time to recover (s)": f["recovery_time_to_recover"],
        "after undo (s)": f["recovery_after_undo"],
        "p95 before (s)": f["latency_before_p95"], "p95 during (s)": f["latency_during_p95"],
        "steady before/after": f["steady_before"].astype(str) + " / " + f["steady_after"].astype(str)})


def sellout_view(s: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "run": s["run_id"], "journey": s["journey"], "product": s["product"], "quota": s["quota"],
        "buyers": s["buyers"], "sold": s["sold"], "refused (sold out)": s["refused_sold_out"],
        "oversold": s["oversold"], "false availability": s["false_availability"],
        "quota reached (s)": s["quota_reached_s"]})


def with_total(frame: pd.DataFrame):
    """A per-module frame (journeys x modules) with its row totals, three decimals."""
    return frame.assign(total=frame.sum(axis=1)).style.format(precision=3)


__all__ = ["RUNS_FORMAT", "SELLOUT_FORMAT", "faults_view", "runs_view", "sellout_view", "styled", "with_total"]
