"""Everything the study report states, computed once from a study folder (or one run folder).

The notebook displays these frames and sentences; a test recomputes them and compares with what the notebook
published, and `<study_dir>/headline.json` carries the headline figures to the reports index.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lab.analysis import capacity, planning, verdicts, who_pays
from lab.analysis.sellout import read_catalogue, sellout_headline, sellout_table
from lab.analysis.study import StudyRun, load_runs, run_table
from lab.analysis.verdicts import Targets
from lab.evidence.runfolder import RunFolder

HEADLINE = "headline.json"


def run_faults(study_run: StudyRun) -> pd.DataFrame:
    """Per fault of one run (lab.faults.analysis), with the run id; empty when it had none."""
    from lab.faults.analysis import analyse_faults
    from lab.faults.record import read_faults

    faults = read_faults(study_run.run.path)
    if faults.empty:
        return pd.DataFrame()
    table = analyse_faults(faults, study_run.run.attempts, study_run.run.requests)
    table.insert(0, "run_id", study_run.run_id)
    return table


def audit_by_fault(study_run: StudyRun, faults: pd.DataFrame) -> pd.DataFrame:
    """Lost and duplicate attempts of a run's audit, each put under the fault whose window (inject to horizon)
    holds the attempt's scheduled start; oversold quotas are the run's (not attributable to one fault)."""
    from lab.evidence.audit_rules import read_audit

    path = RunFolder(study_run.run.path).audit_path
    if faults.empty:
        return pd.DataFrame()
    if not path.exists():
        return pd.DataFrame({"fault_id": faults["fault_id"], "audited": False})
    audit = read_audit(study_run.run.path)
    scheduled = study_run.run.attempts.set_index("attempt_id")["scheduled"]
    rows = []
    for fault in faults.itertuples():
        start, end = fault.inject, getattr(fault, "horizon", fault.undo)
        counts = {}
        for rule in ("lost", "duplicate"):
            ids = [r.get("attempt_id") for r in getattr(audit, rule).rows]
            times = scheduled.reindex([i for i in ids if i is not None])
            counts[rule] = int(((times >= start) & (times <= end)).sum())
        rows.append({"fault_id": fault.fault_id, "audited": True, **counts,
                     "oversold (whole run)": audit.oversold.count, "run clean": audit.clean})
    return pd.DataFrame(rows)


@dataclass
class StudySummary:
    """The report's numbers: run table, verdicts, capacity, planning, faults."""

    folder: Path
    targets: Targets
    utilisation: float
    runs: list[StudyRun]
    table: pd.DataFrame
    verdicts: list[verdicts.Verdict]
    steps: pd.DataFrame
    saturation: pd.DataFrame
    costs: pd.DataFrame
    journey_costs: pd.DataFrame
    journey_idle: pd.DataFrame
    fit_methods: dict[str, str]
    login_cost: pd.Series
    login_source: str
    recorded_login_share: float
    faults: pd.DataFrame
    audit_faults: pd.DataFrame
    extra_targets: list[float] = field(default_factory=list)
    warmup_seconds: float = 0.0
    sellout: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per sold-out quota (lab.analysis.sellout)
    capacity_rounds: pd.DataFrame = field(default_factory=pd.DataFrame)  # api: each round's capacity within SLO
    capacity: dict = field(default_factory=dict)  # journey -> {per_min, ci_low, ci_high, repeats}
    efficiency: dict | None = None  # pretix alone against the deployment, same run (lab.analysis.who_pays), or None

    @property
    def study_id(self) -> str:
        """study.json's study_id, else the folder's name."""
        path = self.folder / "study.json"
        if path.exists():
            doc = json.loads(path.read_text())
            if isinstance(doc, dict) and doc.get("study_id"):
                return str(doc["study_id"])
        return self.folder.name

    @property
    def passed(self) -> bool:
        return verdicts.overall(self.verdicts)

    @property
    def verdict(self) -> str:
        """PASS, FAIL or UNDECIDED (a capacity interval straddles the target)."""
        return verdicts.overall_label(self.verdicts)

    def kinds(self) -> list[str]:
        return sorted(self.table["kind"].unique()) if len(self.table) else []

    def runs_of(self, *kinds: str) -> list[StudyRun]:
        return [r for r in self.runs if r.kind in kinds]

    def cores(self, target_per_min: float | None = None, journey: str | None = None) -> pd.Series:
        """Cores per module at a rate, for one journey (default: the steady run with the most purchases')."""
        if self.journey_costs.empty:
            return pd.Series(dtype=float)
        if journey is None:
            best = verdicts.best_run(self.table)
            journey = best["journey"] if best is not None and best["journey"] in self.journey_costs.index else \
                self.journey_costs.index[0]
        rate = self.targets.target_per_min if target_per_min is None else target_per_min
        idle = self.journey_idle.loc[journey] if journey in self.journey_idle.index else None
        return planning.cores_for(self.journey_costs.loc[journey], rate, self.utilisation, idle)

    def cores_table(self) -> pd.DataFrame:
        """Cores per module for each journey at the target (and the extra targets)."""
        rows = []
        for rate in [self.targets.target_per_min, *self.extra_targets]:
            for journey in self.journey_costs.index:
                cores = self.cores(rate, journey)
                rows.append({"journey": journey, "purchases/min": rate,
                             **{f"{m} cores": round(float(v), 2) for m, v in cores.items()},
                             "total cores": round(float(cores.sum()), 2)})
        return pd.DataFrame(rows)

    def mixes(self, target_per_min: float | None = None) -> pd.DataFrame:
        rate = self.targets.target_per_min if target_per_min is None else target_per_min
        return planning.mix_table(self.journey_costs, self.login_cost, self.recorded_login_share, rate,
                                  self.utilisation, idle=self.journey_idle)

    def meaning(self) -> list[str]:
        cores = {journey: self.cores(journey=journey) for journey in self.journey_costs.index}
        return verdicts.what_it_means(self.verdicts, self.table, self.targets, cores, self.saturation, self.faults)

    def headline(self) -> dict[str, Any]:
        """What the reports index shows for this study (written to <study>/headline.json)."""
        best = self.table.loc[self.table["throughput_per_min"].idxmax()] if len(self.table) else None
        cores = self.cores()

        def number(x: Any) -> float | None:
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 3)

        per_journey = {j: r for j in self.table["journey"].unique()
                       if (r := verdicts.best_run(self.table, j)) is not None} if len(self.table) else {}
        errors = [float(r["error_rate"]) for r in per_journey.values() if not math.isnan(float(r["error_rate"]))]
        return {
            "study_id": self.study_id, "verdict": self.verdict,
            "capacity": {j: {k: number(v) if k != "repeats" else int(v) for k, v in e.items()}
                         for j, e in self.capacity.items()},
            "most_delivered_per_min": number(best["throughput_per_min"]) if best is not None else None,
            "sustained_per_min": number(best["throughput_per_min"]) if best is not None else None,
            "peak_per_min": number(self.table["peak_per_min"].max()) if len(self.table) else None,
            "p95_api_s": number(per_journey["api"]["p95"]) if "api" in per_journey else None,
            "p95_shop_s": number(per_journey["shop"]["p95"]) if "shop" in per_journey else None,
            "error_rate": number(max(errors)) if errors else None,
            "study": self.folder.name, "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "passed": self.passed, "runs": len(self.table), "kinds": self.kinds(),
            "target_per_min": self.targets.target_per_min,
            "throughput_per_min": number(best["throughput_per_min"]) if best is not None else None,
            "throughput_run": str(best["run_id"]) if best is not None else None,
            "p95_seconds": {j: number(r["p95"]) for j, r in per_journey.items()},
            "error_rate_by_journey": {j: number(r["error_rate"]) for j, r in per_journey.items()},
            **{rule: int(self.table[rule].sum(skipna=True)) for rule in ("lost", "duplicate", "oversold")},
            "audit": {**{rule: int(self.table[rule].sum(skipna=True)) if rule in self.table else 0
                         for rule in ("lost", "duplicate", "oversold", "altered", "ghost", "confirmed_by_lookup")},
                      "audited": int(self.table["audited"].astype(bool).sum()) if len(self.table) else 0,
                      "incomplete": int(self.table["audit_incomplete"].astype(bool).sum()) if len(self.table)
                      else 0},
            "failed_runs": [str(r) for r in self.table.loc[self.table["run_failed"].astype(bool), "run_id"]]
            if len(self.table) else [],
            "cores_for_target": number(cores.sum()) if len(cores) else None,
            "faults": int(len(self.faults)),
            "verdicts": verdicts.verdicts_json(self.verdicts),
            "sellout": sellout_headline(self.sellout),
        }

    def write_headline(self, folder: Path | None = None) -> Path:
        path = Path(folder or self.folder) / HEADLINE
        path.write_text(json.dumps(self.headline(), indent=2))
        return path


