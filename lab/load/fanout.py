"""One open workload kept by K generator processes, when one asyncio process cannot keep its schedule.

The parent computes the schedule once and deals it out (lab.load.share: process k keeps every K-th arrival). Each
child (multiprocessing, spawn: a fresh interpreter, nothing inherited but what is sent) builds its own journey from
a recipe (lab.load.recipes), opens its own recorders in the same run folder (parts named after the process, so K
writers never collide), says it is ready, and waits for t0. The parent sends one wall-clock t0 to all once every
child is ready, so each attempt's `scheduled` is t0 + its offset in the one schedule, whichever process ran it.

Nothing outlives the parent: every wait is bounded; on a timeout, an error, Ctrl-C or SIGTERM the parent asks the
children to stop (SIGTERM: they cancel what runs and flush their records), kills any that do not, and reaps them.
A child also stops by itself when its parent is gone or its own deadline has passed.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
import time
import traceback
from collections import Counter
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from lab.errors import LabError
from lab.load.recipes import JourneyRecipe
from lab.load.share import Share, split
from lab.load.workload import OpenWorkload

START_TIMEOUT = 60.0  # seconds every child gets to import, build its journey and say it is ready
START_MARGIN = 0.2  # seconds between sending t0 and t0 itself: every child has it before its first arrival
END_MARGIN = 15.0  # seconds past the last arrival's grace and cancel wait before a child is stopped
STOP_WAIT = 10.0  # seconds a stopped child gets to cancel its attempts and flush, before it is killed
POLL = 0.05  # seconds between looks at the children while waiting


def max_generators() -> int:
    """The most generator processes a run may ask for: one per core (at least 2, so the fan-out can be tried on a
    one-core machine), never more than 16."""
    return max(2, min(16, os.cpu_count() or 1))


class GeneratorFailed(LabError, RuntimeError):
    """A generator process failed to start or to finish; what the others recorded stays in the run folder."""


@dataclass(frozen=True)
class ChildPlan:
    """What one generator process is sent (pickled): its share, how to build its journey, where to record."""

    index: int
    generators: int
    workload: OpenWorkload
    share: Share
    recipe: JourneyRecipe
    run_dir: str | None  # None: record nothing (a bench)
    run_id: str
    parent: int  # the parent's pid: gone means stop
    stop_after: float  # seconds after t0 past which the child stops whatever it is doing


@dataclass
class ChildResult:
    """What a child sends back: its summary (a RunSummary as a dict), its launch lags (s) and the CPU seconds it
    spent from t0 on."""

    index: int
    summary: dict[str, Any] | None
    lags: np.ndarray
    cpu_seconds: float
    error: str | None = None


def plans(workload: OpenWorkload, recipe: JourneyRecipe, generators: int, run_dir: Path | None,
          run_id: str) -> list[ChildPlan]:
    """The schedule computed once and dealt out; each child's in-flight cap is its share of the workload's."""
    shares = split(workload.schedule(), generators)
    each = workload.model_copy(update={"max_in_flight": math.ceil(workload.max_in_flight / generators)})
    stop_after = workload.total_duration + workload.grace + END_MARGIN
    return [ChildPlan(k, generators, each, shares[k], recipe, str(run_dir) if run_dir else None, run_id,
                      os.getpid(), stop_after) for k in range(generators)]


# --- the child ----------------------------------------------------------------------------------------

def child_main(plan: ChildPlan, conn: Connection, stop: Any) -> None:
    """A generator process: build, say ready, wait for t0, run the share, send the result, exit."""
    cpu0 = time.process_time()
    lags: list[float] = []
    ended: dict[str, Any] = {}
    error = None
    try:
        asyncio.run(_child_run(plan, conn, stop, lags, ended))
    except (KeyboardInterrupt, asyncio.CancelledError):
        error = None if ended else "stopped before its run began"
    except BaseException as caught:  # noqa: BLE001 - sent to the parent, which raises it
        error = "".join(traceback.format_exception_only(caught)).strip() + "\n" + traceback.format_exc(limit=-4)
    try:
        conn.send(ChildResult(plan.index, ended.get("summary"), np.asarray(lags),
                              time.process_time() - ended.get("cpu0", cpu0), error))
    except (BrokenPipeError, OSError):  # the parent is gone: nothing to tell
        pass
    finally:
        conn.close()


async def _child_run(plan: ChildPlan, conn: Connection, stop: Any, lags: list[float],
                     ended: dict[str, Any]) -> None:
    from lab.load.recorder import Recorder
    from lab.load.runner import RunEvent, attempts_to, run_open

    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    writer = f"g{plan.index}"
    with ExitStack() as recorders:
        requests = attempts = None
        if plan.run_dir is not None:
            folder = Path(plan.run_dir)
            requests = recorders.enter_context(Recorder.requests(folder, plan.run_id, writer=writer))
            attempts = recorders.enter_context(Recorder.attempts(folder, plan.run_id, writer=writer))
        record = attempts_to(attempts, plan.recipe.name) if attempts is not None else None

        def listen(event: RunEvent) -> None:
            if event.kind == "end" and event.summary is not None:
                ended["summary"] = event.summary.to_dict()
            attempt = event.attempt
            if attempt is not None and event.kind != "launched" and attempt.lag is not None:
                lags.append(attempt.lag)
            if record is not None:
                record(event)

        journey = plan.recipe.build(requests)
        async with AsyncExitStack() as stack:
            if hasattr(journey, "__aenter__"):
                await stack.enter_async_context(journey)
            conn.send(("ready", plan.index))
            t0 = await _receive_t0(conn, plan)
            ended["cpu0"] = time.process_time()  # the run's own CPU, without the start-up (imports, clients)
            arrivals_over = asyncio.Event()
            watch = asyncio.ensure_future(_watch(plan, stop, arrivals_over, t0 + plan.stop_after, main))
            try:
                await run_open(plan.workload, journey, on_event=listen, stop=arrivals_over, share=plan.share.at(t0))
            finally:
                watch.cancel()


async def _receive_t0(conn: Connection, plan: ChildPlan) -> float:
    deadline = time.monotonic() + START_TIMEOUT + STOP_WAIT
    while time.monotonic() < deadline:
        if conn.poll():
            return float(conn.recv())
        if os.getppid() != plan.parent:
            raise GeneratorFailed("the parent process is gone")
        await asyncio.sleep(POLL)
    raise GeneratorFailed(f"no start time came within {START_TIMEOUT + STOP_WAIT:g} s")


async def _watch(plan: ChildPlan, stop: Any, arrivals_over: asyncio.Event, deadline: float,
                 main: asyncio.Task[Any]) -> None:
    """End the arrivals when the parent says so; end everything when the parent is gone or the deadline passed."""
    while True:
        if stop.is_set():
            arrivals_over.set()
        if os.getppid() != plan.parent or time.time() > deadline:
            main.cancel()
            return
        await asyncio.sleep(POLL * 5)


# --- the parent ---------------------------------------------------------------------------------------

@dataclass
class FanoutResult:
    """The whole run as one summary, and each child's part."""

    summary: Any  # lab.load.runner.RunSummary
    children: list[ChildResult]
    t0: float

    @property
    def cpu_seconds(self) -> float:
        return sum(c.cpu_seconds for c in self.children)


