"""Run a fault schedule next to a load run, in the same asyncio loop; every fault is undone whatever happens.

One task per fault: sleep until t0 + at, check the steady state, inject (in a thread: the docker SDK blocks),
sleep `duration`, undo, check the steady state again until it holds (or `settle` passes). The undo sits in a
`finally`, so it runs when the fault's time is up, when another fault failed, and when the schedule is cancelled
(Ctrl-C under asyncio.run cancels the main task). run_schedule's own `finally` then undoes anything still active,
synchronously if it has to (a second cancellation), so no fault outlives the schedule. Undo is idempotent: a
fault's undo runs once, whoever asks first; later calls wait for it.

With a docker client, each change is first written to the fault journal (lab/faults/journal.py) with what undoes
it; an undo clears its record. Whatever this run still has in the journal at the very end (an apply that failed
half way, an undo that kept failing) is replayed once more from the records, and what is still left is said.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.faults import journal as fault_journal
from lab.faults.catalogue import Fault, FaultActionError, FaultContext, FaultInstance, faults
from lab.faults.probes import SteadyStateProbe, Verdict
from lab.faults.record import FaultRecord, detail_text, fault_recorder
from lab.faults.replay import replay
from lab.faults.schedule import FaultPlan, FaultStep, parse_schedule

CLEANUP_WAIT = 900.0  # seconds the final clean-up waits for undos still running in their threads


@dataclass
class FaultOutcome:
    fault_id: str
    action: str
    target: str
    at: float
    duration: float
    injected_at: float | None = None
    undone_at: float | None = None
    before: Verdict | None = None
    after: Verdict | None = None
    error: str | None = None


@dataclass
class ScheduleResult:
    faults: list[FaultOutcome] = field(default_factory=list)
    error: str | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled and all(f.error is None for f in self.faults)

    def describe(self) -> str:
        lines = []
        for f in self.faults:
            before = f.before.outcome if f.before else "-"
            after = f"{f.after.outcome} after {f.after.waited:.1f} s" if f.after else "-"
            lines.append(f"{f.fault_id} {f.action} {f.target}: steady state before {before}, after undo {after}"
                         + (f"; ERROR {f.error}" if f.error else ""))
        return "\n".join(lines)


async def _sleep_until(wall: float) -> None:
    """Sleep until the epoch time `wall`, scheduling by the monotonic clock."""
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call in a thread; if this task is cancelled meanwhile, the call still completes."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    return await asyncio.shield(future)


async def run_schedule(schedule: Any, docker_client: Any, run_dir: Path, t0: float | None = None, *,
                       access: Any = None, run_id: str | None = None, log: Callable[[str], None] = print,
                       topology: Any = None, shop: Any = None) -> ScheduleResult:
    """Run a fault schedule (raw or FaultPlan) from t0 (epoch s; now if None); record everything in
    run_dir/faults.parquet. Validation errors are raised before anything is done. An action that fails stops the
    schedule: the other faults are cancelled, everything is undone, and FaultActionError is raised.

    `access` (lab.pretix.bootstrap.PretixAccess) is needed for the health check; it is loaded from the
    deployment when None and the hypothesis checks health.
    """
    plan = parse_schedule(schedule, topology)
    t0 = time.time() if t0 is None else t0
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if access is None and plan.steady_state.health and plan.faults:
        from lab.pretix.bootstrap import PretixAccess

        access = PretixAccess.load()
    recorder = fault_recorder(run_dir, run_id or run_dir.name)
    journal = None
    if docker_client is not None and plan.faults:
        journal = fault_journal.FaultJournal(run_id=f"{run_id or run_dir.name}-{time.time_ns()}")
    ctx = FaultContext(docker=docker_client, record=recorder.record, log=log, topology=topology, journal=journal)
    probe = SteadyStateProbe(plan.steady_state, t0=t0, docker_client=docker_client, access=access,
                             run_dir=run_dir, topology=topology, shop=shop)
    result = ScheduleResult()
    instances: list[Fault] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for fault_id, step in plan.items():
            fault = faults.get(step.action)(FaultInstance(fault_id, step.action, step.target, dict(step.options)), ctx)
            outcome = FaultOutcome(fault_id, step.action, step.target, step.at, step.duration)
            instances.append(fault)
            result.faults.append(outcome)
            tasks.append(asyncio.get_running_loop().create_task(
                _run_one(fault, step, outcome, plan, probe, recorder, t0, log, result.faults),
                name=f"fault {fault_id}"))
        if tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in done if not t.cancelled() and t.exception() is not None]
            if failed:
                error = failed[0].exception()
                result.error = f"{type(error).__name__}: {error}"
                raise error  # type: ignore[misc]
    except asyncio.CancelledError:
        result.cancelled = True
        raise
    finally:
        await _cleanup(tasks, instances, log)
        if journal is not None:
            _replay_left(docker_client, journal, log)
        recorder.close()
    return result


def _replay_left(docker_client: Any, journal: fault_journal.FaultJournal, log: Callable[[str], None]) -> None:
    """This run's records still in the journal after every undo ran: replay them once more; say what stays."""
    for outcome in replay(docker_client, journal, mine_only=True, run_id=journal.run_id):
        log(f"[faults] journal: {outcome.line()}"
            + ("" if outcome.ok else "; `lab faults undo` tries again"))


