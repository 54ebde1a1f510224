"""Faults against the real stack under real load (no mocks): kill, hang, error and cancellation, failover.

Each load test drives the open executor with the api journey and the fault schedule in the same asyncio loop (what
run.execute will do once it takes a `faults` parameter), then audits the client's history against PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from lab.evidence.audit import audit_run
from lab.experiments.bench_failover import HEADER, figures_of
from lab.faults import (
    Fault,
    FaultActionError,
    analyse_faults,
    faults,
    parse_schedule,
    read_faults,
    run_schedule,
)
from lab.faults.postgres import in_recovery, psql
from lab.load.api import ApiJourney
from lab.load.http import Stepper
from lab.load.recorder import Recorder, read_attempts, read_requests
from lab.load.runner import attempts_to, run_open
from lab.load.workload import ConstantWorkload
from lab.pretix.seed import Catalogue
from lab.stack import deploy
from lab.stack.sql import pretix_sql
from lab.stack.topology import long_running

pytestmark = pytest.mark.stack

HEALTHY_WITHIN = 180  # seconds the stack may take to be all healthy again after a test


@pytest.fixture(scope="module")
def items(ctx):
    ids = ctx.catalogue(Catalogue())
    return {ids["Bilhete Geral"]["item"]: 0.9, ids["Estudante"]["item"]: 0.1}


def wait_all_healthy(client, timeout: float = HEALTHY_WITHIN) -> float:
    """Seconds until every long-running service runs and is healthy (bounded)."""
    began = time.monotonic()
    deadline = began + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = {r.service: r for r in deploy.status(client)}
        if all(s in rows and rows[s].state == "running" and rows[s].health in ("healthy", "-")
               for s in long_running()):
            return time.monotonic() - began
        time.sleep(2)
    raise AssertionError(f"the stack is not healthy after {timeout} s: "
                         f"{[(r.service, r.state, r.health) for r in rows.values()]}")


def under_load(ctx, buyers, items, run_dir: Path, schedule, rate: float, seconds: float) -> tuple:
    """The api journey at `rate`/s for at least `seconds` s with the schedule alongside (run.FaultsAlongside:
    the load goes on until the last after-undo check is done, however slow the recovery); returns (summary,
    schedule result, t0). Both start from one t0; the load and the faults record into run_dir."""
    from lab.experiments.run import FaultsAlongside

    access = ctx.access
    run_id = run_dir.name
    run_dir.mkdir(parents=True)
    workload = ConstantWorkload(rate=rate, duration=seconds, grace=60)
    faults = FaultsAlongside(parse_schedule(schedule), ctx.docker, run_dir, run_id, access)

    async def both():
        with Recorder.requests(run_dir, run_id) as requests, Recorder.attempts(run_dir, run_id) as attempts:
            journey = ApiJourney(access.base_url, access.tls(), access.api_token, access.organizer, "techpt26",
                                 Stepper(requests, "api"), buyers, items)
            async with journey:
                summary = await faults.alongside(workload, lambda w, stop: run_open(
                    w, journey, on_event=attempts_to(attempts, "api"), stop=stop))
                return summary, faults.result, faults.t0

    return asyncio.run(both())


def report(run_dir: Path) -> pd.DataFrame:
    """Print and return the per-fault analysis (the figures the report quotes)."""
    table = analyse_faults(read_faults(run_dir), read_attempts(run_dir), read_requests(run_dir))
    columns = ["fault_id", "fault_seconds", "failed_attempts", "failed_requests", "request_errors_from",
               "request_errors_to", "recovery_pre_rate", "recovery_min_rate", "recovery_time_to_recover",
               "recovery_after_undo", "latency_before_p50", "latency_before_p95", "latency_during_p50",
               "latency_during_p95", "latency_during_p99", "steady_before", "steady_after"]
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table[[c for c in columns if c in table]].T)
    return table


def undo_rows(run_dir: Path, fault_id: str) -> pd.DataFrame:
    rows = read_faults(run_dir)
    return rows[(rows["fault_id"] == fault_id) & (rows["phase"] == "undo")]


# --- a web instance dies under load: nothing is lost ---------------------------------------------------------------

def _pretix_sql(ctx, sql: str) -> str:
    return pretix_sql(ctx.docker, sql)


def stuck_key_recoveries(ctx, run_dir: Path) -> list[str]:
    """Attempts whose idempotency key pretix left locked (the request died with the process): each one looked its
    order up by its attempt id after the 409s and either found it or went on under a new key, and ended purchased.
    pretix's record of the first key stays locked without a response (it never expires). Returns their ids."""
    requests = read_requests(run_dir)
    attempts = read_attempts(run_dir).set_index("attempt_id")
    stuck = sorted(set(requests.loc[requests["step"] == "order_lookup", "attempt_id"]))
    for attempt_id in stuck:
        tries = requests[requests["attempt_id"] == attempt_id].sort_values("start")
        assert (tries["status"] == 409).any(), tries
        assert attempts.loc[attempt_id, "outcome"] == "purchased", tries
        record = _pretix_sql(ctx, "select response_code, locked is not null from pretixapi_apicall "
                                  f"where idempotency_key = '{attempt_id}'")
        assert record == "0|t", f"attempt {attempt_id}: idempotency record {record!r}"
        found = "found by lookup" if tries["idempotency_key"].nunique() == 1 else "bought under a new key"
        print(f"  {attempt_id}: key locked for good; {found}: {attempts.loc[attempt_id, 'order_code']}")
    return stuck