async def run_fanout(workload: OpenWorkload, recipe: JourneyRecipe, generators: int, *,
                     run_dir: Path | None = None, run_id: str = "", stop: asyncio.Event | None = None,
                     log=print) -> FanoutResult:
    """Run `workload` with `generators` processes sharing its schedule; attempts and requests go to `run_dir`
    (None: nowhere). `stop`, when set, ends the arrivals early, as in run_open."""
    if not isinstance(workload, OpenWorkload):
        raise GeneratorFailed(f"{generators} generators need an open workload (constant, ramp, spike); "
                              f"a {workload.model} workload runs in one process")
    context = multiprocessing.get_context("spawn")
    stop_all = context.Event()
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        for plan in plans(workload, recipe, generators, run_dir, run_id):
            ours, theirs = context.Pipe()
            process = context.Process(target=child_main, args=(plan, theirs, stop_all), daemon=True,
                                      name=f"lab-generator-{plan.index}")
            process.start()
            theirs.close()
            children.append((process, ours))
        await _all_ready(children)
        t0 = time.time() + START_MARGIN
        for _, conn in children:
            conn.send(t0)
        log(f"{generators} generator processes (pids {', '.join(str(p.pid) for p, _ in children)}) share one "
            f"schedule from t0 {t0:.3f}")
        deadline = t0 + workload.total_duration + workload.grace + END_MARGIN + STOP_WAIT
        results = await _all_done(children, deadline, stop, stop_all)
    finally:
        _reap(children, stop_all)
    failed = [r for r in results if r.error or r.summary is None]
    if failed:
        raise GeneratorFailed("; ".join(f"generator {r.index}: {(r.error or 'no summary').splitlines()[0]}"
                                        for r in failed))
    return FanoutResult(merge(workload, results, t0), results, t0)


