"""Capacity: throughput and latency against the offered load, step by step, and where each journey saturates.

An open-model step offers a rate (attempts/min); it is saturated when it delivers less than `keep_up` of what
was offered, or its p95 breaks the journey's SLO. A closed-model step offers concurrent buyers; it is saturated
when adding buyers no longer adds `gain` more throughput (the curve has flattened) or p95 breaks the SLO.
"""

from __future__ import annotations

import math

import pandas as pd

from lab.analysis.verdicts import Targets

CAPACITY_KINDS = ("capacity", "closed")  # a step of an offered-rate ramp; a number of concurrent users


def capacity_steps(table: pd.DataFrame) -> pd.DataFrame:
    """The run table's capacity steps (runs of kind `capacity` or `closed`; without any, every steady run) that
    made attempts,
    sorted by load."""
    steps = table[table["kind"].isin(CAPACITY_KINDS)]
    if steps.empty:
        steps = table[~table["faults"].astype(bool) & (table["kind"] != "overload")]
    steps = steps[steps["attempts"] > 0].copy() if "attempts" in steps else steps.copy()  # not a crashed run
    steps["load"] = steps["offered_per_min"].where(steps["model"] == "open", steps["users"])
    return steps.sort_values(["journey", "model", "load"]).reset_index(drop=True)


def saturation(steps: pd.DataFrame, targets: Targets, keep_up: float = 0.9, gain: float = 0.1) -> pd.DataFrame:
    """Per (journey, model): the highest throughput measured, the highest within the SLOs (p95 and errors), and
    the first step that saturated (if any)."""
    rows = []
    for (journey, model), group in steps.groupby(["journey", "model"], sort=True):
        group = group.sort_values("load")
        limit = targets.p95_limit(journey)
        saturated_at = None
        reason = ""
        previous = None
        for step in group.itertuples():
            slow = not math.isnan(step.p95) and step.p95 > limit
            if model == "open":
                behind = step.offered_per_min > 0 and step.throughput_per_min < keep_up * step.offered_per_min
                flat = False
            else:
                behind = False
                flat = previous is not None and step.throughput_per_min < (1 + gain) * previous.throughput_per_min
            if slow or behind or flat:
                saturated_at = step
                reason = ("p95 above the SLO" if slow else
                          f"delivered under {keep_up:.0%} of the offered load" if behind else
                          f"under {gain:.0%} more throughput than with fewer buyers")
                break
            previous = step
        best = group.loc[group["throughput_per_min"].idxmax()]
        good = group[(group["p95"] <= limit) & (group["error_rate"] <= targets.slo_error_rate)]
        unit = "attempts/min offered" if model == "open" else "concurrent buyers"
        if saturated_at is not None:
            where = f"at {saturated_at.load:.0f} {unit}: {reason}"
        else:
            where = f"not saturated up to {group['load'].max():.0f} {unit}"
        rows.append({"journey": journey, "model": model, "steps": len(group),
                     "max_throughput_per_min": float(best["throughput_per_min"]),
                     "max_within_slo_per_min": float(good["throughput_per_min"].max()) if len(good) else 0.0,
                     "saturated": saturated_at is not None,
                     "saturation_load": saturated_at.load if saturated_at is not None else math.nan,
                     "where": where})
    return pd.DataFrame(rows, columns=["journey", "model", "steps", "max_throughput_per_min",
                                       "max_within_slo_per_min", "saturated",
                                       "saturation_load", "where"])


__all__ = ["CAPACITY_KINDS", "capacity_steps", "saturation"]