@pytest.mark.parametrize("signal", ["SIGKILL"])  # SIGTERM (a clean stop) is the easier case; measured in README
def test_killing_a_web_instance_under_api_load_loses_nothing(ctx, buyers, items, tmp_path, signal):
    """Through `run.execute` (load, faults, monitor, audit in one run). SIGTERM (a stop: gunicorn finishes what
    it took) and SIGKILL (a crash) both: 0 lost, 0 duplicates, 0 failed attempts. After a crash, a request that was in
    flight on the killed instance leaves its idempotency key locked for good (pretix commits the key before the view
    runs); the journey's stuck-key recovery must turn each of those into a purchase, not a failure or a duplicate."""
    from lab.evidence.audit_rules import read_audit
    from lab.experiments.run import execute, validate_load

    params = validate_load({
        "name": f"kill-{signal.lower()}", "journey": "api", "monitor": False,
        "workload": {"model": "constant", "rate": 4, "duration": 40, "grace": 60},
        "faults": {"faults": [{"at": 10, "target": "pretix-web-1", "action": "kill", "duration": 10,
                               "options": {"signal": signal}}], "steady_state": {"settle": 90}},
    }, Catalogue())
    run_dir = execute(params, ctx.for_run(Catalogue(), buyers=buyers), root=tmp_path)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["faults"]["error"] is None and len(meta["faults"]["faults"]) == 1, meta["faults"]
    outcome = meta["faults"]["faults"][0]
    assert outcome["before"]["outcome"] == "pass" and outcome["after"]["outcome"] == "pass", outcome
    t0 = meta["faults"]["t0"]
    attempts = read_attempts(run_dir)
    assert len(attempts) >= 160  # 4/s for 40 s, and on while a slow recovery is still being checked
    audit = read_audit(run_dir)
    print(audit.describe())
    assert audit.clean and audit.lost.count == 0 and audit.duplicate.count == 0, audit.describe()
    failed = attempts[attempts["outcome"] != "purchased"]
    print(f"{signal}: {len(failed)} failed attempt(s):", failed[["error_kind", "retries"]].to_dict("records"))
    assert failed.empty, failed
    stuck = stuck_key_recoveries(ctx, run_dir)
    print(f"{signal}: {len(stuck)} attempt(s) recovered from a stuck key")
    if signal == "SIGTERM":
        assert not stuck  # a graceful stop leaves no key locked
    rows = read_faults(run_dir)
    kill = rows[(rows["phase"] == "inject")].iloc[0]
    assert kill["ok"] and kill["container"] == deploy.container(ctx.docker, "pretix-web-1").name
    assert undo_rows(run_dir, "f1-kill")["ok"].all()
    assert kill["start"] - t0 == pytest.approx(10, abs=1.5)  # on the run's clock (time.time())
    table = report(run_dir).set_index("fault_id")
    assert table.loc["f1-kill", "failed_attempts"] == 0
    wait_all_healthy(ctx.docker)


# --- a web instance hangs, then comes back ---------------------------------------------------------------------------

