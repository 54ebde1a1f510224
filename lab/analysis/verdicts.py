"""The study's verdicts (the seed's bar, the SLOs, the audit) and what they mean, from the run table alone.

Which runs judge what:
- throughput: the best sustained purchases/min of any run (a deployment meets the bar if it ever sustained it);
- latency p95 and errors, per journey: the run of that journey with the highest sustained throughput among the
  runs without faults and without deliberate overload (faults and overload are judged in their own sections);
- audit: every audited run; lost, duplicate and oversold orders must all be zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

STEADY_EXCLUDED = ("faults", "overload")


@dataclass
class Targets:
    """What the deployment is held to (the notebook's parameters)."""

    target_per_min: float = 800.0
    slo_p95_seconds: float = 1.0  # api journey
    slo_p95_shop_seconds: float = 10.0
    slo_error_rate: float = 0.01

    def p95_limit(self, journey: str) -> float:
        return self.slo_p95_shop_seconds if journey == "shop" else self.slo_p95_seconds


@dataclass
class Verdict:
    check: str
    passed: bool | None  # None: nothing measured it, or (undecided) the measurement's interval straddles the target
    measured: str
    target: str
    evidence: str  # which run(s)
    undecided: bool = False

    @property
    def label(self) -> str:
        if self.undecided:
            return "UNDECIDED"
        return "no data" if self.passed is None else ("pass" if self.passed else "FAIL")


CAPACITY_CHECK = "sustained within SLO"



def steady_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Runs without faults or deliberate overload (falls back to every run when none is left)."""
    steady = table[~table["kind"].isin(STEADY_EXCLUDED) & ~table["faults"].astype(bool)]
    return steady if len(steady) else table


def best_run(table: pd.DataFrame, journey: str | None = None) -> pd.Series | None:
    """The steady run (of a journey) with the highest sustained throughput."""
    runs = steady_runs(table)
    runs = runs[runs["attempts"] > 0] if "attempts" in runs else runs
    if journey is not None:
        runs = runs[runs["journey"] == journey]
    runs = runs.dropna(subset=["throughput_per_min"])
    return None if runs.empty else runs.loc[runs["throughput_per_min"].idxmax()]


def throughput_verdict(table: pd.DataFrame, targets: Targets) -> Verdict:
    if table.empty or table["throughput_per_min"].dropna().empty:
        return Verdict("sustained purchases per minute", None, "-", f">= {targets.target_per_min:.0f}/min", "-")
    row = table.loc[table["throughput_per_min"].idxmax()]
    rate = float(row["throughput_per_min"])
    return Verdict("sustained purchases per minute", rate >= targets.target_per_min, f"{rate:.0f}/min",
                   f">= {targets.target_per_min:.0f}/min", f"{row['run_id']} ({row['journey']}, {row['kind']})")


def journey_verdicts(table: pd.DataFrame, targets: Targets) -> list[Verdict]:
    """p95 latency and error rate for each journey, on its best steady run."""
    out = []
    for journey in sorted(table["journey"].unique()):
        row = best_run(table, journey)
        if row is None:
            continue
        limit = targets.p95_limit(journey)
        p95 = float(row["p95"])
        evidence = f"{row['run_id']} ({row['throughput_per_min']:.0f}/min)"
        out.append(Verdict(f"{journey}: p95 latency", None if math.isnan(p95) else p95 <= limit,
                           "-" if math.isnan(p95) else f"{p95:.2f} s", f"<= {limit:.1f} s", evidence))
        errors = float(row["error_rate"])
        out.append(Verdict(f"{journey}: failed attempts", None if math.isnan(errors) else
                           errors <= targets.slo_error_rate, "-" if math.isnan(errors) else f"{errors:.2%}",
                           f"<= {targets.slo_error_rate:.0%}", evidence))
    return out


def audit_verdict(table: pd.DataFrame) -> Verdict:
    audited = table[table["audited"].astype(bool)]
    if audited.empty:
        return Verdict("lost / duplicate / oversold orders", None, "not audited", "0 / 0 / 0", "-")
    lost, dup, over = (int(audited[c].sum()) for c in ("lost", "duplicate", "oversold"))
    # an order that exists but is not what the buyer was told (status, item, count, customer) fails it too
    altered = int(audited["altered"].sum(skipna=True)) if "altered" in audited else 0
    incomplete = audited["audit_incomplete"].astype(bool) if "audit_incomplete" in audited else None
    gaps = int(incomplete.sum()) if incomplete is not None else 0
    complete = f"{len(audited) - gaps} complete" if gaps else f"{len(audited)}"
    evidence = f"{complete} audited run(s) of {len(table)}" + (
        f"; audit incomplete for {gaps}: " + ", ".join(audited.loc[incomplete, "run_id"].astype(str)) if gaps else "")
    measured = f"{lost} / {dup} / {over}" + (f" ({altered} altered)" if altered else "")
    return Verdict("lost / duplicate / oversold orders", lost == dup == over == altered == 0, measured,
                   "0 / 0 / 0", evidence)


def study_verdicts(table: pd.DataFrame, targets: Targets, capacity: Verdict | None = None) -> list[Verdict]:
    """Every headline verdict, in the order the summary shows them. With a capacity verdict (a study's repeated
    ramp) that is the throughput claim: one run that met all its SLOs, not the most any run delivered."""
    first = capacity if capacity is not None else throughput_verdict(table, targets)
    return [first, *journey_verdicts(table, targets), audit_verdict(table)]


def overall(verdicts: list[Verdict]) -> bool:
    """Pass only when every verdict that was measured passed and at least one was measured."""
    measured = [v for v in verdicts if v.passed is not None]
    return bool(measured) and all(v.passed for v in measured) and not any(v.undecided for v in verdicts)


def overall_label(verdicts: list[Verdict]) -> str:
    """PASS, FAIL (any measured check failed) or UNDECIDED (none failed, but an interval straddles its target)."""
    if any(v.passed is False for v in verdicts):
        return "FAIL"
    if any(v.undecided for v in verdicts):
        return "UNDECIDED"
    return "PASS" if overall(verdicts) else "FAIL"


def verdict_table(verdicts: list[Verdict]) -> pd.DataFrame:
    return pd.DataFrame([{"check": v.check, "measured": v.measured, "target": v.target, "verdict": v.label,
                          "evidence": v.evidence} for v in verdicts])


def verdicts_json(verdicts: list[Verdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]


def what_it_means(verdicts: list[Verdict], table: pd.DataFrame, targets: Targets,
                  cores: dict[str, pd.Series] | None = None, saturation: pd.DataFrame | None = None,
                  faults: pd.DataFrame | None = None) -> list[str]:
    """Sentences for the event, each derived from a verdict or a measured figure (nothing typed in)."""
    out: list[str] = []
    by_check = {v.check: v for v in verdicts}
    tp = by_check.get("sustained purchases per minute")
    capacity = next((v for v in verdicts if v.check.endswith(CAPACITY_CHECK)), None)
    if capacity is not None:
        most = float(table["throughput_per_min"].max()) if len(table) else math.nan
        said = {True: "at or above", False: "below", None: "too close to call against"}[capacity.passed]
        out.append(f"Within its SLOs the deployment sustained {capacity.measured}: {said} the on-sale target of "
                   f"{targets.target_per_min:.0f}/min" + (f"; the most any run delivered, SLOs aside, was "
                                                          f"{most:.0f}/min." if most == most else "."))
        if capacity.passed is False and capacity.measured != "-":
            per = float(capacity.measured.split("/")[0])
            if per > 0:
                out.append(f"About {targets.target_per_min / per:.1f}x the measured capacity is needed before the "
                           "doors open.")
        if capacity.undecided:
            out.append("The interval straddles the target: repeat the ramp (capacity_api.repeats) or measure on a "
                       "quieter machine before deciding.")
    if tp is not None and tp.passed is not None:
        if tp.passed:
            out.append(f"The deployment sustained {tp.measured} ({tp.evidence}), at or above the on-sale target of "
                       f"{targets.target_per_min:.0f}/min: it can take the expected rush at this size.")
        else:
            best = float(table["throughput_per_min"].max())
            short = targets.target_per_min / best if best > 0 else math.inf
            out.append(f"The deployment sustained at most {tp.measured} ({tp.evidence}), "
                       f"{targets.target_per_min - best:.0f}/min short of {targets.target_per_min:.0f}/min: "
                       f"about {short:.1f}x the measured capacity is needed before the doors open.")
    for v in verdicts:
        if v.check.endswith("p95 latency") and v.passed is False:
            out.append(f"{v.check.split(':')[0]} buyers wait too long at the best steady load: p95 {v.measured} "
                       f"against {v.target} ({v.evidence}).")
        if v.check.endswith("failed attempts") and v.passed is False:
            out.append(f"{v.check.split(':')[0]} buyers fail too often at the best steady load: {v.measured} of "
                       f"attempts against {v.target} ({v.evidence}).")
    audit = by_check.get("lost / duplicate / oversold orders")
    if audit is not None and audit.passed is False:
        out.append(f"Orders were lost, duplicated, oversold or altered ({audit.measured}): fix correctness before any "
                   "capacity work; a buyer told 'purchased' must own a ticket, exactly once.")
    elif audit is not None and audit.passed:
        out.append(f"No order was lost, duplicated, oversold or altered in {audit.evidence}.")
    if saturation is not None and len(saturation):
        for row in saturation.itertuples():
            if row.saturated:
                within = (f"within its SLOs it served at most {row.max_within_slo_per_min:.0f}/min"
                          if row.max_within_slo_per_min > 0 else "no step of it met its SLOs")
                out.append(f"The {row.journey} journey saturates at about {row.max_throughput_per_min:.0f} "
                           f"purchases/min ({row.where}); {within}.")
    for journey, need in (cores or {}).items():
        if len(need):
            top = need.sort_values(ascending=False)
            out.append(f"With only the {journey} journey, {targets.target_per_min:.0f} purchases/min need about "
                       f"{top.sum():.1f} cores in all, most of them for {top.index[0]} ({top.iloc[0]:.1f} cores): "
                       "add cores there first.")
    if faults is not None and len(faults) and "recovery_recovered" in faults:
        from lab.faults.analysis import unrecovered

        stuck, unsettled, cut = unrecovered(faults)
        for row in stuck.itertuples():
            out.append(f"After {row.action} on {row.target} the throughput did not come back within the "
                       "observation window and the steady-state check after the undo failed: make that component "
                       "redundant or restart it automatically.")
        for row in unsettled.itertuples():
            out.append(f"After {row.action} on {row.target} the service passed its steady-state check after the "
                       "undo, but its throughput had not settled within 10% of the pre-fault level before the "
                       "window ended (the next fault or the end of the load came first).")
        for row in cut.itertuples():
            out.append(f"After {row.action} on {row.target} the next fault began before the steady-state check "
                       "after the undo held: whether it came back is not known; space the faults further apart.")
        slow = faults[faults["recovery_recovered"].fillna(False).astype(bool)]
        if len(slow):
            worst = slow.loc[slow["recovery_time_to_recover"].idxmax()]
            out.append(f"The slowest recovery was after {worst['action']} on {worst['target']}: "
                       f"{worst['recovery_time_to_recover']:.0f} s from the injection.")
    if not out:
        out.append("Nothing was measured that supports a conclusion: the study folder holds no usable run.")
    return out


__all__ = ["CAPACITY_CHECK", "Targets", "Verdict", "audit_verdict", "best_run", "journey_verdicts",
           "overall", "overall_label", "steady_runs",
           "study_verdicts", "throughput_verdict", "verdict_table", "verdicts_json", "what_it_means"]
