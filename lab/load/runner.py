"""Open and closed executors on asyncio: attempts start on schedule, whatever the system under test does.

Open model: one dispatcher sleeps until the next due arrival and spawns its attempt as a task; it never waits
for earlier attempts (no coordinated omission). Late arrivals start at once and their lag is measured; when
`max_in_flight` attempts are running, an arrival is dropped and reported, never queued. Closed model: N user
tasks loop journey -> think time. Both are bounded in count (max_attempts) and time (duration + grace).

A journey is the caller's `async def journey(attempt) -> None`: it records its own HTTP requests and sets
`attempt.outcome` (and order_code ...); a raised exception is data (counted by type), not a crash.
Every attempt, dropped and cancelled included, reaches `on_event` exactly once with its final state, so
`attempts_to(recorder)` writes one attempt row for each.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from tqdm import tqdm

from lab.load.recorder import AttemptRecord, Recorder
from lab.load.share import Share
from lab.load.workload import ClosedWorkload, ConstantWorkload, OpenWorkload

__all__ = ["Attempt", "Clock", "Journey", "RunEvent", "RunSummary", "attempts_to", "run_closed", "run_open"]

CANCEL_WAIT = 5.0  # seconds a cancelled attempt gets to unwind before it is abandoned
STOP_POLL = 0.25  # seconds between looks at a stop event while waiting for the next arrival


class Clock:
    """Monotonic time to schedule by, wall time (time.time(), shared with the other recorders) to stamp by."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(slots=True, eq=False)
class Attempt:
    """One purchase attempt; the journey fills outcome, order_code, error_kind and retries (and what it asked for
    and how the purchase was confirmed, for the audit)."""

    attempt_id: str
    buyer_index: int
    scheduled: float  # wall epoch s of its due start (closed model: when the user decided to start)
    started: float | None = None  # wall epoch s when the journey actually began to run
    ended: float | None = None
    outcome: Literal["purchased", "sold_out", "failed", "queued"] | None = None
    order_code: str | None = None
    error_kind: str | None = None
    retries: int = 0
    buyer: str | None = None  # the journey may name the customer it used
    queued: int = 0  # refusals by admission control (429/503 + Retry-After) this buyer saw
    queue_wait: float = 0.0  # seconds it waited in the queue
    item: int | None = None  # the item id the journey asked for
    count: int | None = None  # how many positions of it
    guest: bool | None = None  # True: a guest order (no customer account); False: the order carries `buyer`
    confirmed_by: Literal["response", "lookup"] | None = None  # what told the journey the purchase exists
    _due: float = field(default=math.nan, repr=False)  # monotonic
    _began: float = field(default=math.nan, repr=False)  # monotonic
    _final: bool = field(default=False, repr=False)

    @property
    def idempotency_key(self) -> str:
        return self.attempt_id

    @property
    def lag(self) -> float | None:
        """Seconds between due and actual start, measured on the monotonic clock (None if it never ran)."""
        return None if math.isnan(self._began) else self._began - self._due


Journey = Callable[[Attempt], Awaitable[None]]
EventKind = Literal["launched", "dropped", "completed", "failed", "cancelled", "end"]


@dataclass(slots=True)
class RunEvent:
    kind: EventKind
    attempt: Attempt | None = None
    error: BaseException | None = None
    summary: RunSummary | None = None