def test_pausing_a_web_instance_then_unpausing_restores_health(ctx, buyers, items, tmp_path):
    run_dir = tmp_path / "pause-web"
    schedule = {"faults": [{"at": 10, "target": "pretix-web-2", "action": "pause", "duration": 10}],
                "steady_state": {"settle": 90}}
    summary, result, t0 = under_load(ctx, buyers, items, run_dir, schedule, rate=3, seconds=38)
    print(summary.describe())
    print(result.describe())
    outcome = result.faults[0]
    assert outcome.after.outcome == "pass", outcome.after
    web2 = deploy.container(ctx.docker, "pretix-web-2")
    assert web2.status == "running"
    r = httpx.get(f"{ctx.access.base_url}/healthcheck/", verify=ctx.access.tls(), timeout=10)
    assert r.status_code == 200
    undo = undo_rows(run_dir, "f1-pause").iloc[0]
    assert undo["ok"] and json.loads(undo["detail"])["unpaused"] is True
    assert undo["start"] - t0 == pytest.approx(20, abs=2)
    attempts = read_attempts(run_dir)
    print(attempts["outcome"].value_counts().to_dict())
    audit = audit_run(run_dir, ctx.docker, ctx.access, ctx.access.organizer, "techpt26", since=t0 - 5)
    print(audit.describe())
    assert audit.lost.count == 0 and audit.duplicate.count == 0, audit.describe()
    report(run_dir)
    wait_all_healthy(ctx.docker)


# --- undo always runs: after an error, after a cancellation ---------------------------------------------------------

class _Explode(Fault):
    """A plugin fault that fails when it acts (to break a schedule in the middle of another fault)."""

    def apply(self, container):
        raise RuntimeError("boom: the experiment broke in the middle")

    def revert(self, container, state):
        return {}


def test_undo_runs_after_an_error_in_the_middle_of_a_fault(ctx, tmp_path):
    faults.register("test-explode", _Explode)
    try:
        schedule = parse_schedule({"faults": [
            {"at": 0, "target": "pretix-web-2", "action": "kill", "duration": 120},
            {"at": 3, "target": "redis", "action": "test-explode", "duration": 1},
        ], "steady_state": {"throughput": False}})
        began = time.monotonic()
        with pytest.raises(FaultActionError, match="boom"):
            asyncio.run(run_schedule(schedule, ctx.docker, tmp_path, access=ctx.access))
        assert time.monotonic() - began < 60  # the kill was undone long before its 120 s
    finally:
        faults.unregister("test-explode")
    web2 = deploy.container(ctx.docker, "pretix-web-2")  # raises unless it runs again
    assert web2.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    undo = undo_rows(tmp_path, "f1-kill")
    assert len(undo) == 1 and undo.iloc[0]["ok"], undo
    assert json.loads(undo.iloc[0]["detail"])["reason"] in ("cancelled", "error")
    rows = read_faults(tmp_path)
    boom = rows[(rows["fault_id"] == "f2-test-explode") & (rows["phase"] == "inject")].iloc[0]
    assert boom["outcome"] == "error" and "boom" in boom["error"]
    assert rows[rows["phase"] == "undo"]["start"].min() > boom["end"] - 0.01
    print(f"recovered healthy {wait_all_healthy(ctx.docker):.1f} s after the undo")


def test_cancelling_the_schedule_undoes_the_active_fault(ctx, tmp_path):
    async def cancel_after(seconds: float):
        task = asyncio.create_task(run_schedule(
            {"faults": [{"at": 0, "target": "pretix-web-1", "action": "pause", "duration": 300}],
             "steady_state": {"throughput": False}}, ctx.docker, tmp_path, access=ctx.access))
        await asyncio.sleep(seconds)
        task.cancel()  # what Ctrl-C does to the main task under asyncio.run
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_after(4))
    web1 = deploy.container(ctx.docker, "pretix-web-1")
    assert web1.status == "running"  # not paused
    undo = undo_rows(tmp_path, "f1-pause").iloc[0]
    assert undo["ok"] and json.loads(undo["detail"])["reason"] == "cancelled"
    wait_all_healthy(ctx.docker)


# --- the PostgreSQL primary dies: failover, rebuild, failback (destructive: runs last) -------------------------------

