"""The traffic-control scenario: the same offered load (twice the capacity) without and with a waiting room.

Both runs offer the identical constant arrival schedule; only the proxy's admission control differs. Buyers
refused by the waiting room wait as its Retry-After says (up to `queue.max_wait`), like a queue page in a browser.
"""

from __future__ import annotations

from pathlib import Path

from lab.experiments.capacity import admission_for
from lab.load.queue import QueueSettings
from lab.stack.admission import LABELS, OFF, ROOM_MODES, Admission

SUFFIXES = {"waiting-room": "room", "queue": "queue"}  # run names: overload-<suffix>


def scenario(rate: float, capacity: float | None = None,
             controls: tuple[str, ...] = ("waiting-room",)) -> list[tuple[str, str, Admission]]:
    """(name suffix, label, admission) of each run: no control, then each control sized by the capacity."""
    if not rate > 0:
        raise ValueError(f"rate {rate!r}: the offered arrival rate must be > 0 (per second)")
    if not controls or any(c not in ROOM_MODES for c in controls):
        raise ValueError(f"controls {list(controls)!r}: allowed: one or more of {', '.join(ROOM_MODES)}")
    sized = capacity if capacity is not None else rate / 2
    return [("none", LABELS["off"], OFF)] + [(SUFFIXES[c], LABELS[c], admission_for(sized, mode=c))
                                             for c in controls]


def run_overload(ctx, *, journey: str, rate: float, seconds: float, runs_dir: Path, log=print,
                 capacity: float | None = None, queue: QueueSettings | None = None,
                 product_mix: dict[str, float] | None = None,
                 controls: tuple[str, ...] = ("waiting-room",)) -> list[dict]:
    """Run the scenario; return study.json run entries (kind "overload", dir relative to the study folder).

    rate: offered arrivals per second (the study offers twice the measured capacity); capacity: what the
    waiting room admits (default rate / 2); queue: how long refused buyers wait (default 60 s in all).
    """
    from lab.evidence.audit import load_run_meta
    from lab.evidence.drain import wait_drained
    from lab.experiments.run import RunFailed, audit_after, execute, validate_load
    from lab.pretix.seed import Catalogue

    queue = queue or QueueSettings(max_wait=60.0)
    grace = min(600.0, queue.max_wait + 60.0)  # queued buyers and the api journey's own retries must finish
    cat = Catalogue()
    plans = []
    for suffix, label, admission in scenario(rate, capacity, tuple(controls)):
        raw = {"name": f"overload-{suffix}", "journey": journey,
               "workload": {"model": "constant", "rate": rate, "duration": seconds, "grace": grace,
                            "max_in_flight": 5000},
               "admission": admission.model_dump(), "queue": queue.model_dump(), "audit": False}
        if product_mix is not None:
            raw["product_mix"] = product_mix
        plans.append((label, validate_load(raw, cat)))  # every run's parameters checked before the first runs
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_ctx = ctx.for_run(cat)
    entries = []
    for label, params in plans:
        wait_drained(ctx.access, ctx.docker, log=log)  # the next run must not inherit the last one's backlog
        log(f"overload {journey}: {rate:g}/s for {seconds:g}s, {label} ({params.admission.describe()})")
        try:
            run_dir = execute(params, run_ctx, root=runs_dir, log=log)
        except RunFailed as error:  # recorded; the next control still runs (it waits for the stack first)
            log(f"overload run {error.run_dir.name} failed: {error.why}")
            entries.append({"name": error.run_dir.name, "kind": "overload", "journey": journey, "label": label,
                            "dir": str(error.run_dir.relative_to(runs_dir.parent)), "failed": error.why})
            continue
        # the audit waits for the drain: orders still being made for buyers who gave up belong to this run
        audit_after(run_dir, ctx.docker, ctx.access, cat.slug, since=load_run_meta(run_dir)["started"] - 5, log=log)
        entries.append({"name": run_dir.name, "kind": "overload", "journey": journey,
                        "dir": str(run_dir.relative_to(runs_dir.parent)), "label": label})
    return entries


__all__ = ["run_overload", "scenario"]


def bench_admission(ctx, *, journey: str, capacity: float | None, overload: float, seconds: float,
                    queue: QueueSettings, controls: tuple[str, ...] = ("waiting-room",), log=print):
    """`lab bench admission`: the same offered load (`overload` x capacity, measured first when not given) without
    and with each admission control; writes table.csv and admission.png beside the runs. (table, folder, capacity)"""
    from lab.analysis.frames import Run
    from lab.analysis.traffic import admission_figure, admission_table
    from lab.common.paths import bench_path
    from lab.errors import LabError
    from lab.experiments.capacity import search_journey

    if capacity is None:
        capacity = search_journey(ctx, journey, log=log).capacity
        if capacity is None:
            raise LabError("the capacity search found no rate that meets the SLO")
    runs_dir = bench_path(f"admission-{journey}") / "runs"
    entries = run_overload(ctx, journey=journey, rate=capacity * overload, seconds=seconds, runs_dir=runs_dir,
                           log=log, capacity=capacity, queue=queue, controls=controls or ("waiting-room",))
    runs = [Run.load(runs_dir.parent / e["dir"]) for e in entries]  # each run's files read once for both
    labels = [e["label"] for e in entries]
    table = admission_table(runs, labels)
    admission_figure(runs, labels).savefig(runs_dir.parent / "admission.png", dpi=110)
    (runs_dir.parent / "table.csv").write_text(table.to_csv(index=False))
    return table, runs_dir.parent, capacity