@dataclass
class RunSummary:
    """What the executor did. planned = launched + dropped + not_launched; launched = completed+failed+cancelled."""

    model: str
    planned: int | None
    launched: int
    dropped: int
    completed: int
    failed: dict[str, int]
    cancelled: int
    not_launched: int
    outcomes: dict[str, int]  # what completed journeys reported (purchased, sold_out, failed, unset)
    lag_p50_ms: float
    lag_p95_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    target_rate: float | None
    achieved_rate: float
    wall_duration: float
    started_at: float
    ended_at: float
    interrupted: bool
    dropped_scheduled: list[float] = field(default_factory=list)
    generators: int = 1  # processes that shared the schedule (lab.load.fanout)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        target = f" (target {self.target_rate:.1f}/s)" if self.target_rate else ""
        processes = f" by {self.generators} generators" if self.generators > 1 else ""
        return (f"{self.model}{processes}: {self.launched} launched of {self.planned or 'unbounded'}, "
                f"{self.dropped} dropped, "
                f"{self.completed} completed, {self.failed_total} failed, {self.cancelled} cancelled"
                f"{', INTERRUPTED' if self.interrupted else ''}; {self.achieved_rate:.1f}/s{target}; "
                f"lag p50 {self.lag_p50_ms:.2f} ms, p99 {self.lag_p99_ms:.2f} ms, max {self.lag_max_ms:.2f} ms")


