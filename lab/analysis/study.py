"""A study folder (or one run folder) -> its runs, each with its kind, and one summary row per run.

A study folder holds run folders (`<study>/runs/<run-id>/`, or directly `<study>/<run-id>/`). A run's kind
(capacity, spike, faults, overload, ...) is read from, in this order: its run.json `kind`, the study's
manifest (`study.json`: `{"runs": [{"run_id": ..., "kind": ...}]}`), its params.yaml (`kind` at the top or in
`load`), else inferred: a run with a fault schedule is `faults`, a run named `capacity-...`/`overload-...` is that.
Everything here is pure pandas over the run's files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lab.analysis.frames import Run
from lab.errors import InputError
from lab.evidence.runfolder import RunFolder

ANSWERED = ("purchased", "sold_out")
FAILED = ("failed", "dropped", "cancelled")
KNOWN_KINDS = ("capacity", "closed", "spike", "faults", "overload", "soak", "load")


@dataclass
class StudyRun:
    """One run of a study with what the report needs to place it: its kind, journey and offered load."""

    run: Run
    kind: str
    params: dict = field(default_factory=dict)
    label: str = ""  # the study's short legend text ("4/s", "sync"), empty when it gave none
    failed: str = ""  # why the run failed (the study recorded it and went on), empty when it did not

    @property
    def run_id(self) -> str:
        return str(self.run.meta.get("run_id") or self.run.path.name)

    @property
    def journey(self) -> str:
        journey = self.run.meta.get("journey") or self.params.get("load", {}).get("journey")
        if not journey and len(self.run.attempts):
            journey = str(self.run.attempts["journey"].iloc[0])
        return str(journey or "api")

    @property
    def workload(self) -> dict:
        return dict(self.params.get("load", {}).get("workload") or {})

    @property
    def model(self) -> str:
        return "closed" if self.workload.get("model") == "closed" else "open"

    @property
    def login_share(self) -> float:
        return float(self.params.get("load", {}).get("login_share", math.nan)) if self.journey == "shop" else 0.0

    @property
    def round(self) -> int:
        """Which repeat of a repeated ramp the run belongs to (the study names them `...-r<k>`), else 1."""
        import re

        found = re.search(r"-r(\d+)$", str(self.params.get("load", {}).get("name") or ""))
        return int(found.group(1)) if found else 1

    @property
    def has_faults(self) -> bool:
        return bool(self.params.get("load", {}).get("faults") or (self.run.meta.get("faults") or {}).get("faults"))


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {} if path.exists() else {}
    except yaml.YAMLError:
        return {}


def manifest_entries(study_dir: Path) -> dict[str, dict]:
    """Run folder name -> its study.json entry ({"name", "kind", "journey", "dir", "label"}), in the study's
    order; empty without a study.json."""
    path = Path(study_dir) / "study.json"
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    runs = doc.get("runs", []) if isinstance(doc, dict) else doc
    entries: dict[str, dict] = {}
    for entry in runs or []:
        if not isinstance(entry, dict):
            continue
        for key in ("dir", "run_id", "path", "name"):
            if entry.get(key):
                entries.setdefault(Path(str(entry[key])).name, entry)
    return entries


def manifest_kinds(study_dir: Path) -> dict[str, str]:
    """Run folder name -> kind, from the study's study.json when it has one."""
    return {name: str(e["kind"]) for name, e in manifest_entries(study_dir).items() if e.get("kind")}


def infer_kind(meta: dict, params: dict, name: str) -> str:
    """The kind a run declares, else what its schedule and name say."""
    for source in (meta, params, params.get("load", {}) if isinstance(params.get("load"), dict) else {}):
        if isinstance(source, dict) and source.get("kind"):
            return str(source["kind"])
    if params.get("load", {}).get("faults") or (meta.get("faults") or {}).get("faults"):
        return "faults"
    run_name = str(params.get("load", {}).get("name") or name)
    for kind in KNOWN_KINDS:
        if run_name.startswith(kind) or f"-{kind}" in name:
            return kind
    return "load"


def is_run_dir(path: Path) -> bool:
    return RunFolder.holds_run(path)


