"""Capacity: throughput and latency against the offered load, step by step, and where each journey saturates.

An open-model step offers a rate (attempts/min); it is saturated when it delivers less than `keep_up` of what
was offered, or its p95 breaks the journey's SLO. A closed-model step offers concurrent buyers; it is saturated
when adding buyers no longer adds `gain` more throughput (the curve has flattened) or p95 breaks the SLO.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from lab.analysis.verdicts import CAPACITY_CHECK, Targets, Verdict

CAPACITY_KINDS = ("capacity", "closed")  # a step of an offered-rate ramp; a number of concurrent users
# The lab's one definition of "met the SLO" (the study, the report, `lab capacity` and `lab bench capacity`):
GOODPUT_MIN = 0.95  # purchases at least this share of the offered attempts
MAX_GROWTH = 0.5  # latency may climb from the first third of arrivals to the last by at most this x the p95 SLO
MIN_THIRD = 3  # arrivals per third below which the trend is not judged
CONFIDENCE = 0.95


def latency_growth(finished: Iterable[tuple[float, float]]) -> float:
    """(scheduled, latency) pairs -> median latency of the last third of arrivals minus the first third's: a run
    whose latency is still climbing at its end has a backlog building, and a longer run would break the SLO."""
    ordered = [latency for _, latency in sorted(finished)]
    third = len(ordered) // 3
    if third < MIN_THIRD:
        return math.nan
    return float(np.median(ordered[-third:]) - np.median(ordered[:third]))


def slo_misses(row, targets: Targets, *, goodput_min: float = GOODPUT_MIN, max_growth: float = MAX_GROWTH
               ) -> list[str]:
    """Why a run (a run_row) does not meet the SLO, empty when it does: p95 from the scheduled start, failed
    attempts, goodput (purchases / offered attempts) and latency not still rising. Nothing measured is a miss.
    `lab capacity` and `lab bench capacity` judge their probes with this too (their rows: probe_row, Step.row)."""
    journey, limit = row["journey"], targets.p95_limit(row["journey"])
    misses = []
    if not row["attempts"] or math.isnan(row["p95"]):
        return ["no answered attempt"]
    if row["p95"] > limit:
        misses.append(f"p95 {row['p95']:.2f} s > {limit:g} s")
    if not row["error_rate"] <= targets.slo_error_rate:
        misses.append(f"failed {row['error_rate']:.1%} > {targets.slo_error_rate:.0%}")
    goodput = row["purchased"] / row["attempts"]
    if goodput < goodput_min:
        misses.append(f"goodput {goodput:.0%} < {goodput_min:.0%}")
    growth = row.get("latency_growth", math.nan)
    if growth is not None and not math.isnan(growth) and growth > max_growth * limit:
        misses.append(f"latency still rising by {growth:.2f} s ({journey})")
    return misses


def capacity_rounds(table: pd.DataFrame, targets: Targets, journey: str = "api") -> pd.DataFrame:
    """Per round of an open-model capacity ramp (the study repeats the ramp, interleaved): the highest offered
    rate (per minute) whose run met the SLO, 0 when none did; one row per round with the run that set it."""
    steps = table[(table["kind"] == "capacity") & (table["journey"] == journey) & (table["model"] == "open")
                  & ~table["run_failed"].astype(bool)] if len(table) else table
    rows = []
    for round_, group in steps.groupby("round", sort=True):
        good = group[[not slo_misses(r, targets) for _, r in group.iterrows()]]
        best = good.loc[good["offered_per_min"].idxmax()] if len(good) else None
        rows.append({"round": int(round_), "steps": len(group),
                     "capacity_per_min": float(best["offered_per_min"]) if best is not None else 0.0,
                     "run_id": str(best["run_id"]) if best is not None else "-"})
    return pd.DataFrame(rows, columns=["round", "steps", "capacity_per_min", "run_id"])


def interval(values: Iterable[float], confidence: float = CONFIDENCE) -> dict[str, float | int]:
    """Median of repeated measurements with a bootstrap (percentile) interval: {per_min, ci_low, ci_high,
    repeats}. One measurement has no interval (NaN bounds): a sample, not a measurement."""
    from scipy.stats import bootstrap

    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if data.size == 0:
        return {"per_min": math.nan, "ci_low": math.nan, "ci_high": math.nan, "repeats": 0}
    median = float(np.median(data))
    if data.size < 2:
        return {"per_min": median, "ci_low": math.nan, "ci_high": math.nan, "repeats": 1}
    if np.all(data == data[0]):
        low = high = median
    else:
        found = bootstrap((data,), np.median, confidence_level=confidence, method="percentile", n_resamples=4000,
                          random_state=0).confidence_interval
        low, high = float(found.low), float(found.high)
    return {"per_min": median, "ci_low": low, "ci_high": high, "repeats": int(data.size)}


def describe_interval(estimate: dict) -> str:
    """'X/min (95% interval A-B, n runs)', or 'X/min (1 run: no interval)'."""
    if not estimate["repeats"]:
        return "-"
    if estimate["repeats"] < 2:
        return f"{estimate['per_min']:.0f}/min (1 run: no interval)"
    return (f"{estimate['per_min']:.0f}/min ({CONFIDENCE:.0%} interval {estimate['ci_low']:.0f}-"
            f"{estimate['ci_high']:.0f}, {estimate['repeats']} runs)")

def capacity_verdict(estimate: dict, targets: Targets, journey: str, rounds: int,
                     steps: list[float] | None = None) -> Verdict:
    """The capacity (median of the repeated ramps, each its highest rate that met every SLO) against the target:
    pass when even the interval's low end reaches it, FAIL when its high end does not, UNDECIDED in between. One
    ramp has no interval: judged by its value, and the evidence says it was one sample. `steps` (offered per
    minute) name the ramp's resolution: a round's capacity lies between its rate and the next step."""
    target = targets.target_per_min
    evidence = f"{journey} capacity ramp, {rounds} round(s)"
    if steps:
        evidence += f" of steps {'/'.join(f'{s:.0f}' for s in sorted(steps))} per min (its resolution)"
    if not estimate["repeats"]:
        return Verdict(f"{journey}: {CAPACITY_CHECK}", None, "-", f">= {target:.0f}/min", evidence)
    low, high = estimate["ci_low"], estimate["ci_high"]
    if math.isnan(low):
        low = high = estimate["per_min"]
    passed = True if low >= target else False if high < target else None
    return Verdict(f"{journey}: {CAPACITY_CHECK}", passed, describe_interval(estimate), f">= {target:.0f}/min",
                   evidence, undecided=passed is None)


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


__all__ = ["CAPACITY_KINDS", "GOODPUT_MIN", "MAX_GROWTH", "capacity_rounds", "capacity_steps", "describe_interval",
           "interval", "latency_growth", "saturation", "slo_misses"]
