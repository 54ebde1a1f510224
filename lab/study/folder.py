"""A study folder (data/runs/<study-id>/): its parameters, its record (study.json) and its runs.

study.json is written whole, atomically (temp file + rename), by whoever adds to it: the runner (status, failure)
and the notebooks (one entry per run), which never run at the same time. See /work/helpers/CONTRACT.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.common.paths import ROOT, data_dir
from lab.errors import LabError
from lab.experiments.run import RunFailed
from lab.study import params as studies


class StackGone(LabError, RuntimeError):
    """The stack no longer answers after a failed run: nothing more can be measured in this study."""

NOTEBOOKS = ["00-deploy.ipynb", "01-seed.ipynb", "02-load.ipynb", "03-faults.ipynb", "04-analysis.ipynb"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_study_id(preset: str) -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{preset}"


@dataclass
class StudyFolder:
    path: Path
    params: studies.StudyParams

    # -- making and opening ------------------------------------------------------------------------------------
    @classmethod
    def create(cls, params: studies.StudyParams, root: Path | None = None) -> StudyFolder:
        """A new folder with study.yaml (the validated parameters: no secrets in them) and study.json."""
        root = root or data_dir() / "runs"
        path = root / new_study_id(params.preset)
        path.mkdir(parents=True, exist_ok=False)
        (path / "study.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False,
                                                        allow_unicode=True))
        folder = cls(path, params)
        folder.write({"study_id": path.name, "preset": params.preset, "status": "running", "started": _now(),
                      "finished": None, "failed": None, "runs": []})
        return folder

    @classmethod
    def open(cls, study_dir: str | Path = "", params_file: str | Path = "") -> StudyFolder:
        """The study a notebook works on. Empty study_dir: the newest study folder under data/runs, or a new one
        from the `quick` preset (a notebook opened alone in JupyterLab). Empty params_file: its study.yaml."""
        if study_dir:
            path = Path(study_dir)
            path = path if path.is_absolute() else ROOT / path
        else:
            found = sorted((data_dir() / "runs").glob("*/study.json"), key=lambda p: p.stat().st_mtime)
            if not found:
                params = studies.load(Path(params_file) if params_file else studies.preset_path("quick"),
                                      check_budget=False)
                return cls.create(params)
            path = found[-1].parent
        if not (path / "study.json").exists():
            raise FileNotFoundError(f"{path} is not a study folder (no study.json): run `lab study` first")
        source = Path(params_file) if params_file else path / "study.yaml"
        return cls(path, studies.load(source, check_budget=False))

    # -- the record ----------------------------------------------------------------------------------------------
    @property
    def study_id(self) -> str:
        return self.path.name

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def notebooks_dir(self) -> Path:
        return self.path / "notebooks"

    def read(self) -> dict[str, Any]:
        return json.loads((self.path / "study.json").read_text())

    def write(self, doc: dict[str, Any]) -> None:
        target = self.path / "study.json"
        partial = target.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(doc, indent=2, default=str))
        partial.replace(target)

    def update(self, **changes: Any) -> dict[str, Any]:
        doc = self.read()
        doc.update(changes)
        self.write(doc)
        return doc

    def add_run(self, entry: dict[str, Any]) -> None:
        """Record a run; a run of the same name recorded before is superseded (a notebook run again)."""
        entry = dict(entry)
        run_dir = Path(entry["dir"])
        if run_dir.is_absolute():
            entry["dir"] = str(run_dir.relative_to(self.path))
        doc = self.read()
        doc["runs"] = [r for r in doc.get("runs", []) if r.get("name") != entry["name"]] + [entry]
        self.write(doc)

    def runs(self, kind: str | None = None, journey: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.read().get("runs", [])
                if (kind is None or r.get("kind") == kind) and (journey is None or r.get("journey") == journey)]

    def finish(self, status: str, failed: dict[str, Any] | None = None) -> None:
        self.update(status=status, finished=_now(), failed=failed)

    # -- a run -------------------------------------------------------------------------------------------------
    def execute(self, ctx, planned: studies.PlannedRun, log=print) -> dict[str, Any]:
        """Validate and execute one planned run (experiments.run), then record it in study.json; returns its entry."""
        from lab.common.blocking import run_blocking
        from lab.experiments.run import execute, validate_load

        cat = self.params.seed.catalogue
        load = validate_load(planned.load, cat)
        log(f"[{time.strftime('%H:%M:%S')}] run {planned.name}: {load.parsed_workload().describe()}")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        entry = {"name": planned.name, "kind": planned.kind, "journey": planned.journey, "label": planned.label}
        run_ctx = ctx.for_run(cat, stack_params=self.params.stack.model_dump(mode="json"))
        try:
            run_dir = run_blocking(execute, load, run_ctx, root=self.runs_dir, log=log)
        except RunFailed as error:
            return self.run_failed(ctx, {**entry, "dir": str(error.run_dir.relative_to(self.path))}, error.why, log)
        entry["dir"] = str(run_dir.relative_to(self.path))
        self.add_run(entry)
        return entry

    def run_failed(self, ctx, entry: dict[str, Any], why: str, log=print) -> dict[str, Any]:
        """Record a run that failed (`failed`: why) and go on, unless the stack itself is gone (StackGone)."""
        from lab.evidence.drain import stack_gone

        log(f"run {entry['name']} failed: {why}; recorded, the study goes on")
        entry = {**entry, "failed": why}
        self.add_run(entry)
        gone = stack_gone(ctx.access, ctx.docker, log=log)
        if gone:
            raise StackGone(f"after run {entry['name']} failed ({why}) the stack is gone: {gone}")
        return entry

    def api_capacity(self) -> float | None:
        """The api capacity (per second) measured so far, by the lab's one definition (lab.analysis.capacity: the
        median over the ramp's rounds of the highest rate that met every SLO), None when no step met it."""
        import pandas as pd

        from lab.analysis.capacity import capacity_rounds, interval
        from lab.analysis.study import load_run, run_row
        from lab.analysis.verdicts import Targets

        analysis = self.params.analysis
        targets = Targets(target_per_min=analysis.target_per_min, slo_p95_seconds=analysis.slo_p95_seconds,
                          slo_p95_shop_seconds=analysis.slo_p95_shop_seconds, slo_error_rate=analysis.slo_error_rate)
        entries = [e for e in self.runs(kind="capacity", journey="api") if e.get("dir")]
        rows = [run_row(load_run(self.path / e["dir"], {Path(e["dir"]).name: e}), analysis.warmup_seconds)
                for e in entries]
        estimate = interval(capacity_rounds(pd.DataFrame(rows), targets)["capacity_per_min"]) if rows else None
        return estimate["per_min"] / 60.0 if estimate and estimate["repeats"] and estimate["per_min"] > 0 else None

    def planned(self, notebook: str) -> list[studies.PlannedRun]:
        return [r for r in studies.plan_runs(self.params) if r.notebook == notebook]


