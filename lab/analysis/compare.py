"""Two or more runs side by side (for example synchronous vs asynchronous replication): what differed in their
set-up, what each measured, and how each differs from the first (the baseline). Pure pandas over run folders."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lab.analysis.environment import read_environment
from lab.analysis.study import StudyRun, load_runs, run_row

MEASURES = {  # column: (what it is, unit, higher is better)
    "throughput_per_min": ("sustained throughput", "/min", True),
    "p50": ("p50 latency", "s", False),
    "p95": ("p95 latency", "s", False),
    "p99": ("p99 latency", "s", False),
    "error_rate": ("failed attempts", "", False),
}


def load_compared(paths: list[str | Path]) -> list[StudyRun]:
    """Each path is a run folder (or a study folder, all of whose runs are taken), in the order given."""
    if len(paths) < 1:
        raise ValueError("run_dirs: give at least two run folders to compare (or a study folder)")
    runs: list[StudyRun] = []
    for path in paths:
        runs += load_runs(Path(path))
    if len(runs) < 2:
        raise ValueError(f"run_dirs: {len(runs)} run found; a comparison needs two or more")
    return runs


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value


def setup(run: StudyRun) -> dict:
    """A run's set-up as flat key -> value: stack parameters, load parameters and image ids."""
    env = read_environment(run.run.path)
    flat: dict = {}
    _flatten("stack", env.get("stack_params") or run.params.get("stack") or {}, flat)
    load = {k: v for k, v in (run.params.get("load") or {}).items() if k not in ("name", "faults")}
    _flatten("load", load, flat)
    _flatten("image", {k: str(v)[:19] for k, v in (env.get("images") or {}).items()}, flat)
    return flat


def differing_setup(runs: list[StudyRun], labels: list[str]) -> pd.DataFrame:
    """Only the set-up keys whose values differ between the runs (rows: key, columns: run labels)."""
    table = pd.DataFrame({label: pd.Series(setup(r), dtype=object) for label, r in zip(labels, runs, strict=True)})
    if table.empty:
        return table
    as_text = table.astype(str)
    differs = as_text.nunique(axis=1) > 1
    return table[differs].rename_axis("set-up")


def default_labels(runs: list[StudyRun]) -> list[str]:
    """Short, unique labels: the study's own labels when every run has one, the replication mode when that is
    what differs, else the run ids."""
    own = [r.label for r in runs]
    if all(own) and len(set(own)) == len(own):
        return own
    modes = [str((read_environment(r.run.path).get("stack_params") or {}).get("replication", "")) for r in runs]
    if all(modes) and len(set(modes)) == len(modes):
        return [f"{m} replication" for m in modes]
    return [r.run_id for r in runs]