class _Execution:
    """Bookkeeping shared by both executors: stamps, counts, events, progress, the end of a run."""

    def __init__(self, workload: OpenWorkload | ClosedWorkload, journey: Journey,
                 on_event: Callable[[RunEvent], None] | None, clock: Clock, progress: bool,
                 t0: float | None = None, planned: int | None = None):
        """`t0` (wall epoch s): the schedule's origin when another process chose it (a share of a fan-out), so
        every generator stamps `scheduled` from the same origin; `planned`: the arrivals of this share."""
        self.workload = workload
        self.journey = journey
        self.on_event = on_event
        self.clock = clock
        self.in_flight: dict[asyncio.Task[None], Attempt | None] = {}  # open: attempt tasks; closed: user tasks
        self.running: dict[asyncio.Task[None], Attempt] = {}  # attempts whose journey has begun
        self.launched = self.dropped = self.completed = self.cancelled = 0
        self.failed: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.lags: list[float] = []
        self.dropped_scheduled: list[float] = []
        self.listener_error: Exception | None = None
        self.mono0 = clock.monotonic()
        self.wall0 = clock.wall()
        if t0 is not None:  # the monotonic instant that was wall time t0 (possibly in the past)
            self.mono0, self.wall0 = self.mono0 - (self.wall0 - t0), t0
        self.planned = workload.planned if planned is None else planned
        self.dispatch_end = self.mono0
        self.stopped = False  # arrivals ended early by a stop event
        self.bar = tqdm(total=self.planned, unit="att", desc=workload.model, leave=True) if progress else None

    def wall_at(self, mono: float) -> float:
        return self.wall0 + (mono - self.mono0)

    def emit(self, event: RunEvent) -> None:
        """Call the listener; a listener that raises is a configuration mistake and stops the run early."""
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception as error:  # noqa: BLE001 - kept and re-raised by the executor
            if self.listener_error is None:
                self.listener_error = error

    def new_attempt(self, index: int, due: float) -> Attempt:
        return Attempt(str(uuid.uuid4()), index, self.wall_at(due), _due=due)

    def drop(self, attempt: Attempt) -> None:
        self.dropped += 1
        self.dropped_scheduled.append(attempt.scheduled)
        attempt.ended = self.clock.wall()
        attempt._final = True
        self.emit(RunEvent("dropped", attempt))

    async def execute(self, attempt: Attempt) -> None:
        """Run one journey; its exceptions are counted, not raised (cancellation still propagates)."""
        attempt._began = self.clock.monotonic()
        attempt.started = self.clock.wall()
        self.lags.append(attempt._began - attempt._due)
        task = asyncio.current_task()
        assert task is not None
        self.running[task] = attempt
        try:
            await self.journey(attempt)
        except asyncio.CancelledError:
            self.finish(attempt, "cancelled", None)
            raise
        except Exception as error:  # noqa: BLE001 - a failed attempt is data
            self.finish(attempt, "failed", error)
        else:
            self.finish(attempt, "completed", None)
        finally:
            self.running.pop(task, None)

    def finish(self, attempt: Attempt, kind: EventKind, error: BaseException | None) -> None:
        if attempt._final:
            return
        attempt._final = True
        attempt.ended = self.clock.wall()
        if kind == "cancelled":
            self.cancelled += 1
        elif kind == "failed":
            self.failed[type(error).__name__] += 1
        else:
            self.completed += 1
            self.outcomes[attempt.outcome or "unset"] += 1
        self.emit(RunEvent(kind, attempt, error))

    async def cancel_in_flight(self, wait: bool) -> None:
        """Cancel what still runs; give it CANCEL_WAIT seconds to unwind. Its attempts count as cancelled,
        also those of a journey that ignores cancellation (abandoned, so every attempt still ends once)."""
        for task in list(self.in_flight):
            task.cancel()
        if wait and self.in_flight:
            await asyncio.wait(list(self.in_flight), timeout=CANCEL_WAIT)
        for attempt in [*self.in_flight.values(), *self.running.values()]:
            if attempt is not None:
                self.finish(attempt, "cancelled", None)

    async def ticker(self) -> None:
        while self.bar is not None:
            self.refresh_bar()
            await asyncio.sleep(0.5)

    def refresh_bar(self) -> None:
        if self.bar is not None:
            self.bar.n = self.launched
            self.bar.set_postfix(in_flight=len(self.in_flight), completed=self.completed,
                                 failed=sum(self.failed.values()), dropped=self.dropped, refresh=False)
            self.bar.refresh()

    def summary(self, interrupted: bool) -> RunSummary:
        end = self.clock.monotonic()
        lags = np.asarray(self.lags) * 1000.0
        p50, p95, p99, worst = (np.percentile(lags, [50, 95, 99, 100]) if lags.size else [math.nan] * 4)
        planned = self.planned
        if isinstance(self.workload, OpenWorkload):
            target: float | None = self.workload.target_rate
            covered = (end - self.mono0 if interrupted else  # the part of the schedule offered
                       self.dispatch_end - self.mono0 if self.stopped else self.workload.total_duration)
            window = max(covered, self.dispatch_end - self.mono0, 1e-9)
            not_launched = planned - self.launched - self.dropped
        else:
            target = None
            window = max(min(end - self.mono0, self.workload.duration), 1e-9)
            not_launched = 0 if planned is None else max(planned - self.launched, 0)
        return RunSummary(
            model=self.workload.model, planned=planned, launched=self.launched, dropped=self.dropped,
            completed=self.completed, failed=dict(self.failed), cancelled=self.cancelled, not_launched=not_launched,
            outcomes=dict(self.outcomes), lag_p50_ms=float(p50), lag_p95_ms=float(p95), lag_p99_ms=float(p99),
            lag_max_ms=float(worst), target_rate=target, achieved_rate=self.launched / window,
            wall_duration=end - self.mono0, started_at=self.wall0, ended_at=self.wall_at(end),
            interrupted=interrupted, dropped_scheduled=list(self.dropped_scheduled),
        )

    async def finalise(self, body: Callable[[], Awaitable[None]]) -> RunSummary:
        """Run the executor body; whatever happens, cancel what is left, then build and emit the summary."""
        ticker = asyncio.get_running_loop().create_task(self.ticker()) if self.bar is not None else None
        interrupted = True
        loop_alive = True
        try:
            await body()
            interrupted = False
        except (KeyboardInterrupt, SystemExit):
            loop_alive = False  # the loop is going down: cancel, but do not await inside it
            raise
        finally:
            try:
                await self.cancel_in_flight(wait=loop_alive)
            finally:
                if ticker is not None:
                    ticker.cancel()
                self.close_bar()
                self.result = self.summary(interrupted)
                self.emit(RunEvent("end", summary=self.result))
        if self.listener_error is not None:
            raise self.listener_error
        return self.result

    def close_bar(self) -> None:
        if self.bar is not None:
            self.refresh_bar()
            self.bar.close()
            self.bar = None