class NotARunFolder(InputError, FileNotFoundError):
    """A folder given as a run or study folder holds no run (a bad argument, not a failure)."""


def run_dirs(folder: Path) -> list[Path]:
    """The run folders of a study folder (sorted by name, i.e. by start time); a run folder is its own list."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotARunFolder(f"study_dir/run_dir {folder} is not a folder")
    if is_run_dir(folder):
        return [folder]
    found = [p for p in folder.iterdir() if is_run_dir(p)]
    found += [folder / e["dir"] for e in manifest_entries(folder).values()
              if e.get("dir") and is_run_dir(folder / e["dir"])]
    runs = folder / "runs"
    if runs.is_dir():
        found += [p for p in runs.iterdir() if is_run_dir(p)]
    return sorted({p.resolve() for p in found}, key=lambda p: p.name)


def load_runs(folder: Path) -> list[StudyRun]:
    """Every run of a study folder (or the one run of a run folder), with its kind."""
    folder = Path(folder)
    paths = run_dirs(folder)
    if not paths:
        raise NotARunFolder(f"no run folder (with {RunFolder.META} or {RunFolder.ATTEMPTS}) in {folder} or "
                             f"{folder}/runs")
    entries = manifest_entries(folder)
    order = {name: i for i, name in enumerate(entries)}
    paths = sorted(paths, key=lambda p: (order.get(p.name, len(order)), p.name))  # the study's order first
    return [load_run(path, entries) for path in paths]


def load_run(path: Path, entries: dict[str, dict] | None = None) -> StudyRun:
    """One run folder with its kind and label, `entries` being the study's (see manifest_entries). The one way a
    run is read for a table: load_runs and lab.study.folder.step_figures both come here, so run_row sees the same
    run whoever asks."""
    path = Path(path)
    run = Run.load(path)
    params = _read_yaml(RunFolder(path).params_path)
    entries = entries or {}
    entry = entries.get(path.name) or entries.get(str(run.meta.get("run_id"))) or {}
    kind = run.meta.get("kind") or entry.get("kind") or infer_kind(run.meta, params, path.name)
    return StudyRun(run, str(kind), params, label=str(entry.get("label") or ""), failed=str(entry.get("failed") or ""))


def load_seconds(attempts: pd.DataFrame, workload: dict) -> float:
    """How long the load was offered: the workload's duration (or stages), else the schedule's span."""
    if workload.get("model") == "spike" and workload.get("within"):
        return float(workload["within"])
    if workload.get("stages"):
        return float(sum(float(s.get("duration", 0)) for s in workload["stages"]))
    if workload.get("duration"):
        return float(workload["duration"])
    if len(attempts) > 1:
        return float(attempts["scheduled"].max() - attempts["scheduled"].min())
    return math.nan


def peak_per_min(attempts: pd.DataFrame, window_seconds: float = 10.0) -> float:
    """The most purchases completed in any `window_seconds` (by end time), per minute."""
    ends = attempts.loc[attempts["outcome"] == "purchased", "end"].dropna().sort_values().to_numpy()
    if len(ends) == 0:
        return 0.0
    import numpy as np

    inside = np.searchsorted(ends, ends + window_seconds, side="left") - np.arange(len(ends))
    return 60.0 * float(inside.max()) / window_seconds


def sustained_per_min(attempts: pd.DataFrame) -> float:
    """Purchases per minute from the first scheduled attempt to the last purchase's end (drain included)."""
    bought = attempts[attempts["outcome"] == "purchased"].dropna(subset=["end"])
    if bought.empty:
        return 0.0
    span = float(bought["end"].max() - attempts["scheduled"].min())
    return 60.0 * len(bought) / span if span > 0 else math.nan


WAITED = (*ANSWERED, "failed", "cancelled", "queued")  # every launched attempt: a buyer who never got an answer
# waited until the generator gave up, and leaving those out would make an overloaded run look fast


