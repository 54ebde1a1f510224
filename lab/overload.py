"""The traffic-control scenario: the same offered load (twice the capacity) without and with a waiting room.

Both runs offer the identical constant arrival schedule; only the proxy's admission control differs. Buyers
refused by the waiting room wait as its Retry-After says (up to `queue.max_wait`), like a queue page in a browser.
"""

from __future__ import annotations

import time
from pathlib import Path

from lab.capacity import admission_for
from lab.load.queue import QueueSettings
from lab.stack.admission import LABELS, OFF, ROOM_MODES, Admission

IDLE_TIMEOUT = 300.0  # seconds to wait for the stack to drain a run's backlog
IDLE_LATENCY = 0.5  # seconds: /healthcheck/ answering faster than this, three times in a row, means drained


def wait_idle(access, *, timeout: float = IDLE_TIMEOUT, log=print) -> float:
    """Wait until pretix has worked off what earlier load left queued (its /healthcheck/ answers fast again).

    An overloaded pretix keeps processing requests whose clients gave up (ghost orders): the next run must not
    inherit that backlog, and the audit must not run before those orders exist. Returns the seconds waited.
    """
    import httpx

    began = time.monotonic()
    fast = 0
    with httpx.Client(base_url=access.base_url, verify=access.tls(), timeout=30) as http:
        while fast < 3 and time.monotonic() - began < timeout:
            start = time.monotonic()
            try:
                ok = http.get("/healthcheck/").status_code == 200
            except httpx.HTTPError:
                ok = False
            fast = fast + 1 if ok and time.monotonic() - start < IDLE_LATENCY else 0
            time.sleep(1.0)
    waited = time.monotonic() - began
    if fast < 3:
        log(f"warning: the stack was still busy after {waited:.0f}s")
    elif waited > 4:
        log(f"stack drained after {waited:.0f}s")
    return waited


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
    from lab.audit import audit_run, load_run_meta
    from lab.run import execute, validate_load
    from lab.seed import Catalogue

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
    ids = ctx.catalogue(cat)
    buyers = ctx.saved_buyers()
    entries = []
    for label, params in plans:
        wait_idle(ctx.access, log=log)
        log(f"overload {journey}: {rate:g}/s for {seconds:g}s, {label} ({params.admission.describe()})")
        run_dir = execute(params, access=ctx.access, docker_client=ctx.docker, buyers=buyers, catalogue_ids=ids,
                          event=cat.slug, buyer_secret=ctx.buyer_secret(), root=runs_dir, log=log)
        wait_idle(ctx.access, log=log)  # orders still being made for buyers who gave up belong to this run
        started = load_run_meta(run_dir)["started"]
        log(audit_run(run_dir, ctx.docker, ctx.access, ctx.access.organizer, cat.slug, since=started - 5).describe())
        entries.append({"name": run_dir.name, "kind": "overload", "journey": journey,
                        "dir": str(run_dir.relative_to(runs_dir.parent)), "label": label})
    return entries


__all__ = ["run_overload", "scenario"]
