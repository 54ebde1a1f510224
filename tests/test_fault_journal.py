"""A `lab load` killed with SIGKILL in the middle of its faults leaves them in the fault journal; `lab faults undo`,
a fresh process with none of the killed one's memory, restores every one, and the steady state holds again.

The schedule acts on five services at once: a pause, a CPU throttle, a memory squeeze, a network cut and a kill
with its restart policy at "no". Each is checked as done before the SIGKILL, and as undone after the replay.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.cli.base import INTERRUPTED
from lab.common.world import project
from lab.faults.journal import FaultJournal
from lab.faults.probes import ShopTarget, SteadyStateProbe
from lab.faults.schedule import SteadyState
from lab.pretix.seed import Catalogue
from lab.stack.containers import LABEL_FAULT_HELPER, LABEL_PROJECT, project_containers

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[1]
INJECTED_WITHIN = 120  # seconds `lab load` may take to start and have every fault acting
SCHEDULE = {
    "faults": [
        {"at": 2, "target": "pretix-worker-2", "action": "pause", "duration": 240},
        {"at": 2, "target": "pretix-web-1", "action": "cpu-throttle", "duration": 240, "options": {"cpus": 0.2}},
        {"at": 2, "target": "pretix-cron", "action": "memory-squeeze", "duration": 240,
         "options": {"headroom_mib": 64}},
        {"at": 2, "target": "pretix-web-2", "action": "partition", "duration": 240},
        {"at": 2, "target": "pretix-worker-1", "action": "kill", "duration": 240},
    ],
    "steady_state": {"throughput": False, "shop": False},
}


def _container(client, service: str):
    [found] = project_containers(client, service)
    found.reload()
    return found


def _looks(client) -> dict[str, object]:
    """What each fault changes, read from the engine."""
    web2_container = _container(client, "pretix-web-2")
    web2 = web2_container.attrs["NetworkSettings"]["Networks"]
    backend = f"{project()}_backend"
    worker1 = _container(client, "pretix-worker-1")
    cron = _container(client, "pretix-cron").attrs["HostConfig"]
    return {
        "worker-2 state": _container(client, "pretix-worker-2").status,
        "web-1 NanoCpus": _container(client, "pretix-web-1").attrs["HostConfig"]["NanoCpus"],
        "cron memory": (cron["Memory"], cron["MemorySwap"]),
        "web-2 backend aliases": sorted(a for a in (web2.get(backend) or {}).get("Aliases") or []
                                        if a != web2_container.id[:12]) if backend in web2 else None,
        "worker-1 state": worker1.status,
        "worker-1 restart policy": worker1.attrs["HostConfig"]["RestartPolicy"]["Name"],
    }


@pytest.fixture(scope="module")
def shop_item(ctx) -> ShopTarget:
    """Where the steady-state check adds to a cart (read before any fault: the API may be slow after one)."""
    catalogue = Catalogue()
    return ShopTarget(catalogue.slug, ctx.catalogue(catalogue)["Bilhete Geral"]["item"])


def _steady(ctx, shop: ShopTarget, services: list[str]):
    """The steady-state hypothesis (health through the proxy, the services' containers healthy, a cart add through
    celery), checked every second until it holds or 180 s pass."""
    probe = SteadyStateProbe(SteadyState(throughput=False, settle=180), t0=time.time(), docker_client=ctx.docker,
                             access=ctx.access, shop=shop)
    return asyncio.run(probe.after(services, time.time()))


def _lab(*args: str, env: dict[str, str], output) -> subprocess.Popen:
    """`python -m lab.cli ...` from this checkout; its output to a file (a full pipe would stall it)."""
    return subprocess.Popen([sys.executable, "-m", "lab.cli", *args], env=env, cwd=ROOT, text=True,
                            stdout=output, stderr=subprocess.STDOUT)


def _start_load(name: str, schedule: dict, tmp_path: Path) -> tuple[subprocess.Popen, Path, dict[str, str]]:
    """`lab load` (api, 1/s for 300 s) with `schedule` in a fresh process: (the process, its log, its env)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PRETIX_LAB_DATA": str(tmp_path / "data")}
    load_log = tmp_path / "load.log"
    load = _lab("load", "--journey", "api", "--name", name,
                "--workload", json.dumps({"model": "constant", "rate": 1, "duration": 300}),
                "--faults", json.dumps(schedule), env=env, output=load_log.open("w"))
    return load, load_log, env


