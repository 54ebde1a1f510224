"""The recorder keeps every flushed row, even when the process dies, and costs little per row."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd
import pytest

from lab.load.recorder import (
    ATTEMPT_SCHEMA,
    REQUEST_SCHEMA,
    AttemptRecord,
    Recorder,
    RequestRecord,
    read_attempts,
    read_requests,
)

EXPECTED_REQUEST_DTYPES = {
    "scheduled": "float64", "start": "float64", "end": "float64", "status": "int32", "retry": "int32",
    "bytes": "int64",
}


def _request(i: int, **changes) -> RequestRecord:
    base = dict(attempt_id=f"att-{i}", buyer=f"buyer{i % 7}", journey="api", step="order", method="POST",
                url_path="/api/v1/organizers/lab/events/e/orders/", scheduled=1_800_000_000.0 + i,
                start=1_800_000_000.5 + i, end=1_800_000_001.25 + i, status=201, outcome="ok", error_kind=None,
                order_code=f"AB{i:03d}", idempotency_key=f"att-{i}", upstream="pretix-web-1", retry=0, bytes=812)
    base.update(changes)
    return RequestRecord(**base)


def test_request_round_trip_keeps_every_column_and_type(tmp_path):
    records = [_request(0), _request(1, status=0, outcome="error", error_kind="timeout", order_code=None,
                                     upstream=None, retry=2, bytes=0, journey="shop", step="checkout/confirm")]
    with Recorder.requests(tmp_path, "run-7") as recorder:
        for rec in records:
            recorder.record(rec)
    frame = read_requests(tmp_path)
    assert list(frame.columns) == REQUEST_SCHEMA.names
    assert set(frame.columns) == {f.name for f in fields(RequestRecord)}
    for column, dtype in EXPECTED_REQUEST_DTYPES.items():
        assert str(frame[column].dtype) == dtype, column
    for column in ("attempt_id", "buyer", "journey", "step", "outcome", "error_kind", "order_code", "upstream"):
        assert pd.api.types.is_string_dtype(frame[column]), column
    got = frame.to_dict("records")
    for rec, row in zip(records, got, strict=True):
        for key, value in asdict(rec).items():
            if key == "run_id":
                assert row[key] == "run-7"
            elif value is None:
                assert pd.isna(row[key]), key
            else:
                assert row[key] == value, key


def test_attempt_round_trip_with_missing_times(tmp_path):
    rows = [AttemptRecord(attempt_id="a", buyer="b", journey="api", scheduled=10.0, start=10.5, end=11.0,
                          outcome="purchased", order_code="XYZ12", retries=1, idempotency_key="a"),
            AttemptRecord(attempt_id="d", buyer="c", journey="api", scheduled=12.0, start=None, end=12.0,
                          outcome="dropped")]
    with Recorder.attempts(tmp_path, "r") as recorder:
        for row in rows:
            recorder.record(row)
    frame = read_attempts(tmp_path)
    assert list(frame.columns) == ATTEMPT_SCHEMA.names
    assert frame["start"].dtype == "float64" and pd.isna(frame["start"].iloc[1])
    assert frame["retries"].tolist() == [1, 0] and frame["outcome"].tolist() == ["purchased", "dropped"]
    assert pd.isna(frame["order_code"].iloc[1]) and frame["order_code"].iloc[0] == "XYZ12"


def test_nothing_recorded_reads_as_an_empty_frame_with_the_schema(tmp_path):
    frame = read_requests(tmp_path)
    assert frame.empty and list(frame.columns) == REQUEST_SCHEMA.names
    assert frame["start"].dtype == "float64"


def test_flushes_by_size_and_by_age(tmp_path):
    recorder = Recorder.requests(tmp_path, "r", flush_rows=10, flush_seconds=0.05)
    for i in range(25):
        recorder.record(_request(i))
    assert recorder.parts_written == 2 and len(read_requests(tmp_path)) == 20
    time.sleep(0.06)
    recorder.flush_if_due()
    assert len(read_requests(tmp_path)) == 25
    recorder.record(_request(99))
    time.sleep(0.06)
    recorder.record(_request(100))  # the batch is old now: this record flushes both
    assert len(read_requests(tmp_path)) == 27
    recorder.close()
    assert pd.read_parquet(tmp_path / "requests.parquet").shape == (27, 19)


def test_a_killed_process_keeps_what_it_flushed(tmp_path):
    script = textwrap.dedent(f"""
        import os
        from lab.load.recorder import Recorder, RequestRecord
        recorder = Recorder.requests({str(tmp_path)!r}, "killed", flush_rows=1000, flush_seconds=60)
        for i in range(2500):
            recorder.record(RequestRecord(attempt_id=f"att-{{i}}", buyer="b", journey="api", step="order",
                                          method="POST", url_path="/", scheduled=1.0, start=1.0, end=2.0))
        # a flush interrupted half-way leaves only a hidden temporary file
        (recorder.path / ".part-000002.parquet.tmp").write_bytes(b"PAR1 half a file")
        os._exit(9)  # no close(), no footer for the last batch, no atexit: a crash
    """)
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=repo)
    assert done.returncode == 9, done.stderr
    frame = read_requests(tmp_path)
    assert len(frame) == 2000 and frame["attempt_id"].tolist() == [f"att-{i}" for i in range(2000)]
    assert len(pd.read_parquet(tmp_path / "requests.parquet")) == 2000


def test_a_recorder_never_overwrites_a_run(tmp_path):
    with Recorder.requests(tmp_path, "r") as recorder:
        recorder.record(_request(1))
    with pytest.raises(FileExistsError):
        Recorder.requests(tmp_path, "r")


def test_mistakes_raise_at_once(tmp_path):
    recorder = Recorder.requests(tmp_path, "r")
    with pytest.raises(ValueError, match="outcome 'maybe'"):
        recorder.record(_request(1, outcome="maybe"))
    with pytest.raises(TypeError, match="records RequestRecord"):
        recorder.record(AttemptRecord(attempt_id="a", buyer="b", journey="api", scheduled=1, start=1, end=1,
                                      outcome="failed"))
    recorder.close()
    with pytest.raises(RuntimeError, match="closed"):
        recorder.record(_request(2))


def test_a_wrongly_typed_value_loses_only_its_own_row(tmp_path):
    recorder = Recorder.requests(tmp_path, "r", flush_rows=3)
    recorder.record(_request(1))
    recorder.record(_request(2, status="two hundred"))
    with pytest.raises(TypeError, match="1 row.*status"):
        recorder.record(_request(3))
    assert read_requests(tmp_path)["attempt_id"].tolist() == ["att-1", "att-3"]


def test_records_from_threads_all_arrive(tmp_path):
    recorder = Recorder.requests(tmp_path, "r", flush_rows=100)

    def work(offset: int) -> None:
        for i in range(1000):
            recorder.record(_request(offset + i))

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.close()
    assert read_requests(tmp_path)["attempt_id"].nunique() == 4000


def test_100k_records_cost_little(tmp_path):
    records = [_request(i) for i in range(100_000)]
    began = time.perf_counter()
    with Recorder.requests(tmp_path, "r") as recorder:
        for rec in records:
            recorder.record(rec)
    elapsed = time.perf_counter() - began
    read_began = time.perf_counter()
    assert len(read_requests(tmp_path)) == 100_000
    print(f"\n100k request rows: {elapsed:.2f} s to record+flush ({elapsed * 10:.1f} µs/row, "
          f"{recorder.flush_seconds_spent:.2f} s in {recorder.parts_written} flushes), "
          f"read back in {time.perf_counter() - read_began:.2f} s")
    assert elapsed < 5