def latency_quantiles(attempts: pd.DataFrame) -> dict[str, float]:
    """p50/p95/p99 (s) from the scheduled start to the end of every launched attempt: answered ones, and those
    that failed or were cancelled (counted at the time they waited). Dropped arrivals never started."""
    done = attempts[attempts["outcome"].isin(WAITED)].dropna(subset=["end"])
    latency = done["end"] - done["scheduled"]
    if latency.empty:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan}
    return {f"p{q}": float(latency.quantile(q / 100)) for q in (50, 95, 99)}


def _audit_counts(path: Path) -> dict[str, Any]:
    from lab.evidence.audit_rules import read_audit

    if not RunFolder(path).audit_path.exists():
        return {"audited": False, "lost": math.nan, "duplicate": math.nan, "oversold": math.nan,
                "altered": math.nan, "ghost": math.nan, "false_availability": math.nan, "confirmed_by_lookup": math.nan,
                "audit_incomplete": ""}
    audit = read_audit(path)
    by_lookup = audit.totals.get("purchased_by_lookup")
    return {"audited": True, "lost": audit.lost.count, "duplicate": audit.duplicate.count,
            "oversold": audit.oversold.count,
            # an audit.json from before the content rule did not check it: NaN, not 0
            "altered": math.nan if audit.altered.unit == "not checked" else audit.altered.count,
            "ghost": audit.ghost.count, "false_availability": audit.false_availability.count,
            "confirmed_by_lookup": math.nan if by_lookup is None else by_lookup,
            "audit_incomplete": audit.incomplete or ""}


def after_warmup(attempts: pd.DataFrame, warmup_seconds: float) -> pd.DataFrame:
    """The attempts scheduled after the first `warmup_seconds` of the run (all of them when 0)."""
    if warmup_seconds <= 0 or attempts.empty:
        return attempts
    return attempts[attempts["scheduled"] >= attempts["scheduled"].min() + warmup_seconds]


def run_row(study_run: StudyRun, warmup_seconds: float = 0.0) -> dict[str, Any]:
    """One run's headline numbers: offered load, throughput, latency percentiles, errors, audit. Latency and
    errors leave out attempts scheduled in the first `warmup_seconds` (throughput and offered load do not)."""
    attempts = study_run.run.attempts
    judged = after_warmup(attempts, warmup_seconds)
    n = len(attempts)
    seconds = load_seconds(attempts, study_run.workload)
    offered = 60.0 * n / seconds if study_run.model == "open" and seconds and seconds > 0 else math.nan
    counts = attempts["outcome"].value_counts()
    failed = int(judged["outcome"].isin(FAILED).sum())
    return {
        "run_id": study_run.run_id, "kind": study_run.kind, "journey": study_run.journey,
        "model": study_run.model, "users": study_run.workload.get("users") if study_run.model == "closed" else None,
        "login_share": study_run.login_share, "load_seconds": seconds,
        "offered_per_min": offered, "attempts": n, "purchased": int(counts.get("purchased", 0)),
        "sold_out": int(counts.get("sold_out", 0)), "failed": failed,
        "error_rate": failed / len(judged) if len(judged) else math.nan,
        "throughput_per_min": sustained_per_min(attempts), "peak_per_min": peak_per_min(attempts),
        **latency_quantiles(judged), "faults": study_run.has_faults, **_audit_counts(study_run.run.path),
        "run_failed": study_run.failed, "latency_growth": growth(judged), "round": study_run.round,
    }


def growth(attempts: pd.DataFrame) -> float:
    """How much the latency of the run's last third of arrivals exceeds its first third's (medians, s)."""
    from lab.analysis.capacity import latency_growth

    done = attempts[attempts["outcome"].isin(WAITED)].dropna(subset=["end"])
    return latency_growth(zip(done["scheduled"], done["end"] - done["scheduled"], strict=True))


def run_table(runs: list[StudyRun], warmup_seconds: float = 0.0) -> pd.DataFrame:
    """One row per run (see run_row), in the study's order."""
    return pd.DataFrame([run_row(r, warmup_seconds) for r in runs])


__all__ = ["StudyRun", "after_warmup", "infer_kind", "latency_quantiles", "load_run", "load_runs", "load_seconds",
           "manifest_entries", "manifest_kinds", "peak_per_min", "run_dirs", "run_row", "run_table",
           "sustained_per_min"]