def test_a_killed_load_leaves_its_faults_in_the_journal_and_lab_faults_undo_restores_them(ctx, buyers, shop_item,
                                                                                           tmp_path):
    client = ctx.docker
    journal = FaultJournal()
    assert journal.entries() == ([], []), "the fault journal must start empty"
    before = _looks(client)
    print("before:", before)
    began = time.monotonic()
    load, load_log, env = _start_load("journal-kill", SCHEDULE, tmp_path)
    try:
        deadline = time.monotonic() + INJECTED_WITHIN
        applied: list = []
        while time.monotonic() < deadline and load.poll() is None:
            applied = [r for r in journal.entries()[0] if r.stage == "applied"]
            if len(applied) == len(SCHEDULE["faults"]):
                break
            time.sleep(0.5)
        assert len(applied) == len(SCHEDULE["faults"]), \
            f"not every fault acted: {[r.what() for r in applied]}; lab load exited {load.poll()}"
        injected = time.monotonic() - began
        during = _looks(client)
        print("during:", during)
        assert during["worker-2 state"] == "paused"
        assert during["web-1 NanoCpus"] == 200_000_000
        assert during["cron memory"][0] < before["cron memory"][0]
        assert during["web-2 backend aliases"] is None
        assert during["worker-1 state"] != "running" and during["worker-1 restart policy"] == "no"
    finally:
        load.send_signal(signal.SIGKILL)
        load.wait(timeout=30)
        print(load_log.read_text()[-3000:])
    assert load.returncode == -signal.SIGKILL
    assert len(journal.entries()[0]) == len(SCHEDULE["faults"])  # nothing undone by the killed process

    undo_began = time.monotonic()
    undo = _lab("faults", "undo", env=env, output=subprocess.PIPE)
    out, _ = undo.communicate(timeout=300)
    undo_seconds = time.monotonic() - undo_began
    print(out)
    assert undo.returncode == 0, out
    assert out.count("restored: ") == len(SCHEDULE["faults"]), out
    assert journal.entries() == ([], [])
    after = _looks(client)
    print("after:", after)
    assert after == before and before["worker-1 state"] == "running"

    verdict = _steady(ctx, shop_item, [f["target"] for f in SCHEDULE["faults"]])
    print(f"faults acting {injected:.1f} s after `lab load` started; `lab faults undo` took {undo_seconds:.1f} s; "
          f"steady state {verdict.outcome} after {verdict.waited:.1f} s: {verdict.checks}")
    assert verdict.outcome == "pass", verdict.checks


def test_sigterm_stops_lab_load_and_its_handler_undoes_the_active_fault(ctx, buyers, shop_item, tmp_path):
    """The orderly end of a killed run: SIGTERM (a CI cancel, `timeout`) undoes the pause at once, exits 130."""
    client = ctx.docker
    ready = _steady(ctx, shop_item, ["pretix-worker-2"])  # a slow recovery from an earlier test is not this one's
    assert ready.outcome == "pass", ready.checks
    journal = FaultJournal()
    schedule = {"faults": [{"at": 2, "target": "pretix-worker-2", "action": "pause", "duration": 240}],
                "steady_state": {"throughput": False, "shop": False}}
    load, load_log, _ = _start_load("journal-term", schedule, tmp_path)
    try:
        deadline = time.monotonic() + INJECTED_WITHIN
        while time.monotonic() < deadline and load.poll() is None and not [
                r for r in journal.entries()[0] if r.stage == "applied"]:
            time.sleep(0.5)
        assert _container(client, "pretix-worker-2").status == "paused", load_log.read_text()[-2000:]
        sent = time.monotonic()
        load.send_signal(signal.SIGTERM)
        code = load.wait(timeout=120)
        print(f"lab load ended {time.monotonic() - sent:.1f} s after SIGTERM")
    finally:
        load.kill()
    out = load_log.read_text()
    print(out[-3000:])
    assert code == INTERRUPTED
    assert "SIGTERM: undoing the active faults from the journal" in out
    assert "restored: f1-pause pause on" in out
    assert _container(client, "pretix-worker-2").status == "running"
    assert journal.entries() == ([], [])


# --- a failover left half done: the journal holds the kill, the replay rejoins and fails back ---------------------

def _killed_in_the_middle_of(schedule: dict, ready, tmp_path: Path, name: str,
                             meanwhile=lambda: None) -> tuple[str, float]:
    """`lab load` with a failover fault, SIGKILLed once `ready(record)` holds for its journal record and
    `meanwhile()` has run, then `lab faults undo` in a fresh process; returns the undo's output and its seconds."""
    journal = FaultJournal()
    assert journal.entries() == ([], []), "the fault journal must start empty"
    load, load_log, env = _start_load(name, schedule, tmp_path)
    try:
        deadline = time.monotonic() + INJECTED_WITHIN
        records: list = []
        while time.monotonic() < deadline and load.poll() is None:
            records = journal.entries()[0]
            if records and ready(records[0]):
                break
            time.sleep(0.2)
        assert records and ready(records[0]), \
            f"the failover did not get that far: {[r.state for r in records]}; lab load exited {load.poll()}"
        meanwhile()
    finally:
        load.send_signal(signal.SIGKILL)
        load.wait(timeout=30)
        print(load_log.read_text()[-2000:])
    assert load.returncode == -signal.SIGKILL and len(journal.entries()[0]) == 1
    began = time.monotonic()
    undo = _lab("faults", "undo", env=env, output=subprocess.PIPE)
    out, _ = undo.communicate(timeout=400)
    print(out)
    assert undo.returncode == 0, out
    assert out.count("restored: ") == 1, out
    assert journal.entries() == ([], [])
    return out, time.monotonic() - began