async def run_open(workload: OpenWorkload, journey: Journey, *, on_event: Callable[[RunEvent], None] | None = None,
                   clock: Clock | None = None, progress: bool = False, stop: asyncio.Event | None = None,
                   share: Share | None = None) -> RunSummary:
    """Launch each attempt at its scheduled time; drop (and report) arrivals beyond max_in_flight.

    `stop`, when set, ends the arrivals early (those launched still finish within the grace): the workload's
    duration is then an upper bound, e.g. a fault run's load that lasts until its last after-undo check is done.

    `share`, when given, is this process's part of a schedule several generator processes keep together
    (lab.load.fanout): only its arrivals are launched, each under its number in the whole schedule (the buyer
    index), due at the shared wall-clock t0 plus its offset.

    On cancellation (Ctrl-C under asyncio.run) the attempts are cancelled, the summary reaches on_event as the
    'end' event with interrupted=True, and the CancelledError propagates (swallowing it would break asyncio).
    """
    if share is None:
        offsets = workload.schedule()  # before the clock starts: a long schedule must not make the first late
        numbers: list[int] | range = range(len(offsets))
        run = _Execution(workload, journey, on_event, clock or Clock(), progress)
    else:
        offsets, numbers = share.offsets, share.indices.tolist()
        run = _Execution(workload, journey, on_event, clock or Clock(), progress, t0=share.t0,
                         planned=len(offsets))
    dues = (run.mono0 + offsets).tolist()
    loop = asyncio.get_running_loop()

    def done(task: asyncio.Task[None], attempt: Attempt) -> None:
        run.in_flight.pop(task, None)
        if task.cancelled():  # cancelled before its first step: execute() never saw it
            run.finish(attempt, "cancelled", None)

    def launch(index: int, due: float) -> None:
        attempt = run.new_attempt(index, due)
        if len(run.in_flight) >= workload.max_in_flight:
            run.drop(attempt)
            return
        task = loop.create_task(run.execute(attempt))
        run.in_flight[task] = attempt
        task.add_done_callback(lambda t: done(t, attempt))
        run.launched += 1
        run.emit(RunEvent("launched", attempt))

    async def dispatch() -> None:
        i, n = 0, len(dues)
        while i < n and run.listener_error is None:
            if stop is not None and stop.is_set():
                run.stopped = True
                break
            now = run.clock.monotonic()
            if dues[i] > now:
                await run.clock.sleep(dues[i] - now if stop is None else min(dues[i] - now, STOP_POLL))
                continue
            while i < n and dues[i] <= now:
                launch(numbers[i], dues[i])
                i += 1
            run.dispatch_end = now
            if i < n and dues[i] <= run.clock.monotonic():
                await asyncio.sleep(0)  # still behind: let the attempts run before launching more
        if run.in_flight and run.listener_error is None:
            await asyncio.wait(list(run.in_flight), timeout=workload.grace)

    return await run.finalise(dispatch)


async def run_closed(workload: ClosedWorkload, journey: Journey, *,
                     on_event: Callable[[RunEvent], None] | None = None, clock: Clock | None = None,
                     progress: bool = False) -> RunSummary:
    """N users loop journey -> exponential think time until duration, iterations or max_attempts."""
    run = _Execution(workload, journey, on_event, clock or Clock(), progress)
    end = run.mono0 + workload.duration
    loop = asyncio.get_running_loop()

    async def user(index: int) -> None:
        think = workload.think_sampler(index)
        due = run.mono0
        iteration = 0
        while (workload.iterations is None or iteration < workload.iterations) and run.listener_error is None:
            now = run.clock.monotonic()
            if due > now:
                await run.clock.sleep(due - now)
            if max(due, run.clock.monotonic()) >= end or run.launched >= workload.max_attempts:
                return
            attempt = run.new_attempt(index, due)
            run.launched += 1
            run.emit(RunEvent("launched", attempt))
            await run.execute(attempt)
            iteration += 1
            due = run.clock.monotonic() + think()

    async def body() -> None:
        for index in range(workload.users):
            task = loop.create_task(user(index))
            run.in_flight[task] = None
            task.add_done_callback(lambda t: run.in_flight.pop(t, None))
        users = list(run.in_flight)
        await asyncio.wait(users, timeout=workload.duration + workload.grace)
        for task in users:  # a bug in the loop itself (not in a journey) must not pass silently
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    return await run.finalise(body)