async def _all_ready(children: list[tuple[Any, Connection]]) -> None:
    waiting = set(range(len(children)))
    deadline = time.monotonic() + START_TIMEOUT
    while waiting:
        if time.monotonic() > deadline:
            raise GeneratorFailed(f"generators {sorted(waiting)} were not ready within {START_TIMEOUT:g} s")
        for k in list(waiting):
            process, conn = children[k]
            if conn.poll():
                message = conn.recv()
                if isinstance(message, ChildResult):  # it failed while starting
                    raise GeneratorFailed(f"generator {k} failed to start: {message.error}")
                waiting.discard(k)
            elif not process.is_alive():
                raise GeneratorFailed(f"generator {k} died while starting (exit code {process.exitcode})")
        await asyncio.sleep(POLL)


async def _all_done(children: list[tuple[Any, Connection]], deadline: float, stop: asyncio.Event | None,
                    stop_all: Any) -> list[ChildResult]:
    results: dict[int, ChildResult] = {}
    while len(results) < len(children):
        if time.time() > deadline:
            raise GeneratorFailed(f"generators {sorted(set(range(len(children))) - set(results))} did not end "
                                  "within the workload's duration, grace and margin")
        if stop is not None and stop.is_set():
            stop_all.set()
        for k, (process, conn) in enumerate(children):
            if k in results:
                continue
            if conn.poll():
                results[k] = conn.recv()
            elif not process.is_alive() and not conn.poll():
                results[k] = ChildResult(k, None, np.empty(0), 0.0, f"died (exit code {process.exitcode})")
        await asyncio.sleep(POLL)
    return [results[k] for k in range(len(children))]


def _reap(children: list[tuple[Any, Connection]], stop_all: Any) -> None:
    """Every child ends here: those still running get SIGTERM (they flush what they recorded), then SIGKILL."""
    stop_all.set()
    running = [p for p, _ in children if p.is_alive()]
    for process in running:
        process.join(timeout=0.5)  # one that just sent its result is exiting by itself
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_WAIT
    for process in running:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    for process, conn in children:
        conn.close()
        if process.exitcode is not None:
            process.close()


def merge(workload: OpenWorkload, results: list[ChildResult], t0: float):
    """The children's summaries as one: counts added, lags pooled, the rate over the longest share's window."""
    from lab.load.runner import RunSummary

    parts = [r.summary for r in results if r.summary is not None]
    lags = np.concatenate([r.lags for r in results]) * 1000.0 if results else np.empty(0)
    p50, p95, p99, worst = np.percentile(lags, [50, 95, 99, 100]) if lags.size else [math.nan] * 4
    launched = sum(p["launched"] for p in parts)
    windows = [p["launched"] / p["achieved_rate"] for p in parts if p["launched"] and p["achieved_rate"]]
    failed: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for p in parts:
        failed.update(p["failed"])
        outcomes.update(p["outcomes"])
    ended_at = max((p["ended_at"] for p in parts), default=t0)
    return RunSummary(
        model=workload.model, planned=workload.planned, launched=launched,
        dropped=sum(p["dropped"] for p in parts), completed=sum(p["completed"] for p in parts),
        failed=dict(failed), cancelled=sum(p["cancelled"] for p in parts),
        not_launched=sum(p["not_launched"] for p in parts), outcomes=dict(outcomes),
        lag_p50_ms=float(p50), lag_p95_ms=float(p95), lag_p99_ms=float(p99), lag_max_ms=float(worst),
        target_rate=workload.target_rate, achieved_rate=launched / max(max(windows, default=1e-9), 1e-9),
        wall_duration=ended_at - t0, started_at=t0, ended_at=ended_at,
        interrupted=any(p["interrupted"] for p in parts),
        dropped_scheduled=sorted(s for p in parts for s in p["dropped_scheduled"]), generators=len(results))


__all__ = ["ChildPlan", "ChildResult", "FanoutResult", "GeneratorFailed", "child_main", "max_generators", "merge",
           "plans", "run_fanout"]