def _cart_adds(ctx, shop: ShopTarget, count: int) -> list[dict]:
    """`count` cart adds through celery one after another (each worker process gets some): their results."""
    probe = SteadyStateProbe(SteadyState(throughput=False), t0=time.time(), docker_client=ctx.docker,
                             access=ctx.access, shop=shop)
    return [asyncio.run(probe.shop()) for _ in range(count)]


def test_a_redis_failover_left_by_a_killed_load_is_failed_back_from_the_journal_and_the_shop_works(
        ctx, buyers, shop_item, tmp_path):
    """Killed after the promotion: the journal says what was killed and who took over; `lab faults undo` (a fresh
    process) rejoins the old master and fails back; then every cart add works, whichever worker process takes it."""
    from lab.faults.catalogue import FaultContext, FaultInstance
    from lab.faults.redis import RedisFailover
    from lab.stack import deploy
    from lab.stack.redis_ha import RedisTopology

    declared = RedisTopology.of(deploy.saved_params())
    schedule = {"faults": [{"at": 2, "target": "redis", "action": "redis-failover", "duration": 240}],
                "steady_state": {"throughput": False, "shop": False}}
    during: list[dict] = []

    def use_the_new_master() -> None:
        """Cart adds while the replica is the master: every worker and web process then holds connections to it,
        which the failback turns into connections to a replica (what used to fail the next task of each)."""
        time.sleep(3)
        during.extend(_cart_adds(ctx, shop_item, 16))

    out, took = _killed_in_the_middle_of(schedule, lambda r: (r.state or {}).get("promoted"), tmp_path,
                                         "journal-redis", use_the_new_master)
    print(f"during the failover: {sum(a['outcome'] == 'pass' for a in during)} of {len(during)} cart adds worked")
    fault = RedisFailover(FaultInstance("check", "redis-failover", "redis"), FaultContext(docker=ctx.docker))
    primary, replica = (_container(ctx.docker, s) for s in ("redis", "redis-replica"))
    assert fault.master_addr() == declared.primary, out
    info = fault.replication(replica)
    assert (info["role"], info["master_host"], info["master_link_status"]) == ("slave", declared.primary, "up")
    assert primary.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    adds = _cart_adds(ctx, shop_item, 16)  # at once: a check that retries until it passes would hide a failure
    failed = [a for a in adds if a["outcome"] != "pass"]
    verdict = _steady(ctx, shop_item, ["redis", "redis-replica"])
    print(f"`lab faults undo` failed back in {took:.1f} s; steady state {verdict.outcome} after {verdict.waited:.1f} s;"
          f" {len(adds) - len(failed)} of {len(adds)} cart adds after it worked; failed: {failed}")
    assert verdict.outcome == "pass", verdict.checks
    assert not failed


def test_a_pg_failover_left_by_a_killed_load_is_rebuilt_and_failed_back_from_the_journal(ctx, buyers, shop_item,
                                                                                         tmp_path):
    """Killed after the promotion and the fence: `lab faults undo` rebuilds the old primary as a standby, switches
    back and rebuilds the replica, from the journal's data alone; the stack takes orders and cart adds again."""
    from lab.experiments.smoke import place_one_order
    from lab.faults.postgres import in_recovery, psql

    schedule = {"faults": [{"at": 2, "target": "postgres-primary", "action": "pg-failover", "duration": 240}],
                "steady_state": {"throughput": False, "shop": False}}
    # `fenced` is journaled just before the fence's helper container starts: the kill may land while it runs
    out, took = _killed_in_the_middle_of(schedule, lambda r: "fenced" in (r.state or {}), tmp_path, "journal-pg")
    helpers = ctx.docker.containers.list(all=True, filters={"label": [f"{LABEL_PROJECT}={project()}",
                                                                      LABEL_FAULT_HELPER]})
    assert helpers == [], [h.name for h in helpers]  # the replay removed a helper the killed run left
    primary, replica = (_container(ctx.docker, s) for s in ("postgres-primary", "postgres-replica"))
    assert not in_recovery(primary), out
    deadline = time.monotonic() + 120  # the rebuilt replica may still be copying the primary when the undo ends
    while time.monotonic() < deadline and psql(primary, "select state from pg_stat_replication") != "streaming":
        time.sleep(1)
    assert in_recovery(replica) and psql(primary, "select state from pg_stat_replication") == "streaming"
    assert primary.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    verdict = _steady(ctx, shop_item, ["postgres-primary", "postgres-replica"])
    print(f"`lab faults undo` rebuilt and failed back in {took:.1f} s; steady state {verdict.outcome} after "
          f"{verdict.waited:.1f} s: {verdict.checks}")
    assert verdict.outcome == "pass", verdict.checks
    assert place_one_order(ctx.access)["status"] == "n"
