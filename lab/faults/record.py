"""faults.parquet: one row per action, undo and steady-state probe of a fault schedule, written as it happens.

The same part-file dataset as requests.parquet (lab.load.recorder.Recorder with its own table): every row is
flushed at once (faults are few), so an interrupted run keeps every action it took and every undo it made.
Times are epoch seconds from time.time(), the clock the request records use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lab.evidence.runfolder import RunFolder
from lab.load.recorder import Recorder, Table

PHASES = ("inject", "undo", "probe")
# inject/undo: ok | error | skipped; probe: pass | fail | skipped (a check that could not be made)
FAULT_OUTCOMES = frozenset({"ok", "error", "skipped", "pass", "fail", "cut"})  # cut: lab.faults.probes


@dataclass(slots=True, kw_only=True)
class FaultRecord:
    fault_id: str
    action: str
    target: str
    container: str | None
    phase: Literal["inject", "undo", "probe"]
    probe: str | None = None  # probes: "before" | "after"
    start: float
    end: float
    outcome: str = "ok"
    ok: bool | None = None  # None for a skipped probe or action
    error: str | None = None
    detail: str | None = None  # JSON text: what was done or seen (never a secret)
    run_id: str = ""


FAULT_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("fault_id", pa.string()), ("action", pa.string()), ("target", pa.string()),
    ("container", pa.string()), ("phase", pa.string()), ("probe", pa.string()), ("start", pa.float64()),
    ("end", pa.float64()), ("outcome", pa.string()), ("ok", pa.bool_()), ("error", pa.string()),
    ("detail", pa.string()),
])

FAULT_TABLE = Table(RunFolder.FAULTS, FaultRecord, FAULT_SCHEMA, FAULT_OUTCOMES)


def fault_recorder(run_dir: Path, run_id: str) -> Recorder:
    """A recorder for run_dir/faults.parquet that writes every row at once (one part file per row)."""
    return Recorder(RunFolder(run_dir).faults_path, run_id, flush_rows=1, flush_seconds=3600.0, table=FAULT_TABLE)


def detail_text(detail: dict[str, Any] | None) -> str | None:
    return None if not detail else json.dumps(detail, default=str, sort_keys=True)


def read_faults(run_dir: Path) -> pd.DataFrame:
    """Every fault row of a run (sorted by start), whatever was written before an interruption."""
    path = RunFolder(run_dir).faults_path
    parts = sorted(path.glob("part-*.parquet")) if path.is_dir() else []
    frame = (pq.read_table(parts, schema=FAULT_SCHEMA) if parts else FAULT_SCHEMA.empty_table()).to_pandas()
    return frame.sort_values(["start", "end"], kind="stable").reset_index(drop=True)


__all__ = ["FAULT_SCHEMA", "FAULT_TABLE", "FaultRecord", "fault_recorder", "read_faults"]
