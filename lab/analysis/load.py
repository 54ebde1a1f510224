"""A run or a study as plain pandas frames: the one call to make in JupyterLab before exploring.

    from lab.analysis.load import load_study, load_run
    study = load_study()                         # the newest study under data/runs (or load_study("<study-id>"))
    study.runs                                   # one row per run (kind, journey, throughput, p95, audit ...)
    study.attempts.groupby("run_id")["outcome"].value_counts()
    run = study.run("<run-id>")                  # or load_run("data/runs/<study-id>/runs/<run-id>")
    run.metrics.query("metric == 'cpu_cores'")

Each frame is the run folder's file read with the writer's own schema (docs/reference.md lists every column and its
unit), so a missing file is an empty frame with the right columns rather than an error: an interrupted run loads.
A relative path that does not exist from the current directory is looked up under the lab's data folder
(`data/runs/`) and then the checkout, so the same call works from a notebook (whose directory is notebooks/) and
from a shell. A study's frames are its runs' frames one under the other; every row carries `run_id`, and `runs`
says what each run was, so a merge on `run_id` brings a run's kind or journey to its rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lab.analysis.study import StudyRun, load_runs, run_table
from lab.evidence.runfolder import RunFolder


def _proxy_access(path: Path) -> pd.DataFrame:
    from lab.evidence.runlogs import PROXY_ACCESS_SCHEMA, read_proxy_access

    if RunFolder(path).proxy_access_path.exists():
        return read_proxy_access(path)
    return PROXY_ACCESS_SCHEMA.empty_table().to_pandas()


def resolve(path: str | Path) -> Path:
    """`path` as given when it exists, else under data/runs/, else under the checkout (ROOT); as given otherwise."""
    from lab.common.paths import ROOT, data_dir

    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    for base in (data_dir() / "runs", ROOT):
        if (base / path).exists():
            return base / path
    return path


def newest_study() -> Path:
    """The study folder under data/runs whose study.json changed last (the one `lab study` wrote most recently)."""
    from lab.common.paths import data_dir

    found = sorted((data_dir() / "runs").glob("*/study.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no study folder under {data_dir() / 'runs'}: run `make study` first, or give a path")
    return found[-1].parent


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass(frozen=True)
class RunFrames:
    """One run folder's data: its four Parquet datasets, the proxy's log, and its JSON records as dicts."""

    path: Path
    meta: dict[str, Any]  # run.json
    audit: dict[str, Any]  # audit.json ({} when the run was not audited)
    attempts: pd.DataFrame
    requests: pd.DataFrame
    metrics: pd.DataFrame
    faults: pd.DataFrame
    proxy_access: pd.DataFrame

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.path.name)


@dataclass(frozen=True)
class StudyFrames:
    """A study folder's data: one row per run in `runs`, and every run's rows of each dataset in one frame."""

    path: Path
    study: dict[str, Any]  # study.json ({} for a folder of runs without one)
    headline: dict[str, Any]  # headline.json ({} before 04-analysis wrote it)
    runs: pd.DataFrame
    attempts: pd.DataFrame
    requests: pd.DataFrame
    metrics: pd.DataFrame
    faults: pd.DataFrame
    proxy_access: pd.DataFrame
    run_frames: dict[str, RunFrames] = field(default_factory=dict)  # run_id -> that run's frames

    def run(self, run_id: str) -> RunFrames:
        """One run's frames, by its id (a column of `runs`)."""
        if run_id not in self.run_frames:
            raise KeyError(f"run_id {run_id!r} is not a run of {self.path}; its runs: {', '.join(self.run_frames)}")
        return self.run_frames[run_id]


def _frames(study_run: StudyRun) -> RunFrames:
    from lab.faults.record import read_faults

    run = study_run.run
    return RunFrames(path=run.path, meta=run.meta, audit=_json(RunFolder(run.path).audit_path), attempts=run.attempts,
                     requests=run.requests, metrics=run.metrics, faults=read_faults(run.path),
                     proxy_access=_proxy_access(run.path))


def load_run(path: str | Path) -> RunFrames:
    """One run folder (data/runs/<study-id>/runs/<run-id>) as frames; raises FileNotFoundError for anything else."""
    path = resolve(path)
    if not RunFolder.holds_run(path):
        raise FileNotFoundError(f"{path} is not a run folder (no run.json or attempts.parquet)")
    return _frames(load_runs(path)[0])


def _stack(parts: list[RunFrames], name: str) -> pd.DataFrame:
    frames = [getattr(p, name) for p in parts]
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return frames[0].iloc[0:0] if frames else pd.DataFrame()
    return pd.concat(non_empty, ignore_index=True)


def load_study(path: str | Path | None = None, warmup_seconds: float = 0.0) -> StudyFrames:
    """A study folder (or any folder of run folders; None: the newest study) as frames; `runs` is the report's run
    table, its latency and error figures leaving out each run's first `warmup_seconds` as a report does."""
    path = newest_study() if path is None else resolve(path)
    study_runs = load_runs(path)
    parts = [_frames(r) for r in study_runs]
    return StudyFrames(
        path=path, study=_json(path / "study.json"), headline=_json(path / "headline.json"),
        runs=run_table(study_runs, warmup_seconds),
        **{name: _stack(parts, name) for name in ("attempts", "requests", "metrics", "faults", "proxy_access")},
        run_frames={p.run_id: p for p in parts},
    )


__all__ = ["RunFrames", "StudyFrames", "load_run", "load_study", "newest_study", "resolve"]
