"""K generator processes keep one schedule: every arrival exactly once, scheduled from one t0, one run folder, and
no process left behind (real processes against a real HTTP server on 127.0.0.1; no stack needed)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from lab.experiments.ping_server import PingServer
from lab.experiments.run import RunParamsError, validate_load
from lab.load.fanout import GeneratorFailed, max_generators, run_fanout
from lab.load.recipes import PingJourney
from lab.load.recorder import Recorder, RequestRecord, read_attempts, read_requests
from lab.load.runner import Attempt, RunEvent, run_open
from lab.load.share import split
from lab.load.workload import ClosedWorkload, ConstantWorkload, RampWorkload

POISSON = RampWorkload(start_rate=20, stages=[{"duration": 3, "target": 120}], arrivals="poisson", seed=7)


@pytest.mark.parametrize("generators", [1, 2, 3, 5])
def test_split_deals_every_arrival_to_exactly_one_generator_in_order(generators):
    offsets = POISSON.schedule()
    shares = split(offsets, generators)
    assert len(shares) == generators
    numbers = np.concatenate([s.indices for s in shares])
    assert sorted(numbers.tolist()) == list(range(len(offsets)))  # each exactly once
    for k, share in enumerate(shares):
        assert (share.indices % generators == k).all()  # every K-th arrival
        assert (np.diff(share.indices) > 0).all() and (np.diff(share.offsets) >= 0).all()  # order kept
        np.testing.assert_array_equal(share.offsets, offsets[share.indices])  # the single schedule's times
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_split_refuses_no_generator():
    with pytest.raises(ValueError, match="generators must be >= 1"):
        split(np.arange(3.0), 0)


def test_shares_run_in_one_process_reproduce_the_single_schedule():
    """Run both shares of a K=2 split from one t0: together they launch the single schedule's arrivals, each under
    its number in the whole schedule, each scheduled at exactly t0 + its offset."""
    workload = ConstantWorkload(rate=400, duration=0.5, arrivals="poisson", seed=3)
    offsets = workload.schedule()
    t0 = time.time() + 0.05
    seen: list[Attempt] = []

    async def journey(attempt: Attempt) -> None:
        attempt.outcome = "purchased"

    def listen(event: RunEvent) -> None:
        if event.kind == "completed":
            seen.append(event.attempt)

    async def both() -> list:
        return await asyncio.gather(*(run_open(workload, journey, on_event=listen, share=s.at(t0))
                                      for s in split(offsets, 2)))

    summaries = asyncio.run(both())
    assert [s.planned for s in summaries] == [len(s) for s in split(offsets, 2)]
    assert sorted(a.buyer_index for a in seen) == list(range(len(offsets)))
    by_number = {a.buyer_index: a.scheduled for a in seen}
    np.testing.assert_allclose([by_number[i] for i in range(len(offsets))], t0 + offsets, rtol=0, atol=1e-6)


def test_generators_parameter_is_checked_early():
    assert validate_load({}).generators == 1
    assert validate_load({"generators": 2}).generators == 2
    for bad in (0, -1, max_generators() + 1):
        with pytest.raises(RunParamsError, match=r"generators: .* is not between 1 and") as caught:
            validate_load({"generators": bad})
        assert caught.value.field == "generators" and caught.value.allowed[0] == "1"
    with pytest.raises(RunParamsError, match="generators: 2 generators share an open workload") as caught:
        validate_load({"generators": 2, "workload": {"model": "closed", "users": 2, "duration": 5}})
    assert caught.value.allowed == ("1",)


def test_fanout_refuses_a_closed_workload():
    with pytest.raises(GeneratorFailed, match="need an open workload"):
        asyncio.run(run_fanout(ClosedWorkload(users=2, duration=1), PingJourney("http://127.0.0.1:9"), 2))


def test_writers_of_one_dataset_never_collide(tmp_path):
    def row(i: int) -> RequestRecord:
        return RequestRecord(attempt_id=str(i), buyer="b", journey="api", step="s", method="GET", url_path="/",
                             scheduled=1.0, start=1.0, end=2.0)

    for writer in ("g0", "g1"):
        with Recorder.requests(tmp_path, "r", writer=writer) as recorder:
            recorder.record(row(int(writer[1])))
    names = sorted(p.name for p in (tmp_path / "requests.parquet").iterdir())
    assert names == ["part-g0-000000.parquet", "part-g1-000000.parquet"]
    assert sorted(read_requests(tmp_path).attempt_id) == ["0", "1"]
    with pytest.raises(FileExistsError):
        Recorder.requests(tmp_path, "r", writer="g1")  # the same writer twice: a run folder is written once
    with pytest.raises(ValueError, match="letters, digits and dashes"):
        Recorder.requests(tmp_path, "r", writer="../x")


def _gone(pids: list[int]) -> bool:
    return all(not Path(f"/proc/{pid}").exists() for pid in pids)


def test_two_real_generator_processes_write_one_run_folder(tmp_path):
    workload = ConstantWorkload(rate=150, duration=2, arrivals="poisson", seed=11, grace=5)
    offsets = workload.schedule()
    lines: list[str] = []
    with PingServer(lifetime=60, thread=True) as server:
        result = asyncio.run(run_fanout(workload, PingJourney(server.base_url), 2, run_dir=tmp_path,
                                        run_id="fanout-test", log=lines.append))
    summary = result.summary
    print(f"\n{summary.describe()}")
    assert summary.generators == 2 and summary.planned == summary.launched == summary.completed == len(offsets)
    assert summary.dropped == summary.cancelled == summary.not_launched == 0 and summary.outcomes == {
        "purchased": len(offsets)}
    assert summary.achieved_rate == pytest.approx(150, rel=0.05)
    attempts, requests = read_attempts(tmp_path), read_requests(tmp_path)
    assert len(attempts) == attempts.attempt_id.nunique() == len(offsets)  # all, no duplicates
    assert sorted(attempts.buyer.astype(int)) == list(range(len(offsets)))  # each arrival once, by its number
    assert set(attempts.outcome) == {"purchased"} and set(attempts.run_id) == {"fanout-test"}
    np.testing.assert_allclose(np.sort(attempts.scheduled), result.t0 + offsets, rtol=0, atol=1e-6)
    assert (attempts.start >= attempts.scheduled - 0.001).all()
    assert len(requests) == len(offsets) and set(requests.status) == {200}
    joined = attempts.merge(requests, on="attempt_id", suffixes=("", "_request"))
    assert (joined.scheduled == joined.scheduled_request).all()  # latency counts from the shared schedule
    parts = {p.name.split("-")[1] for p in (tmp_path / "attempts.parquet").glob("part-*.parquet")}
    assert parts == {"g0", "g1"}
    assert multiprocessing.active_children() == []
    pids = [int(p) for p in lines[0].split("pids ")[1].split(")")[0].split(", ")]
    assert len(pids) == 2 and _gone(pids)


def test_a_cancelled_fanout_leaves_no_process_and_keeps_what_was_recorded(tmp_path):
    workload = ConstantWorkload(rate=50, duration=30, grace=2)
    lines: list[str] = []

    async def cut_short() -> None:
        await asyncio.wait_for(run_fanout(workload, PingJourney(server.base_url), 2, run_dir=tmp_path,
                                          run_id="cut", log=lines.append), timeout=4)

    with PingServer(lifetime=60, thread=True) as server:
        began = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            asyncio.run(cut_short())
        took = time.monotonic() - began
    assert took < 15
    assert multiprocessing.active_children() == []
    pids = [int(p) for p in lines[0].split("pids ")[1].split(")")[0].split(", ")]
    assert _gone(pids)
    attempts = read_attempts(tmp_path)  # each child cancelled what ran and flushed before it exited
    assert 0 < len(attempts) < workload.planned and attempts.attempt_id.is_unique
    assert set(attempts.outcome) <= {"purchased", "cancelled"}