def summarise(folder: Path, targets: Targets | None = None, utilisation: float = 0.7,
              login_cpu_seconds: float = 0.22, extra_targets: list[float] | None = None,
              warmup_seconds: float = 0.0) -> StudySummary:
    """Load every run of a study (or the one run) and compute what the report states."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1]; got {utilisation}")
    targets = targets or Targets()
    runs = load_runs(Path(folder))
    if warmup_seconds < 0:
        raise ValueError(f"warmup_seconds must be >= 0; got {warmup_seconds}")
    table = run_table(runs, warmup_seconds)
    steps = capacity.capacity_steps(table)
    costs = planning.cost_table(runs)
    fits = planning.fit_journeys(costs)  # once per journey, read by the four below
    login, source = planning.login_cost(costs, login_cpu_seconds, fits) if len(costs) else (pd.Series(dtype=float),
                                                                                            "assumed")
    fault_tables, audits = [], []
    for r in runs:
        faults = run_faults(r)
        if len(faults):
            fault_tables.append(faults)
            audits.append(audit_by_fault(r, faults).assign(run_id=r.run_id))
    rounds = capacity.capacity_rounds(table, targets, "api") if len(table) else pd.DataFrame()
    estimate = capacity.interval(rounds["capacity_per_min"]) if len(rounds) else None
    ramp = sorted({round(float(x)) for x in table.loc[(table["kind"] == "capacity") & (table["journey"] == "api")
                                                       & (table["model"] == "open"), "offered_per_min"].dropna()}) \
        if len(table) else []
    capacity_verdict = capacity.capacity_verdict(estimate, targets, "api", len(rounds), ramp) if estimate else None
    return StudySummary(
        folder=Path(folder), targets=targets, utilisation=utilisation, runs=runs, table=table,
        verdicts=verdicts.study_verdicts(table, targets, capacity_verdict), steps=steps,
        capacity_rounds=rounds, capacity={"api": estimate} if estimate else {},
        saturation=capacity.saturation(steps, targets), costs=costs,
        journey_costs=planning.journey_costs(fits), journey_idle=planning.journey_idle(fits),
        fit_methods=planning.fit_methods(fits), login_cost=login, login_source=source,
        recorded_login_share=planning.recorded_login_share(costs) if len(costs) else math.nan,
        faults=pd.concat(fault_tables, ignore_index=True) if fault_tables else pd.DataFrame(),
        audit_faults=pd.concat(audits, ignore_index=True) if audits else pd.DataFrame(),
        extra_targets=list(extra_targets or []), warmup_seconds=warmup_seconds,
        sellout=sellout_table(runs, read_catalogue(Path(folder))),
        efficiency=who_pays.read(Path(folder)),
    )


__all__ = ["HEADLINE", "StudySummary", "audit_by_fault", "run_faults", "summarise"]