def compare_table(runs: list[StudyRun], labels: list[str] | None = None,
                  fault_tables: list[pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per run: label, run row (see lab.analysis.study.run_row), faults and their worst recovery.
    `fault_tables`: each run's lab.analysis.summary.run_faults when the caller has them (notebook 05 also lists
    the faults one by one), so each run's faults are analysed once; else they are analysed here."""
    from lab.analysis.summary import run_faults

    labels = labels or default_labels(runs)
    if len(labels) != len(runs):
        raise ValueError(f"labels: {len(labels)} given for {len(runs)} runs; give one per run or none")
    if fault_tables is None:
        fault_tables = [run_faults(run) for run in runs]
    rows = []
    for label, run, faults in zip(labels, runs, fault_tables, strict=True):
        row = run_row(run)
        recovered = faults["recovery_recovered"].fillna(False).astype(bool) if len(faults) else pd.Series([])
        row.update({"label": label, "fault_count": len(faults),
                    "unrecovered_faults": int((~recovered).sum()) if len(faults) else 0,
                    "worst_recovery_s": float(faults["recovery_time_to_recover"].max()) if len(faults) else math.nan,
                    "failed_in_faults": int(faults["failed_attempts"].sum()) if len(faults) else 0})
        rows.append(row)
    table = pd.DataFrame(rows)
    return table[["label", *[c for c in table.columns if c != "label"]]]


def relative_to_baseline(table: pd.DataFrame) -> pd.DataFrame:
    """Each measure of each run as a change from the first run (ratio - 1); the baseline's row is 0."""
    base = table.iloc[0]
    out = {"label": table["label"]}
    for column in MEASURES:
        ref = float(base[column])
        out[column] = (table[column] / ref - 1.0) if ref and not math.isnan(ref) else math.nan
    return pd.DataFrame(out)


def compare_sentences(table: pd.DataFrame) -> list[str]:
    """What differs, in words: each run's measures against the baseline (the first run), and who did best."""
    base = table.iloc[0]
    out = []
    for _, row in table.iloc[1:].iterrows():
        parts = []
        for column, (name, unit, _higher) in MEASURES.items():
            a, b = float(base[column]), float(row[column])
            if math.isnan(a) or math.isnan(b):
                continue
            if column == "error_rate":
                parts.append(f"{name} {b:.2%} vs {a:.2%}")
            elif a:
                parts.append(f"{name} {b:.2f}{unit} vs {a:.2f}{unit} ({b / a - 1:+.0%})")
        if row["fault_count"] or base["fault_count"]:
            def faults(r) -> str:
                if not r["fault_count"]:
                    return "no fault"
                worst = "" if math.isnan(r["worst_recovery_s"]) else f", worst recovery {r['worst_recovery_s']:.0f} s"
                return f"{r['fault_count']} fault(s){worst}, {r['unrecovered_faults']} not recovered"
            parts.append(f"{faults(row)} vs {faults(base)}")
        out.append(f"{row['label']} against {base['label']}: " + "; ".join(parts) + ".")
    for column, (name, _unit, higher) in MEASURES.items():
        values = table[column].dropna()
        if len(values) >= 2 and values.nunique() > 1:
            best = table.loc[values.idxmax() if higher else values.idxmin(), "label"]
            out.append(f"Best {name}: {best}.")
    return out


__all__ = ["MEASURES", "compare_sentences", "compare_table", "default_labels", "differing_setup",
           "load_compared", "relative_to_baseline", "setup"]


def compare_studies(baseline, other) -> pd.DataFrame:
    """Two studies' headline figures (lab.analysis.summary.StudySummary each) side by side, with whether each
    difference is beyond the noise: a capacity measured in repeated rounds differs when the two 95% intervals do
    not overlap; a figure measured once has no known noise ("one sample: cannot tell"); audit counts are counts
    (any difference is real)."""
    from lab.analysis.capacity import describe_interval

    rows = []
    for journey in sorted(set(baseline.capacity) | set(other.capacity)):
        a, b = baseline.capacity.get(journey), other.capacity.get(journey)
        if not a or not b:
            verdict = "measured in one study only"
        elif a["repeats"] < 2 or b["repeats"] < 2:
            verdict = "one sample: cannot tell"
        else:
            verdict = "beyond the noise" if a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"] else \
                "within the noise (the intervals overlap)"
        rows.append({"figure": f"{journey} capacity within SLO", "baseline": describe_interval(a) if a else "-",
                     "other": describe_interval(b) if b else "-", "difference": verdict})
    for journey in sorted(set(baseline.table["journey"]) | set(other.table["journey"])):
        for column, (what, unit, _) in MEASURES.items():
            if column not in ("p95", "error_rate"):
                continue
            a, b = (verdict_run(s, journey) for s in (baseline, other))
            rows.append({"figure": f"{journey} {what} (best steady run)",
                         "baseline": _figure(a, column, unit), "other": _figure(b, column, unit),
                         "difference": "one sample: cannot tell"})
    for rule in ("lost", "duplicate", "oversold", "ghost"):
        a, b = (int(s.table[rule].sum(skipna=True)) if rule in s.table else 0 for s in (baseline, other))
        rows.append({"figure": f"{rule} orders", "baseline": str(a), "other": str(b),
                     "difference": "none" if a == b else "a count: the difference is real"})
    return pd.DataFrame(rows, columns=["figure", "baseline", "other", "difference"])


def verdict_run(summary, journey: str):
    from lab.analysis.verdicts import best_run

    return best_run(summary.table, journey)


def _figure(row, column: str, unit: str) -> str:
    if row is None or math.isnan(float(row[column])):
        return "-"
    value = float(row[column])
    return f"{value:.2%}" if column == "error_rate" else f"{value:.2f} {unit}".strip()