def attempts_to(recorder: Recorder[AttemptRecord], journey: str) -> Callable[[RunEvent], None]:
    """An on_event listener writing one attempts.parquet row per attempt, whatever became of it."""

    def listen(event: RunEvent) -> None:
        attempt = event.attempt
        if attempt is None or event.kind == "launched":
            return
        error_kind = attempt.error_kind
        if event.kind in ("dropped", "cancelled"):
            outcome: str = event.kind
        elif event.kind == "failed":
            outcome, error_kind = "failed", error_kind or type(event.error).__name__
        elif attempt.outcome is None:
            outcome, error_kind = "failed", error_kind or "no_outcome"
        else:
            outcome = attempt.outcome
        recorder.record(AttemptRecord(
            attempt_id=attempt.attempt_id, buyer=attempt.buyer or str(attempt.buyer_index), journey=journey,
            scheduled=attempt.scheduled, start=attempt.started, end=attempt.ended, outcome=outcome,  # type: ignore[arg-type]
            order_code=attempt.order_code, error_kind=error_kind, retries=attempt.retries,
            idempotency_key=attempt.idempotency_key, queued=attempt.queued, queue_wait=attempt.queue_wait,
            item=attempt.item, count=attempt.count, guest=attempt.guest, confirmed_by=attempt.confirmed_by,
        ))

    return listen


async def _noop(attempt: Attempt) -> None:
    return None


def bench(rates: tuple[float, ...] = (200, 1000, 2000), seconds: float = 5.0) -> list[dict[str, float]]:
    """Generator overhead alone: a no-op journey at each rate (a benchmark, not a test)."""
    rows = []
    for rate in rates:
        workload = ConstantWorkload(rate=rate, duration=seconds, grace=5)
        cpu0 = time.process_time()
        summary = asyncio.run(run_open(workload, _noop))
        cpu = time.process_time() - cpu0
        rows.append({"rate": rate, "planned": summary.planned, "launched": summary.launched,
                     "dropped": summary.dropped, "achieved": summary.achieved_rate, "p50": summary.lag_p50_ms,
                     "p95": summary.lag_p95_ms, "p99": summary.lag_p99_ms, "max": summary.lag_max_ms,
                     "cpu_per_1000": cpu / max(summary.launched, 1) * 1000, "cpu_share": cpu / summary.wall_duration})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.load.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="measure the open executor with a no-op journey")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each bench rate")
    parser.add_argument("--rates", default="200,1000,2000", help="comma-separated arrival rates")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.print_help()
        return
    rates = tuple(float(r) for r in args.rates.split(","))
    print(f"{'rate/s':>7} {'launched':>9} {'dropped':>8} {'achieved/s':>11} {'lag p50':>8} {'p95':>7} {'p99':>7} "
          f"{'max ms':>8} {'CPU s/1000':>11} {'core %':>7}")
    for row in bench(rates, args.seconds):
        print(f"{row['rate']:>7g} {row['launched']:>9} {row['dropped']:>8} {row['achieved']:>11.1f} "
              f"{row['p50']:>8.3f} {row['p95']:>7.3f} {row['p99']:>7.3f} {row['max']:>8.2f} "
              f"{row['cpu_per_1000']:>11.4f} {row['cpu_share'] * 100:>6.0f}%")


if __name__ == "__main__":
    main()

