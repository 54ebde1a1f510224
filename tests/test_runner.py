"""The executors keep appointments: exact launch counts, measured lag, dropped and cancelled attempts reported."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from lab.load.recorder import Recorder, read_attempts
from lab.load.runner import Attempt, Clock, RunEvent, attempts_to, run_closed, run_open
from lab.load.workload import ClosedWorkload, ConstantWorkload


def _finals(events: list[RunEvent]) -> Counter[str]:
    """How many final events each attempt got (must be exactly one)."""
    return Counter(e.attempt.attempt_id for e in events if e.attempt is not None and e.kind != "launched")


def test_open_model_holds_200_per_second_exactly():
    async def journey(attempt: Attempt) -> None:
        await asyncio.sleep(0.05)
        attempt.outcome = "purchased"

    summary = asyncio.run(run_open(ConstantWorkload(rate=200, duration=2), journey))
    print(f"\nopen 200/s x 2 s, 50 ms journeys: {summary.describe()}")
    assert summary.planned == summary.launched == summary.completed == 400
    assert summary.dropped == summary.cancelled == summary.failed_total == 0
    assert summary.outcomes == {"purchased": 400}
    assert summary.lag_p99_ms < 50
    assert summary.achieved_rate == pytest.approx(200, rel=0.03)
    assert summary.target_rate == pytest.approx(200)


def test_arrivals_beyond_max_in_flight_are_dropped_and_reported():
    events: list[RunEvent] = []
    running = peak = 0

    async def slow(attempt: Attempt) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.4)
        finally:
            running -= 1

    workload = ConstantWorkload(rate=100, duration=1, max_in_flight=10)
    summary = asyncio.run(run_open(workload, slow, on_event=events.append))
    print(f"\nmax_in_flight=10, 100/s of 0.4 s journeys: {summary.describe()}")
    assert peak == 10
    assert summary.dropped > 50
    assert summary.launched + summary.dropped == summary.planned == 100
    assert summary.completed == summary.launched
    drops = [e.attempt for e in events if e.kind == "dropped"]
    assert len(drops) == len(summary.dropped_scheduled) == summary.dropped
    assert sorted(a.scheduled for a in drops) == sorted(summary.dropped_scheduled)
    assert set(_finals(events).values()) == {1} and len(_finals(events)) == 100


def test_a_blocked_loop_launches_late_arrivals_at_once_and_shows_the_lag():
    first = True

    async def journey(attempt: Attempt) -> None:
        nonlocal first
        if first:
            first = False
            time.sleep(0.3)  # blocks the event loop: the generator itself falls behind

    summary = asyncio.run(run_open(ConstantWorkload(rate=100, duration=1), journey))
    assert summary.launched == 100  # nobody is skipped because the generator was late ...
    assert summary.lag_max_ms >= 250  # ... and the lateness is measured, not hidden


def test_an_oversleeping_clock_is_measured_as_lag():
    class Late(Clock):
        async def sleep(self, seconds: float) -> None:
            await asyncio.sleep(seconds + 0.02)

    async def journey(attempt: Attempt) -> None:
        return None

    summary = asyncio.run(run_open(ConstantWorkload(rate=20, duration=0.5), journey, clock=Late()))
    assert summary.launched == 10
    assert summary.lag_p50_ms >= 15


def test_scheduled_stamps_follow_the_schedule_on_one_clock():
    attempts: list[Attempt] = []

    async def journey(attempt: Attempt) -> None:
        attempts.append(attempt)

    workload = ConstantWorkload(rate=50, duration=0.4)
    asyncio.run(run_open(workload, journey))
    scheduled = [a.scheduled for a in sorted(attempts, key=lambda a: a.buyer_index)]
    assert [round(s - scheduled[0], 6) for s in scheduled] == [round(x, 6) for x in workload.schedule()]
    for a in attempts:
        assert a.started is not None and a.ended is not None and a.lag is not None
        assert abs(time.time() - a.scheduled) < 5
        assert a.started - a.scheduled == pytest.approx(a.lag, abs=0.005)
        assert a.idempotency_key == a.attempt_id and len(a.attempt_id) == 36
    assert len({a.attempt_id for a in attempts}) == 20


def test_journey_exceptions_are_counted_by_type_not_raised():
    async def flaky(attempt: Attempt) -> None:
        if attempt.buyer_index % 3 == 0:
            raise TimeoutError("read timeout")
        if attempt.buyer_index % 3 == 1:
            raise KeyError("order")

    summary = asyncio.run(run_open(ConstantWorkload(rate=200, duration=0.15), flaky))
    assert summary.failed == {"TimeoutError": 10, "KeyError": 10}
    assert summary.completed == 10 and summary.launched == 30


def test_grace_then_cancel_counts_the_stragglers():
    unwound = 0

    async def stuck(attempt: Attempt) -> None:
        nonlocal unwound
        try:
            await asyncio.sleep(30)
        finally:
            unwound += 1

    began = time.monotonic()
    summary = asyncio.run(run_open(ConstantWorkload(rate=100, duration=0.1, grace=0.2), stuck))
    assert time.monotonic() - began < 2
    assert summary.cancelled == summary.launched == unwound == 10
    assert not summary.interrupted


def test_cancelling_the_runner_cancels_attempts_and_still_reports():
    events: list[RunEvent] = []

    async def slow(attempt: Attempt) -> None:
        await asyncio.sleep(0.25)
        attempt.outcome = "sold_out"

    async def main() -> None:
        task = asyncio.create_task(run_open(ConstantWorkload(rate=100, duration=5), slow, on_event=events.append))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (end,) = [e for e in events if e.kind == "end"]
    s = end.summary
    assert s is not None and s.interrupted
    assert s.cancelled > 10 and s.completed > 10 and s.not_launched > 400
    assert s.launched + s.dropped + s.not_launched == s.planned == 500
    assert s.completed + s.failed_total + s.cancelled == s.launched
    assert set(_finals(events).values()) == {1} and len(_finals(events)) == s.launched


def test_a_broken_listener_stops_the_run_early():
    def listener(event: RunEvent) -> None:
        if event.kind == "completed":
            raise RuntimeError("recorder misconfigured")

    async def journey(attempt: Attempt) -> None:
        return None

    began = time.monotonic()
    with pytest.raises(RuntimeError, match="misconfigured"):
        asyncio.run(run_open(ConstantWorkload(rate=10, duration=5), journey, on_event=listener))
    assert time.monotonic() - began < 1


def test_every_attempt_becomes_one_attempt_row(tmp_path):
    async def journey(attempt: Attempt) -> None:
        kind = attempt.buyer_index % 4
        if kind == 0:
            attempt.outcome, attempt.order_code, attempt.retries = "purchased", f"O{attempt.buyer_index}", 1
        elif kind == 1:
            attempt.outcome = "sold_out"
        elif kind == 2:
            raise TimeoutError
        await asyncio.sleep(0.3 if attempt.buyer_index in (33, 35, 37) else 0)  # then 38, 39 are dropped

    workload = ConstantWorkload(rate=200, duration=0.2, max_in_flight=3, grace=0.1)
    with Recorder.attempts(tmp_path, "r1") as recorder:
        summary = asyncio.run(run_open(workload, journey, on_event=attempts_to(recorder, "api")))
    rows = read_attempts(tmp_path)
    assert len(rows) == 40 and rows["attempt_id"].is_unique
    counts = rows["outcome"].value_counts().to_dict()
    assert counts.get("dropped", 0) == summary.dropped > 0
    assert counts.get("cancelled", 0) == summary.cancelled > 0
    purchased = rows[rows["outcome"] == "purchased"]
    assert purchased["order_code"].str.startswith("O").all() and (purchased["retries"] == 1).all()
    assert (rows.loc[rows["error_kind"] == "TimeoutError", "outcome"] == "failed").all()
    assert (rows["idempotency_key"] == rows["attempt_id"]).all() and (rows["run_id"] == "r1").all()
    assert rows.loc[rows["outcome"] == "dropped", "start"].isna().all()


def test_closed_model_loops_users_with_think_time():
    seen: list[Attempt] = []

    async def journey(attempt: Attempt) -> None:
        seen.append(attempt)
        await asyncio.sleep(0.01)
        attempt.outcome = "purchased"

    workload = ClosedWorkload(users=3, think_time=0.01, duration=2, iterations=5)
    summary = asyncio.run(run_closed(workload, journey))
    assert summary.launched == summary.completed == summary.planned == 15
    assert summary.wall_duration < 1.5  # stopped by the iteration cap, not the duration
    for user in range(3):
        mine = [a for a in seen if a.buyer_index == user]
        assert len(mine) == 5
        for before, after in zip(mine, mine[1:], strict=False):
            assert before.ended is not None and after.scheduled >= before.ended  # due only after thinking


def test_closed_model_stops_at_its_duration_and_cancels_the_rest():
    async def journey(attempt: Attempt) -> None:
        await asyncio.sleep(0.05 if attempt.buyer_index else 10)

    workload = ClosedWorkload(users=2, duration=0.3, grace=0.1)
    began = time.monotonic()
    summary = asyncio.run(run_closed(workload, journey))
    assert time.monotonic() - began < 1.5
    assert summary.cancelled == 1  # user 0's journey outlived duration + grace
    assert 4 <= summary.completed <= 6
    assert summary.planned is None and summary.target_rate is None


def test_think_times_are_seeded_per_user():
    w = ClosedWorkload(users=2, think_time=2.0, duration=10, seed=7)
    a, b, c = w.think_sampler(0), w.think_sampler(0), w.think_sampler(1)
    first = [a() for _ in range(200)]
    assert first == [b() for _ in range(200)] and first != [c() for _ in range(200)]
    assert 1.5 < sum(first) / len(first) < 2.5


def test_progress_bar_shows_launched_in_flight_and_completed(capsys):
    async def journey(attempt: Attempt) -> None:
        await asyncio.sleep(0.2)

    asyncio.run(run_open(ConstantWorkload(rate=50, duration=0.8), journey, progress=True))
    err = capsys.readouterr().err
    assert "40/40" in err and "in_flight=" in err and "completed=40" in err


def test_progress_bar_of_an_unbounded_closed_run(capsys):
    """A closed run bounded only by time has no total: its progress bar must not be truth-tested (tqdm raises)."""
    async def journey(attempt: Attempt) -> None:
        await asyncio.sleep(0.05)
        attempt.outcome = "purchased"

    summary = asyncio.run(run_closed(ClosedWorkload(users=2, duration=0.5), journey, progress=True))
    assert summary.completed >= 4 and "completed=" in capsys.readouterr().err


def test_a_journey_that_ignores_cancellation_is_abandoned_and_counted(monkeypatch):
    import lab.load.runner as runner

    monkeypatch.setattr(runner, "CANCEL_WAIT", 0.1)

    async def stubborn(attempt: Attempt) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(30)  # ignores the runner's cancel; only a second one ends it

    async def main() -> runner.RunSummary:
        summary = await run_open(ConstantWorkload(rate=50, duration=0.1, grace=0.1), stubborn)
        for task in asyncio.all_tasks() - {asyncio.current_task()}:  # let asyncio.run end promptly
            task.cancel()
        return summary

    began = time.monotonic()
    summary = asyncio.run(main())
    assert summary.cancelled == summary.launched == 5 and summary.completed == 0
    assert time.monotonic() - began < 2


def test_closed_model_runs_with_a_progress_bar():
    """A closed workload has no planned total: its tqdm bar must not be asked for its truth value (TypeError)."""
    async def journey(attempt: Attempt) -> None:
        await asyncio.sleep(0.02)

    summary = asyncio.run(run_closed(ClosedWorkload(users=2, duration=0.5), journey, progress=True))
    assert summary.completed > 0 and not summary.failed
