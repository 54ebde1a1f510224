"""metrics.parquet: the monitor's rows, written as complete Parquet part files, and read back whole.

Long format, one row per (time, service, container, metric, labels) value; `time` is epoch seconds on the same
clock as the request records. Counters are stored as counters (rates are derived in analysis).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METRICS = "metrics.parquet"
METRIC_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("time", pa.float64()), ("service", pa.string()), ("container", pa.string()),
    ("metric", pa.string()), ("value", pa.float64()), ("labels", pa.string()),
])

Row = tuple[float, str, str, str, float, str]  # time, service, container, metric, value, labels


class MetricWriter:
    """Rows in memory, flushed as complete Parquet part files (see lab/load/recorder.py for why part files)."""

    def __init__(self, path: Path, run_id: str):
        self.path = path
        self.run_id = run_id
        self.rows_written = 0
        self.parts_written = 0
        self._rows: list[Row] = []
        self._lock = threading.Lock()
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"{path} already holds data; a run folder is written once")
        path.mkdir(parents=True, exist_ok=True)

    def add(self, row: Row) -> None:
        with self._lock:
            self._rows.append(row)

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            if not rows:
                return
            t, service, container, metric, value, labels = (list(c) for c in zip(*rows, strict=True))
            table = pa.Table.from_arrays([
                pa.array([self.run_id] * len(rows), pa.string()), pa.array(t, pa.float64()),
                pa.array(service, pa.string()), pa.array(container, pa.string()), pa.array(metric, pa.string()),
                pa.array(value, pa.float64(), from_pandas=True), pa.array(labels, pa.string()),
            ], schema=METRIC_SCHEMA)
            final = self.path / f"part-{self.parts_written:06d}.parquet"
            temporary = self.path / f".{final.name}.tmp"
            pq.write_table(table, temporary, compression="zstd")
            os.replace(temporary, final)  # a part exists complete or not at all
            self.parts_written += 1
            self.rows_written += len(rows)


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """Every metric row of a run (whatever was flushed, even when the run was interrupted)."""
    path = Path(run_dir) / METRICS
    parts = sorted(path.glob("part-*.parquet")) if path.is_dir() else []
    if not parts:
        return METRIC_SCHEMA.empty_table().to_pandas()
    return pq.read_table(parts, schema=METRIC_SCHEMA).to_pandas()


__all__ = ["METRICS", "METRIC_SCHEMA", "MetricWriter", "read_metrics"]
