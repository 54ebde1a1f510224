"""Admission control on the real stack: limits applied live at the proxy, refusals fast with Retry-After, queued
buyers who wait and buy, and a capacity search that finds a limit the test itself sets. Off again afterwards."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

from lab.analysis.traffic import fairness
from lab.evidence.audit_rules import read_audit
from lab.experiments.capacity import SearchSettings, measure, search
from lab.experiments.run import execute, validate_load
from lab.load.http import CLIENT_HEADER
from lab.load.recorder import read_attempts, read_requests
from lab.pretix.seed import Catalogue
from lab.stack import admission

pytestmark = pytest.mark.stack


@pytest.fixture(autouse=True)
def back_to_off(ctx):
    """Whatever a test does, the proxy admits everyone again afterwards (and says so)."""
    yield
    admission.apply(admission.OFF, docker_client=ctx.docker, access=ctx.access)
    assert admission.current() == admission.OFF
    state = httpx.get(f"{ctx.access.base_url}/lab-admission-state", verify=ctx.access.tls(), timeout=5).text
    assert state.startswith("off ")


async def _fire(ctx, path: str, rate: float, seconds: float, client: str) -> list[tuple[int, float, httpx.Headers]]:
    """GET `path` at a constant rate as one client; (status, seconds, headers) of each request."""
    results: list[tuple[int, float, httpx.Headers]] = []
    headers = {"Authorization": f"Token {ctx.access.api_token}", CLIENT_HEADER: client}
    async with httpx.AsyncClient(base_url=ctx.access.base_url, verify=ctx.access.tls(), headers=headers,
                                 timeout=30) as http:
        async def one() -> None:
            began = time.perf_counter()
            response = await http.get(path)
            results.append((response.status_code, time.perf_counter() - began, response.headers))

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return results


def test_rate_limit_refuses_a_burst_fast_with_retry_after_and_admitted_requests_keep_their_latency(ctx):
    path = f"/api/v1/organizers/{ctx.access.organizer}/"  # a cheap pretix page (one row from PostgreSQL)
    asyncio.run(_fire(ctx, path, 4, 1, "warm-up"))
    baseline = asyncio.run(_fire(ctx, path, 4, 5, "baseline"))
    assert all(status == 200 for status, _, _ in baseline)
    base = np.array([secs for _, secs, _ in baseline])

    limit, burst, seconds = 4.0, 4, 3.0
    admission.apply({"mode": "rate", "rate": limit, "burst": burst}, docker_client=ctx.docker, access=ctx.access)

    async def both():
        return await asyncio.gather(_fire(ctx, path, 40, seconds, "greedy"), _fire(ctx, path, 2, seconds, "calm"))

    greedy, calm = asyncio.run(both())
    admitted = np.array([secs for status, secs, _ in greedy if status == 200])
    refused = [(secs, h) for status, secs, h in greedy if status == 429]
    assert len(admitted) + len(refused) == len(greedy)  # nothing but admissions and refusals
    assert burst <= len(admitted) <= burst + limit * seconds + 2, len(admitted)
    assert len(refused) >= len(greedy) / 2
    assert all(h.get("retry-after") == "2" and h.get("x-lab-admission") == "queued" for _, h in refused)
    assert all(status == 200 for status, _, _ in calm)  # the limit is per client: a calm buyer is not touched
    refused_secs = np.array([secs for secs, _ in refused])
    ratio = np.percentile(admitted, 95) / np.percentile(base, 95)
    print(f"\nbaseline p50 {np.median(base) * 1000:.1f} ms p95 {np.percentile(base, 95) * 1000:.1f} ms; "
          f"admitted ({len(admitted)}) p95 {np.percentile(admitted, 95) * 1000:.1f} ms = {ratio:.2f}x baseline; "
          f"refused ({len(refused)}) p50 {np.median(refused_secs) * 1000:.1f} ms "
          f"p95 {np.percentile(refused_secs, 95) * 1000:.1f} ms")
    # judged on medians: a p95 of ~16 requests on two shared cores swings with one slow request (it failed CI-like
    # runs at 3x while the medians stayed close); the p95 ratio is printed above
    assert np.median(admitted) < 3 * np.median(base), (np.median(admitted), np.median(base))
    assert np.percentile(refused_secs, 50) < np.percentile(base, 50)  # nginx answers: faster than pretix


@pytest.mark.parametrize(("admission_params", "refusal_status"), [
    ({"mode": "waiting-room", "rate": 2, "burst": 1, "retry_after": 1}, 503),
    ({"mode": "conn", "connections": 1, "per": "all", "retry_after": 1}, 429),
    ({"mode": "queue", "rate": 2, "burst": 1, "retry_after": 30}, 503),
], ids=["waiting-room", "conn", "queue"])
def test_queued_api_buyers_wait_then_buy_and_execute_restores_admission(ctx, buyers, tmp_path, admission_params,
                                                                        refusal_status):
    # 12 buyers/s offered: the waiting room admits 2 new buyers/s, one order in progress at a time ~4-6/s
    params = validate_load({"name": "room", "journey": "api", "monitor": False,
                            "workload": {"model": "constant", "rate": 12, "duration": 2, "grace": 40},
                            "admission": admission_params, "queue": {"max_wait": 30}})
    run_dir = execute(params, ctx.for_run(Catalogue(), buyers=buyers), root=tmp_path)
    assert admission.current() == admission.OFF  # execute restored what was there before
    attempts, requests = read_attempts(run_dir), read_requests(run_dir)
    print("\n" + attempts[["outcome", "queued", "queue_wait"]].describe().to_string())
    assert (attempts["outcome"] == "purchased").all(), attempts["outcome"].value_counts()
    assert (attempts["queued"] > 0).sum() >= len(attempts) / 3
    assert attempts.loc[attempts["queued"] > 0, "queue_wait"].min() >= 1.0  # each waited as told (1 s)
    refusals = requests[requests["outcome"] == "queued"]
    assert set(refusals["status"]) == {refusal_status} and len(refusals) == attempts["queued"].sum()
    # every refused request was retried by the same buyer and one of its requests got through
    assert set(refusals["attempt_id"]) <= set(requests.loc[requests["status"] == 201, "attempt_id"])
    result = read_audit(run_dir)
    assert result.clean, result.describe()
    fcfs = fairness(attempts[attempts["outcome"] == "purchased"])
    print(f"{admission_params['mode']}: FCFS rank correlation {fcfs:.2f}")
    if admission_params["mode"] == "queue":
        # tickets in arrival order, each buyer told its own estimated wait: first come, first served
        assert fcfs >= 0.9, fcfs
        assert attempts["queue_wait"].max() >= 4  # the last of 24 tickets at 2/s waited for its turn, told so


def test_a_browser_without_the_lab_header_keeps_its_place_in_the_queue_with_a_cookie(ctx):
    admission.apply({"mode": "queue", "rate": 0.5, "burst": 0, "retry_after": 30}, docker_client=ctx.docker,
                    access=ctx.access)
    with httpx.Client(base_url=ctx.access.base_url, verify=ctx.access.tls(), timeout=10) as browser, \
            httpx.Client(base_url=ctx.access.base_url, verify=ctx.access.tls(), timeout=10) as later:
        first = browser.get("/lab-admission-probe")
        assert first.status_code == 503 and "lab_ticket" in browser.cookies, first.headers
        ticket, told = int(first.headers["x-lab-ticket"]), int(first.headers["retry-after"])
        assert 1 <= told <= 2 and "Fila de espera" in first.text  # one ticket ahead of it at 0.5/s: 2 s at most
        behind = later.get("/lab-admission-probe")
        assert behind.status_code == 503 and int(behind.headers["x-lab-ticket"]) == ticket + 1
        assert int(behind.headers["retry-after"]) > told  # further back, told to wait longer
        time.sleep(told + 0.2)
        assert browser.get("/lab-admission-probe").status_code == 200  # its turn, recognised by its cookie
        assert later.get("/lab-admission-probe").status_code == 503  # not yet: the head moves at 0.5/s


def test_conn_limit_refuses_only_what_is_beyond_the_requests_in_progress(ctx):
    path = f"/api/v1/organizers/{ctx.access.organizer}/events/"
    admission.apply({"mode": "conn", "connections": 2, "per": "all", "retry_after": 1}, docker_client=ctx.docker,
                    access=ctx.access)

    async def one_at_a_time(client: str, count: int) -> list[int]:
        """A buyer who waits for each answer: never more than one request of its own in progress."""
        headers = {"Authorization": f"Token {ctx.access.api_token}", CLIENT_HEADER: client}
        async with httpx.AsyncClient(base_url=ctx.access.base_url, verify=ctx.access.tls(), headers=headers,
                                     timeout=30) as http:
            return [(await http.get(path)).status_code for _ in range(count)]

    async def two_buyers():
        return await asyncio.gather(one_at_a_time("a", 10), one_at_a_time("b", 10))

    within = asyncio.run(two_buyers())
    assert all(status == 200 for statuses in within for status in statuses), within  # 2 in progress: all pass
    crowd = asyncio.run(_fire(ctx, path, 600, 0.05, "crowd"))  # 30 requests within 50 ms
    admitted = [secs for status, secs, _ in crowd if status == 200]
    refused = [(secs, h) for status, secs, h in crowd if status == 429]
    print(f"\ncrowd of {len(crowd)}: {len(admitted)} admitted, {len(refused)} refused "
          f"(p50 {np.median([s for s, _ in refused]) * 1000:.1f} ms)")
    assert len(admitted) + len(refused) == len(crowd) == 30
    assert len(admitted) >= 2 and len(refused) >= 15
    assert all(h.get("retry-after") == "1" and h.get("x-lab-admission") == "queued" for _, h in refused)


def test_shop_buyers_queue_only_at_the_door_of_the_waiting_room_then_check_out(ctx, buyers, tmp_path):
    params = validate_load({"name": "shop-room", "journey": "shop", "login_share": 0.5, "monitor": False,
                            "workload": {"model": "constant", "rate": 2, "duration": 3, "grace": 60},
                            "admission": {"mode": "waiting-room", "rate": 0.5, "burst": 0, "retry_after": 1},
                            "queue": {"max_wait": 40}})
    run_dir = execute(params, ctx.for_run(Catalogue(), buyers=buyers), root=tmp_path)
    assert admission.current() == admission.OFF
    attempts, requests = read_attempts(run_dir), read_requests(run_dir)
    print("\n" + attempts[["outcome", "queued", "queue_wait"]].describe().to_string())
    assert (attempts["outcome"] == "purchased").all(), attempts[["outcome", "error_kind"]]
    assert (attempts["queued"] > 0).sum() >= len(attempts) / 2  # 2 new buyers/s offered, 0.5/s let in
    refusals = requests[requests["outcome"] == "queued"]
    assert set(refusals["status"]) == {503}
    # a buyer is refused only at the door (its first page, without a cookie), never halfway through a checkout
    first_steps = requests.sort_values("start").groupby("attempt_id")["step"].first()
    assert set(refusals["step"]) <= {"event_page", "login_page"}, set(refusals["step"])
    for attempt_id, own in requests.sort_values("start").groupby("attempt_id"):
        admitted_at = own.loc[own["outcome"] != "queued", "start"].min()
        assert (own.loc[own["outcome"] == "queued", "start"] < admitted_at).all(), attempt_id
        assert first_steps[attempt_id] in ("event_page", "login_page")
    result = read_audit(run_dir)
    assert result.clean, result.describe()


class _ProbeJourney:
    """A buyer that GETs the proxy's /lab-admission-probe (served by nginx under the admission limit)."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def __aenter__(self):
        self.http = httpx.AsyncClient(base_url=self.ctx.access.base_url, verify=self.ctx.access.tls(), timeout=10,
                                      limits=httpx.Limits(max_connections=64))
        return self

    async def __aexit__(self, *exc):
        await self.http.aclose()

    async def __call__(self, attempt):
        response = await self.http.get("/lab-admission-probe", headers={CLIENT_HEADER: attempt.attempt_id})
        attempt.outcome = "purchased" if response.status_code == 200 else (
            "queued" if response.status_code == 429 else "failed")


