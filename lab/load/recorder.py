"""Client-side history, written while the run goes: one row per HTTP request, one row per purchase attempt.

Surviving interruption: a Parquet file is only readable once its footer is written, so one long-lived
ParquetWriter would lose everything if the process died. Instead every flush writes a complete, small Parquet
file `part-NNNNNN.parquet` inside a directory (`requests.parquet/`, `attempts.parquet/`): a Parquet dataset
that `pandas.read_parquet(dir)` reads whole. Each part is written under a dot-name and renamed into place, so a
crash mid-flush leaves only a hidden temporary file that readers ignore; every part that exists is complete.
What a crash can lose is the batch not yet flushed (at most `flush_rows` rows or `flush_seconds` of them).
Several processes may write one dataset (lab.load.fanout: one recorder per generator process): each names its
parts `part-<writer>-NNNNNN.parquet`, so they never collide and a reader still finds every `part-*.parquet`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, fields
from operator import attrgetter
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lab.evidence.runfolder import RunFolder

REQUEST_OUTCOMES = frozenset({"ok", "sold_out", "error", "queued"})
ATTEMPT_OUTCOMES = frozenset({"purchased", "sold_out", "failed", "dropped", "cancelled", "queued"})


@dataclass(slots=True, kw_only=True)
class RequestRecord:
    """One HTTP request of a journey; times are epoch seconds (time.time(), the lab's shared clock)."""

    attempt_id: str
    buyer: str
    journey: Literal["api", "shop"]
    step: str
    method: str
    url_path: str
    scheduled: float  # the attempt's scheduled start: latency counted from here has no coordinated omission
    start: float
    end: float
    status: int = 0  # 0 when no response came
    outcome: Literal["ok", "sold_out", "error", "queued"] = "ok"  # queued: refused by admission, retry later
    error_kind: str | None = None  # timeout, connect, http_5xx, http_409, http_400, protocol ...
    order_code: str | None = None
    idempotency_key: str | None = None
    upstream: str | None = None  # which web instance answered (a response header)
    retry: int = 0
    bytes: int = 0
    request_id: str | None = None  # sent as X-Request-Id and logged by the proxy: the two histories line up
    run_id: str = ""  # the recorder fills its own run id when left empty


@dataclass(slots=True, kw_only=True)
class AttemptRecord:
    """One purchase attempt, whatever happened to it (dropped and cancelled attempts included)."""

    attempt_id: str
    buyer: str
    journey: str
    scheduled: float
    start: float | None  # None when it never started (dropped, or cancelled before it ran)
    end: float | None
    # queued: the buyer gave up waiting in front of admission control
    outcome: Literal["purchased", "sold_out", "failed", "dropped", "cancelled", "queued"]
    order_code: str | None = None
    error_kind: str | None = None
    retries: int = 0
    idempotency_key: str | None = None
    queued: int = 0  # refusals by admission control the buyer saw (each told it to come back later)
    queue_wait: float = 0.0  # seconds the buyer waited in the queue in all
    item: int | None = None  # the item id the journey asked for (None: it never chose one)
    count: int | None = None  # how many positions of it the journey asked for (1 today)
    guest: bool | None = None  # bought without a customer account (None: the journey did not say, older runs)
    # how a purchase was confirmed: the order request's own answer, or a lookup that found the order afterwards
    confirmed_by: Literal["response", "lookup"] | None = None
    run_id: str = ""


REQUEST_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("attempt_id", pa.string()), ("buyer", pa.string()), ("journey", pa.string()),
    ("step", pa.string()), ("method", pa.string()), ("url_path", pa.string()),
    ("scheduled", pa.float64()), ("start", pa.float64()), ("end", pa.float64()),
    ("status", pa.int32()), ("outcome", pa.string()), ("error_kind", pa.string()), ("order_code", pa.string()),
    ("idempotency_key", pa.string()), ("upstream", pa.string()), ("retry", pa.int32()), ("bytes", pa.int64()),
    ("request_id", pa.string()),
])

ATTEMPT_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("attempt_id", pa.string()), ("buyer", pa.string()), ("journey", pa.string()),
    ("scheduled", pa.float64()), ("start", pa.float64()), ("end", pa.float64()), ("outcome", pa.string()),
    ("order_code", pa.string()), ("error_kind", pa.string()), ("retries", pa.int32()),
    ("idempotency_key", pa.string()), ("queued", pa.int32()), ("queue_wait", pa.float64()),
    ("item", pa.int64()), ("count", pa.int32()), ("guest", pa.bool_()),  # absent from older runs: null
    ("confirmed_by", pa.string()),
])

R = TypeVar("R", RequestRecord, AttemptRecord)


@dataclass(frozen=True)
class Table:
    """What a recorder writes: the record type, its explicit schema and the values an outcome may take."""

    name: str
    record: type
    schema: pa.Schema
    outcomes: frozenset[str]


REQUEST_TABLE = Table(RunFolder.REQUESTS, RequestRecord, REQUEST_SCHEMA, REQUEST_OUTCOMES)
ATTEMPT_TABLE = Table(RunFolder.ATTEMPTS, AttemptRecord, ATTEMPT_SCHEMA, ATTEMPT_OUTCOMES)