def step_figures(study: StudyFolder, entries: list[dict[str, Any]], warmup_seconds: float = 0.0):
    """One row per run: offered, achieved purchases/s, p95 from the scheduled start, failed share, audit.
    p95 and the failed share leave out attempts scheduled in the run's first `warmup_seconds`.

    Attempts, purchases, p95, failed share and audit counts are lab.analysis.study.run_row's (the report's run
    table), so a step shows the numbers the report will; only the step's own view is made here: its offered rate
    or users, purchases per second over the workload's duration, and no failed share (0) without attempts."""
    import math

    import pandas as pd

    from lab.analysis.study import load_run, run_row

    rows = []
    for entry in entries:
        run_dir = study.path / entry["dir"]
        study_run = load_run(run_dir, {run_dir.name: entry})
        row = run_row(study_run, warmup_seconds)
        workload = study_run.workload
        seconds = float(workload.get("duration") or workload.get("within") or 1.0)
        audit = [str(row[k]) if row["audited"] else "-" for k in ("lost", "duplicate", "oversold")]
        rows.append({
            "run": entry["name"], "journey": entry["journey"], "kind": entry["kind"], "label": entry["label"],
            "offered": workload.get("rate") or workload.get("users"), "attempts": row["attempts"],
            "achieved": round(row["purchased"] / seconds, 2), "purchased": row["purchased"],
            "p95": round(row["p95"], 2),
            "errors": 0.0 if math.isnan(row["error_rate"]) else round(row["error_rate"], 4),
            "lost/dup/oversold": "/".join(audit), "interrupted": bool(study_run.run.meta.get("interrupted")),
            "failed": entry.get("failed") or "",
        })
    return pd.DataFrame(rows)


__all__ = ["NOTEBOOKS", "StackGone", "StudyFolder", "new_study_id", "step_figures"]