def test_applied_sets_for_the_block_then_restores_and_skips_what_the_proxy_already_holds(ctx):
    said: list[str] = []
    limit = admission.parse_admission({"mode": "rate", "rate": 5, "burst": 1})
    assert admission.holds(admission.OFF, ctx.access)
    with admission.applied(admission.OFF, docker_client=ctx.docker, access=ctx.access, log=said.append):
        pass
    assert said == []  # off already: no reload either way
    with admission.applied(limit, docker_client=ctx.docker, access=ctx.access, log=said.append):
        assert admission.holds(limit, ctx.access) and not admission.holds(admission.OFF, ctx.access)
    assert len(said) == 2 and admission.holds(admission.OFF, ctx.access)
    # an apply interrupted between writing the files and the reload: written and running differ, so it is redone
    admission.write(limit)
    assert not admission.holds(limit, ctx.access) and not admission.holds(admission.OFF, ctx.access)
    admission.apply(admission.OFF, docker_client=ctx.docker, access=ctx.access, log=said.append, if_changed=True)
    assert len(said) == 3 and admission.holds(admission.OFF, ctx.access)


def test_capacity_search_finds_a_limit_set_at_the_proxy(ctx):
    known = 20.0
    admission.apply({"mode": "rate", "rate": known, "burst": 2, "per": "all"}, docker_client=ctx.docker,
                    access=ctx.access)
    s = SearchSettings(start=5, factor=2, tolerance=0.1, probe_seconds=3, slo_p95=1.0, max_probes=10)
    result = search(lambda rate: measure(lambda: _ProbeJourney(ctx), rate, s.probe_seconds, grace=5), s,
                    journey="probe")
    print("\n" + result.describe() + ": " + ", ".join(f"{p.rate:g}{'+' if p.passed else '-'}" for p in result.probes))
    assert result.capacity is not None
    assert known * 0.8 <= result.capacity <= known * 1.2