class Recorder(Generic[R]):
    """Append records cheaply (no awaits, thread-safe); flush each batch as one complete Parquet part file.

    A batch is flushed when it holds `flush_rows` rows or its oldest row is `flush_seconds` old (checked on
    each record() and by flush_if_due(), which a periodic task may call while the run is idle).
    """

    def __init__(self, path: Path, run_id: str, flush_rows: int = 2000, flush_seconds: float = 2.0,
                 table: Table = REQUEST_TABLE, writer: str | None = None):
        """`writer` names this recorder's parts when other processes write the same dataset (then only parts of
        its own name count as data already there)."""
        if flush_rows < 1 or flush_seconds <= 0:
            raise ValueError("flush_rows must be >= 1 and flush_seconds > 0")
        if writer is not None and not writer.replace("-", "").isalnum():
            raise ValueError(f"writer {writer!r}: letters, digits and dashes only")
        self.path = Path(path)
        self.run_id = run_id
        self.table = table
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.rows_written = 0
        self.parts_written = 0
        self.flush_seconds_spent = 0.0
        self._names = [f.name for f in fields(table.record)]
        self._get = attrgetter(*self._names)
        self._run_col = self._names.index("run_id")
        self._outcome_col = self._names.index("outcome")
        self._batch: list[tuple[Any, ...]] = []
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._closed = False
        self._prefix = f"part-{writer}-" if writer else "part-"
        there = self.path.glob(f"{self._prefix}*") if writer else self.path.glob("*")
        if any(there):
            raise FileExistsError(f"{self.path} already holds data; a run folder is written once")
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def requests(cls, run_dir: Path, run_id: str, **kwargs: Any) -> Recorder[RequestRecord]:
        return cls(RunFolder(run_dir).requests_path, run_id, table=REQUEST_TABLE, **kwargs)

    @classmethod
    def attempts(cls, run_dir: Path, run_id: str, **kwargs: Any) -> Recorder[AttemptRecord]:
        return cls(RunFolder(run_dir).attempts_path, run_id, table=ATTEMPT_TABLE, **kwargs)

    def record(self, rec: R) -> None:
        """Append one row. A wrong record type or outcome is a programming error and raises at once."""
        if type(rec) is not self.table.record:
            raise TypeError(f"{self.path.name} records {self.table.record.__name__}, not {type(rec).__name__}")
        row = self._get(rec)
        if row[self._outcome_col] not in self.table.outcomes:
            raise ValueError(f"outcome {row[self._outcome_col]!r} is not one of {sorted(self.table.outcomes)}")
        now = time.monotonic()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"recorder for {self.path} is closed")
            if not self._batch:
                self._oldest = now
            self._batch.append(row)
            if len(self._batch) >= self.flush_rows or now - self._oldest >= self.flush_seconds:
                self._flush_locked()

    def flush_if_due(self) -> None:
        with self._lock:
            if self._batch and time.monotonic() - self._oldest >= self.flush_seconds:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._batch:
            return
        began = time.perf_counter()
        rows, self._batch = self._batch, []
        try:
            self._write(self._to_table(rows), len(rows))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            good, bad = self._split(rows)  # keep every good row; a wrong value is a bug: say which, loudly
            if good:
                self._write(self._to_table(good), len(good))
            raise TypeError(f"{self.path.name}: {len(bad)} row(s) with a wrong value type were not written "
                            f"({error}); first: {dict(zip(self._names, bad[0], strict=True))}") from None
        finally:
            self.flush_seconds_spent += time.perf_counter() - began

    def _to_table(self, rows: list[tuple[Any, ...]]) -> pa.Table:
        columns = [list(c) for c in zip(*rows, strict=True)]
        columns[self._run_col] = [r or self.run_id for r in columns[self._run_col]]
        schema = self.table.schema
        # from_pandas: a NaN where a string or number is missing (pandas' habit) is written as null
        arrays = [pa.array(columns[i], type=schema.field(name).type, from_pandas=True)
                  for i, name in enumerate(self._names)]
        return pa.Table.from_arrays(arrays, names=self._names).select(schema.names)

    def _split(self, rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        good, bad = [], []
        for row in rows:
            try:
                self._to_table([row])
                good.append(row)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                bad.append(row)
        return good, bad

    def _write(self, table: pa.Table, count: int) -> None:
        final = self.path / f"{self._prefix}{self.parts_written:06d}.parquet"
        temporary = self.path / f".{final.name}.tmp"
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, final)  # atomic: a part either exists complete or not at all
        self.parts_written += 1
        self.rows_written += count

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._flush_locked()
                self._closed = True

    def __enter__(self) -> Recorder[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(path: Path, schema: pa.Schema) -> pd.DataFrame:
    parts = sorted(path.glob("part-*.parquet")) if path.is_dir() else []
    if not parts:
        return schema.empty_table().to_pandas()
    return pq.read_table(parts, schema=schema).to_pandas()


def read_requests(run_dir: Path) -> pd.DataFrame:
    """All request rows of a run (whatever was flushed, even if the run was interrupted)."""
    return _read(RunFolder(run_dir).requests_path, REQUEST_SCHEMA)


def read_attempts(run_dir: Path) -> pd.DataFrame:
    """All attempt rows of a run."""
    return _read(RunFolder(run_dir).attempts_path, ATTEMPT_SCHEMA)


class RecordedJourney:
    """A journey whose requests go to a recorder of its own, closed when the journey's context ends (one per
    benchmark step or capacity probe)."""

    def __init__(self, inner, recorder):
        self.inner, self.recorder = inner, recorder

    async def __aenter__(self):
        if hasattr(self.inner, "__aenter__"):
            await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        try:
            if hasattr(self.inner, "__aexit__"):
                await self.inner.__aexit__(*exc)
        finally:
            self.recorder.close()

    async def __call__(self, attempt):
        await self.inner(attempt)


__all__ = [
    "ATTEMPT_SCHEMA", "AttemptRecord", "REQUEST_SCHEMA", "Recorder",
    "RecordedJourney", "RequestRecord", "Table", "read_attempts", "read_requests",
]
