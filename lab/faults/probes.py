"""The steady-state hypothesis, checked before each fault and after its undo; each verdict is a faults.parquet row.

  health      GET /healthcheck/ through the proxy (https, verified with the deployment's own CA) answers 200
  containers  the containers the fault acts on run and are healthy (docker's health check)
  throughput  answered attempts (purchased or sold out) per second over the last `window` seconds, read from the
              run's attempts.parquet as recorded so far, are at least (1 - tolerance) x the baseline: the rate
              before the first fault. Skipped (not failed) without a load, or without enough history.

Before a fault the hypothesis is checked once. After the undo it is checked every second until it holds or
`settle` seconds pass (the throughput window then only counts attempts that ended after the undo); the verdict
says how long it took. The next fault ends that wait too: what follows its injection says nothing about this
fault's recovery, so a hypothesis that did not hold by then is `cut` (not back yet, not known to have failed).
A probe never raises: a check that cannot be made is recorded as failed or skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lab.faults.schedule import SteadyState

ANSWERED = ("purchased", "sold_out")
POLL_SECONDS = 1.0
SHOP_CHECK_SECONDS = 20.0  # the most one shop check (event page, cart add, its polls) may take


@dataclass(frozen=True)
class ShopTarget:
    """Where the shop check adds to a cart: the run's event and an item with room (not a sell-out product)."""

    event: str
    item: int


