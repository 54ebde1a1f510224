"""The redis master dies under api load (real stack, no mocks): the sentinels promote the replica, pretix and celery
follow them, nothing is lost or sold twice, and the undo (rejoin, failback) leaves the topology as declared."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from lab.faults import read_faults
from lab.faults.catalogue import FaultContext, FaultInstance
from lab.faults.redis import RedisFailover
from lab.load.recorder import read_attempts, read_requests
from lab.pretix.seed import Catalogue
from lab.stack import deploy
from lab.stack.redis_ha import RedisTopology
from lab.stack.topology import long_running

pytestmark = pytest.mark.stack

HEALTHY_WITHIN = 180


def wait_all_healthy(client, timeout: float = HEALTHY_WITHIN) -> float:
    began = time.monotonic()
    rows = {}
    while time.monotonic() < began + timeout:
        rows = {r.service: r for r in deploy.status(client)}
        if all(s in rows and rows[s].state == "running" and rows[s].health in ("healthy", "-") for s in long_running()):
            return time.monotonic() - began
        time.sleep(2)
    raise AssertionError(f"not healthy after {timeout} s: {[(r.service, r.state, r.health) for r in rows.values()]}")


def steps(rows: pd.DataFrame, phase: str) -> dict[str, dict]:
    found = rows[rows["phase"] == phase]
    return {json.loads(d)["step"]: {**json.loads(d), "ok": ok} for d, ok in zip(found["detail"], found["ok"],
                                                                               strict=True)}


def test_killing_the_redis_master_fails_over_loses_nothing_and_the_undo_restores_the_topology(ctx, buyers, tmp_path):
    from lab.evidence.audit_rules import read_audit
    from lab.experiments.run import execute, validate_load

    declared = RedisTopology.of(deploy.saved_params())
    params = validate_load({
        "name": "redis-failover", "journey": "api", "monitor": True,
        "workload": {"model": "constant", "rate": 4, "duration": 40, "grace": 60},
        "faults": {"faults": [{"at": 10, "target": "redis", "action": "redis-failover", "duration": 10}],
                   "steady_state": {"settle": 90}},
    }, Catalogue())
    run_dir = execute(params, ctx.for_run(Catalogue(), buyers=buyers), root=tmp_path)
    meta = json.loads((run_dir / "run.json").read_text())
    rows = read_faults(run_dir)
    with pd.option_context("display.width", 250, "display.max_colwidth", 200):
        print(rows[rows["phase"] != "probe"][["phase", "container", "outcome", "start", "end", "detail"]])
    assert meta["faults"]["error"] is None, meta["faults"]
    outcome = meta["faults"]["faults"][0]
    assert outcome["before"]["outcome"] == "pass" and outcome["after"]["outcome"] == "pass", outcome
    # "undone" includes the web shop's celery path: a cart add answered through its task after the failback
    assert outcome["after"]["checks"]["shop"]["outcome"] == "pass", outcome["after"]["checks"]["shop"]

    inject, undo = steps(rows, "inject"), steps(rows, "undo")
    assert list(inject) == ["check", "kill", "promote", "pretix"] and all(s["ok"] for s in inject.values())
    assert list(undo) == ["rejoin", "failback"] and all(s["ok"] for s in undo.values())
    assert inject["promote"]["master"] == declared.replica and undo["rejoin"]["master"] == declared.replica
    promoted, healthy = inject["promote"]["promoted_after_seconds"], inject["pretix"]["healthy_after_seconds"]
    kill_at = next(start for start, d in zip(rows["start"], rows["detail"], strict=True)
                   if d and json.loads(d).get("step") == "kill")
    requests = read_requests(run_dir)
    orders = requests[(requests["step"] == "order") & (requests["start"] > kill_at)]
    first_201 = orders[orders["status"] == 201]["end"].min() - kill_at
    errors = orders[orders["outcome"] == "error"]
    print(f"redis failover: promoted after {promoted:.2f} s, pretix healthy after {healthy:.2f} s, "
          f"orders again {first_201:.2f} s after the kill; {len(errors)} failed order request(s) "
          f"{errors['error_kind'].value_counts().to_dict()}, failback write pause "
          f"{undo['failback']['write_pause_seconds']} s; order checks after a 5xx: "
          f"{int((requests['step'] == 'order_check').sum())}")
    assert promoted > 0 and healthy >= promoted

    # the declared topology again: redis is the master, redis-replica follows it, the sentinels agree
    fault = RedisFailover(FaultInstance("check", "redis-failover", "redis"), FaultContext(docker=ctx.docker))
    primary, replica = (deploy.container(ctx.docker, s) for s in ("redis", "redis-replica"))
    assert fault.master_addr() == declared.primary
    assert fault.replication(primary)["role"] == "master"
    info = fault.replication(replica)
    assert (info["role"], info["master_host"], info["master_link_status"]) == ("slave", declared.primary, "up")
    assert primary.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"

    # the monitor saw the sentinels name the replica, then the declared master again
    from lab.evidence.monitor.writer import read_metrics

    metrics = read_metrics(run_dir)
    named = set(metrics[(metrics["metric"] == "master")]["labels"])
    assert {f"addr={declared.primary}", f"addr={declared.replica}"} <= named, named
    roles = metrics[metrics["metric"] == "is_master"]
    assert set(roles["service"]) == {"redis", "redis-replica"}

    attempts = read_attempts(run_dir)
    assert len(attempts) >= 160  # 4/s for 40 s, and on while a slow recovery is still being checked
    print(attempts["outcome"].value_counts().to_dict())
    posted = set(requests[(requests["step"] == "order") & (requests["status"] == 201)]["order_code"].dropna())
    behind_5xx = attempts[(attempts["outcome"] == "purchased") & ~attempts["order_code"].isin(posted)]
    print(f"{len(behind_5xx)} order(s) committed behind a 5xx, found by the check instead of bought twice")
    audit = read_audit(run_dir)
    print(audit.describe())
    assert audit.lost.count == 0 and audit.oversold.count == 0, audit.describe()
    assert audit.duplicate.count == 0, audit.describe()  # the journey looks an order up after a 5xx
    print(f"recovered healthy {wait_all_healthy(ctx.docker):.1f} s after the run")