async def _run_one(fault: Fault, step: FaultStep, outcome: FaultOutcome, plan: FaultPlan,
                   probe: SteadyStateProbe, recorder: Any, t0: float, log: Callable[[str], None],
                   outcomes: list[FaultOutcome]) -> None:
    fid = outcome.fault_id
    await _sleep_until(t0 + step.at)
    services = fault.health_services()
    outcome.before = await _probe(probe.before(services), fault, "before", recorder)
    if plan.steady_state.skip_if_deviated and outcome.before.outcome == "fail":
        fault.record("inject", time.time(), container=None, outcome="skipped",
                     detail={"reason": "steady state not met before the fault"})
        log(f"[faults] {fid}: steady state not met before the fault; skipped")
        return
    reason = "scheduled"
    try:
        log(f"[faults] {fid}: {step.action} {step.target} at +{time.time() - t0:.1f} s")
        try:
            await _in_thread(fault.inject)
        except FaultActionError as error:
            outcome.error = str(error)
            reason = "inject failed"
            raise
        outcome.injected_at = time.time()
        await asyncio.sleep(step.duration)
    except asyncio.CancelledError:
        reason = "cancelled"
        raise
    except BaseException:
        reason = reason if reason != "scheduled" else "error"
        raise
    finally:
        try:
            await _in_thread(fault.undo, reason)
        except FaultActionError as error:
            outcome.error = (outcome.error + "; " if outcome.error else "") + str(error)
            log(f"[faults] {fid}: UNDO FAILED: {error}")
            raise
        outcome.undone_at = time.time()
        log(f"[faults] {fid}: undone ({reason}) at +{outcome.undone_at - t0:.1f} s")
    undone_at = outcome.undone_at

    def injected_since() -> str | None:  # a fault injected after this undo ends the wait (probes.after)
        return next((o.fault_id for o in outcomes if o.injected_at and o.injected_at > undone_at), None)

    outcome.after = await _probe(probe.after(services, undone_at, injected_since), fault, "after", recorder)
    cut = f"; {outcome.after.cut_by} began" if outcome.after.cut_by else ""
    log(f"[faults] {fid}: steady state after the undo: {outcome.after.outcome} "
        f"(waited {outcome.after.waited:.1f} s{cut})")


async def _probe(check, fault: Fault, when: str, recorder: Any) -> Verdict:
    start = time.time()
    try:
        verdict = await check
    except asyncio.CancelledError:
        raise
    except Exception as error:  # noqa: BLE001 - a probe failing is a verdict, not a crash
        verdict = Verdict("fail", {"probe": {"outcome": "fail", "error": f"{type(error).__name__}: {error}"}})
    recorder.record(FaultRecord(
        fault_id=fault.instance.fault_id, action=fault.instance.action, target=fault.instance.target,
        container=",".join(fault.health_services()), phase="probe", probe=when, start=start, end=time.time(),
        outcome=verdict.outcome, ok=verdict.ok, detail=detail_text(verdict.detail())))
    return verdict


async def _cleanup(tasks: list[asyncio.Task[None]], instances: list[Fault], log: Callable[[str], None]) -> None:
    """Cancel what still runs, let the tasks' own undos finish, then undo anything still active."""
    for task in tasks:
        task.cancel()
    pending = [t for t in tasks if not t.done()]
    try:
        if pending:
            await asyncio.shield(asyncio.wait(pending, timeout=CLEANUP_WAIT))
    except asyncio.CancelledError:
        pass  # cancelled again: fall through to the synchronous undo below
    except GeneratorExit:  # the loop is being torn down: undo synchronously, then let it go
        _undo_all(instances, log)
        raise
    for task in tasks:  # retrieve every exception (the first one was raised by run_schedule already)
        if task.done() and not task.cancelled():
            task.exception()
    _undo_all(instances, log)


def _undo_all(instances: list[Fault], log: Callable[[str], None]) -> None:
    for fault in instances:
        if fault.injected and not fault.undone:
            log(f"[faults] {fault.instance.fault_id}: undo in clean-up")
        try:
            fault.undo("cleanup")  # a no-op when already undone; waits for an undo still running in a thread
        except FaultActionError as error:
            log(f"[faults] {fault.instance.fault_id}: UNDO FAILED in clean-up: {error}")


__all__ = ["FaultOutcome", "ScheduleResult", "run_schedule"]