class _Kept:
    """A recorder for the shop check's requests: kept in memory, never in the run's request log (not load)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def record(self, row: Any) -> None:
        self.rows.append(row)


@dataclass
class Verdict:
    outcome: str  # pass | fail | skipped | cut (after an undo: the next fault began before it held)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    waited: float = 0.0
    cut_by: str | None = None  # the fault whose injection ended the wait

    @property
    def ok(self) -> bool | None:
        return {"pass": True, "fail": False}.get(self.outcome)

    def detail(self) -> dict[str, Any]:
        return {"checks": self.checks, "waited": round(self.waited, 2),
                **({"cut_by": self.cut_by} if self.cut_by else {})}


def combine(checks: dict[str, dict[str, Any]]) -> str:
    outcomes = [c["outcome"] for c in checks.values()]
    if "fail" in outcomes:
        return "fail"
    return "pass" if "pass" in outcomes else "skipped"


def answered_rate(attempts, start: float, end: float) -> tuple[float, int]:
    """Answered attempts per second that ended within [start, end) (a pure function of the attempts frame)."""
    if end <= start or attempts is None or len(attempts) == 0:
        return 0.0, 0
    done = attempts[attempts["outcome"].isin(ANSWERED) & (attempts["end"] >= start) & (attempts["end"] < end)]
    return len(done) / (end - start), len(done)


class SteadyStateProbe:
    """Checks the hypothesis; the baseline is taken once, at the first check before a fault."""

    def __init__(self, settings: SteadyState, *, t0: float, docker_client: Any = None, access: Any = None,
                 run_dir: Path | None = None, topology: Any = None, shop: ShopTarget | None = None):
        self.settings = settings
        self.shop_target = shop
        self.t0 = t0
        self.docker = docker_client
        self.access = access
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.topology = topology
        self.baseline: float | None = None
        self.baseline_span: tuple[float, float] | None = None

    # -- the checks ----------------------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        if not self.settings.health:
            return {"outcome": "skipped", "why": "disabled"}
        if self.access is None:
            return {"outcome": "skipped", "why": "no pretix access given"}
        began = time.time()
        try:
            async with httpx.AsyncClient(verify=self.access.tls(), timeout=self.settings.health_timeout) as client:
                response = await client.get(f"{self.access.base_url}/healthcheck/")
            status = response.status_code
            return {"outcome": "pass" if status == 200 else "fail", "status": status,
                    "instance": response.headers.get("x-upstream-instance"), "seconds": round(time.time() - began, 3)}
        except httpx.HTTPError as error:
            return {"outcome": "fail", "error": f"{type(error).__name__}: {error}",
                    "seconds": round(time.time() - began, 3)}

    def containers(self, services: list[str]) -> dict[str, Any]:
        if not self.settings.containers or self.docker is None:
            return {"outcome": "skipped", "why": "disabled" if self.docker is not None else "no docker client"}
        from lab.stack.containers import project_containers

        states: dict[str, str] = {}
        try:
            for service in services:
                found = project_containers(self.docker, service)
                if not found:
                    states[service] = "missing"
                for c in found:
                    health = (c.attrs["State"].get("Health") or {}).get("Status")
                    states[c.name] = c.status if health is None or c.status != "running" else f"{c.status}/{health}"
        except Exception as error:  # noqa: BLE001 - a probe never raises
            return {"outcome": "fail", "error": f"{type(error).__name__}: {error}"}
        good = all(s in ("running", "running/healthy") for s in states.values())
        return {"outcome": "pass" if good else "fail", "states": states}

    async def shop(self) -> dict[str, Any]:
        if not self.settings.shop:
            return {"outcome": "skipped", "why": "disabled"}
        if self.access is None or self.shop_target is None:
            return {"outcome": "skipped", "why": "no shop target given"}
        import uuid

        from lab.load.http import Stepper
        from lab.load.runner import Attempt
        from lab.load.shop import CartAdd, ShopJourney
        from lab.pretix.buyers import Buyer

        kept = _Kept()
        guest = Buyer(identifier="steady-state", email="steady-state@pretix-lab.invalid", name="Estado Estável",
                      has_password=False)
        journey = ShopJourney(self.access.base_url, self.access.tls(), self.access.organizer,
                              self.shop_target.event, Stepper(kept, "shop"), [guest],  # type: ignore[arg-type]
                              item_weights={self.shop_target.item: 1.0}, login_share=0.0, password=lambda b: "",
                              max_attempt_seconds=SHOP_CHECK_SECONDS)
        began = time.time()
        try:
            added = await journey.cart_add(Attempt(str(uuid.uuid4()), 0, began))
        except Exception as error:  # noqa: BLE001 - a probe never raises
            added = CartAdd(False, f"{type(error).__name__}: {error}")
        seconds = round(time.time() - began, 3)
        if added.error_kind == "sold_out":
            return {"outcome": "skipped", "why": "the item is sold out", "seconds": seconds}
        found = {"outcome": "pass" if added.ok else "fail", "error": added.error_kind, "requests": len(kept.rows),
                 "seconds": seconds}
        return found | ({"message": added.detail} if added.detail else {})

    def _attempts(self):
        if self.run_dir is None:
            return None
        from lab.load.recorder import read_attempts

        return read_attempts(self.run_dir)

    def throughput(self, now: float, since: float | None = None) -> dict[str, Any]:
        """Rate over [now - lag - window, now - lag] (only after `since`) against the baseline."""
        s = self.settings
        if not s.throughput:
            return {"outcome": "skipped", "why": "disabled"}
        if self.run_dir is None:
            return {"outcome": "skipped", "why": "no run folder (no load)"}
        end = now - s.flush_lag
        start = end - s.window
        try:
            attempts = self._attempts()
        except Exception as error:  # noqa: BLE001 - a probe never raises
            return {"outcome": "fail", "error": f"{type(error).__name__}: {error}"}
        if attempts is None or len(attempts) == 0:
            return {"outcome": "skipped", "why": "no attempts recorded"}
        if since is not None and start < since:
            return {"outcome": "skipped", "why": f"less than {s.window:g} s of records since the undo"}
        if self.baseline is None:
            first = self.t0 + 1.0  # the first second: the load is still starting
            if end - first < s.window:
                return {"outcome": "skipped", "why": f"less than {s.window:g} s of load before the first fault"}
            self.baseline, count = answered_rate(attempts, first, end)
            self.baseline_span = (first, end)
            if count == 0:
                self.baseline = None
                return {"outcome": "skipped", "why": "no answered attempts before the first fault"}
        rate, count = answered_rate(attempts, start, end)
        floor = (1 - s.tolerance) * self.baseline
        return {"outcome": "pass" if rate >= floor else "fail", "rate": round(rate, 3), "count": count,
                "baseline": round(self.baseline, 3), "floor": round(floor, 3),
                "window": [round(start, 3), round(end, 3)]}

    # -- the hypothesis -------------------------------------------------------------------------------------------
    async def check(self, services: list[str], since: float | None = None) -> Verdict:
        checks = {"health": await self.health(),
                  "containers": await asyncio.to_thread(self.containers, services),
                  "throughput": await asyncio.to_thread(self.throughput, time.time(), since),
                  "shop": await self.shop()}
        return Verdict(combine(checks), checks)

    async def before(self, services: list[str]) -> Verdict:
        return await self.check(services)

    async def after(self, services: list[str], undone_at: float,
                    injected_since: Callable[[], str | None] | None = None) -> Verdict:
        """Check every second until the hypothesis holds or `settle` s pass; the verdict says how long it took.
        The throughput check waits until a full window of records after the undo exists (if settle allows).
        `injected_since()` names a fault injected after this undo, if any: the wait ends there, and a verdict that
        has not passed by then is `cut`."""
        began = time.monotonic()
        deadline = began + self.settings.settle
        window_ready = undone_at + self.settings.flush_lag + self.settings.window
        while True:
            verdict = await self.check(services, since=undone_at)
            verdict.waited = time.monotonic() - began
            waiting_for_window = (verdict.checks["throughput"].get("why", "").startswith("less than")
                                  and window_ready <= time.time() + (deadline - time.monotonic()))
            if verdict.outcome == "pass" and not waiting_for_window:
                return verdict
            other = injected_since() if injected_since is not None else None
            if other is not None:
                if verdict.outcome != "pass":
                    verdict.outcome, verdict.cut_by = "cut", other
                return verdict
            if time.monotonic() >= deadline:
                return verdict
            if verdict.outcome == "skipped" and not waiting_for_window:
                return verdict
            await asyncio.sleep(POLL_SECONDS)


__all__ = ["ShopTarget", "SteadyStateProbe", "Verdict", "answered_rate", "combine"]