@pytest.mark.teardown
def test_killing_the_sync_primary_loses_nothing_and_the_undo_restores_the_topology(ctx, buyers, items, tmp_path):
    """Synchronous replication (the stack converged to it here: only the PostgreSQL nodes are recreated): the
    primary is killed under api load, the replica promoted; 0 lost, 0 duplicated, 0 failed attempts, the failover
    time recorded; the undo rebuilds a standby, switches back and rebuilds the replica (the declared topology)."""
    from lab.stack.params import StackParams

    assert deploy.up(StackParams(replication="sync"), log=print).migrations == "kept"
    primary = deploy.container(ctx.docker, "postgres-primary")
    assert "FIRST 1" in psql(primary, "show synchronous_standby_names")
    assert "sync" in psql(primary, "select sync_state from pg_stat_replication")
    run_dir = tmp_path / "pg-failover-sync"
    schedule = {"faults": [{"at": 15, "target": "postgres-primary", "action": "pg-failover", "duration": 10}],
                "steady_state": {"settle": 120}}
    # the undo (rebuild, switch back, rebuild) ends about 20 s after the kill: 15 s of load follow it
    summary, result, t0 = under_load(ctx, buyers, items, run_dir, schedule, rate=3, seconds=50)
    print(summary.describe())
    print(result.describe())
    rows = read_faults(run_dir)
    with pd.option_context("display.width", 250, "display.max_colwidth", 200):
        print(rows[rows["phase"] != "probe"][["phase", "container", "outcome", "start", "end", "detail"]])
    assert result.ok, result.describe()
    steps = rows[rows["phase"] == "undo"]["detail"].map(lambda d: json.loads(d)["step"]).tolist()
    assert steps == ["rebuild-standby", "switchover", "rebuild-replica"]
    primary = deploy.container(ctx.docker, "postgres-primary")
    replica = deploy.container(ctx.docker, "postgres-replica")
    assert not in_recovery(primary) and in_recovery(replica)
    assert psql(primary, "select state, sync_state from pg_stat_replication") == "streaming|sync"
    assert primary.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    wait_all_healthy(ctx.docker)
    attempts = read_attempts(run_dir)
    print(attempts["outcome"].value_counts().to_dict())
    audit = audit_run(run_dir, ctx.docker, ctx.access, ctx.access.organizer, "techpt26", since=t0 - 5)
    print(audit.describe())
    assert audit.lost.count == 0 and audit.duplicate.count == 0 and audit.oversold.count == 0, audit.describe()
    failed = attempts[attempts["outcome"] != "purchased"]
    stuck_key_recoveries(ctx, run_dir)
    assert failed.empty, failed
    report(run_dir)
    figures = figures_of(run_dir, "sync", 3)
    print(HEADER, figures.line(), sep="\n")
    assert figures.promoted_in is not None and figures.writes_back_after is not None  # the failover time, recorded
    from lab.experiments.smoke import place_one_order

    assert place_one_order(ctx.access)["status"] == "n"  # the stack takes orders after the failback


# --- the steady-state hypothesis covers the web shop's celery path ----------------------------------------------------

def test_the_shop_check_passes_through_celery_and_fails_while_the_workers_are_paused(ctx, items):
    """A cart add is answered by a celery task: with both workers paused the check fails (the task is never run),
    and passes again once they are back. API orders would not notice (they never touch celery's results)."""
    from lab.faults.probes import ShopTarget, SteadyStateProbe
    from lab.faults.schedule import SteadyState

    item = max(items, key=items.__getitem__)
    probe = SteadyStateProbe(SteadyState(), t0=time.time(), access=ctx.access, shop=ShopTarget("techpt26", item))
    healthy = asyncio.run(probe.shop())
    print("healthy:", healthy)
    assert healthy["outcome"] == "pass" and healthy["requests"] >= 3, healthy
    workers = [deploy.container(ctx.docker, s) for s in ("pretix-worker-1", "pretix-worker-2")]
    try:
        for worker in workers:
            worker.pause()
        stalled = asyncio.run(probe.shop())
    finally:
        for worker in workers:
            worker.reload()
            if worker.status == "paused":
                worker.unpause()
    print("workers paused:", stalled)
    assert stalled["outcome"] == "fail" and stalled["error"] in ("attempt_timeout", "max_polls"), stalled
    deadline = time.monotonic() + HEALTHY_WITHIN
    again = asyncio.run(probe.shop())
    while again["outcome"] != "pass" and time.monotonic() < deadline:
        time.sleep(2)
        again = asyncio.run(probe.shop())
    assert again["outcome"] == "pass", again
