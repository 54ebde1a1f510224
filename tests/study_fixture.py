"""A small synthetic study folder written with the lab's own writers (the real schemas), with known answers.

Runs (under <study>/runs/, kinds in <study>/study.json):
- capacity-api at 2, 4 and 8 attempts/s for 20 s: one server of API_CAPACITY purchases/s behind a queue, so the
  8/s step falls behind (saturates) and its latency grows;
- capacity-shop, closed, 2 and 4 buyers for 20 s: each journey takes SHOP_SECONDS (longer with 4 buyers);
- faults: api at 4/s for 40 s, pretix-web-1 killed from 15 s to 25 s: attempts fail in [15, 18) s.
The monitor's counters charge every service a fixed idle rate plus CPU per purchase (API_COST / SHOP_COST), so
CPU per purchase and cores needed are known exactly; every run is audited clean.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from lab.evidence.audit_rules import AuditResult, RuleResult, write_audit
from lab.evidence.monitor.writer import METRICS, MetricWriter
from lab.evidence.runfolder import RunFolder
from lab.faults.record import FaultRecord, fault_recorder
from lab.load.recorder import AttemptRecord, Recorder, RequestRecord

T0 = 1_800_000_000.0
API_CAPACITY = 6.0  # purchases/s the synthetic server completes at most
API_LATENCY = 0.15  # s of service without queueing
SHOP_SECONDS = {2: 2.0, 4: 3.2}  # one journey's duration with that many buyers
API_COST = {"pretix-web-1": 0.024, "pretix-web-2": 0.024, "pretix-worker-1": 0.015, "postgres-primary": 0.012,
            "redis": 0.001, "proxy": 0.002}
SHOP_COST = {"pretix-web-1": 0.2, "pretix-web-2": 0.2, "pretix-worker-1": 0.12, "postgres-primary": 0.15,
             "redis": 0.01, "proxy": 0.005}
IDLE_CORES = 0.0  # idle CPU would blur the known answers; real runs have some
FAULT_FROM, FAULT_TO, FAILING_UNTIL = 15.0, 25.0, 18.0
CLEAN = RuleResult(count=0, unit="", rows=[], truncated=False)
ENVIRONMENT = {
    "images": {"pretix-lab/pretix:local": "sha256:" + "a" * 64, "pretix-lab/postgres:local": "sha256:" + "b" * 64},
    "engine": "20.10.24",
    "stack_params": {"https_port": 8443, "web_workers": 2, "worker_concurrency": 2, "replication": "async",
                     "limits": {"pretix-web-1": {"cpus": 1.0, "memory": "1536M"}}},
    "host": {"machine": "x86_64", "cpu_model": "Synthetic CPU 9000", "cpus": 2, "memory_bytes": 24 * 2**30,
             "kernel": "6.1.0", "python": "3.11.2"},
    "packages": {"httpx": "0.28.1", "pandas": "2.3.3"},
    "pretix": "2026.8.0",
}


def _open_api(rate: float, duration: float, t0: float, fail=lambda t: False):
    """(scheduled, end, outcome) of an open workload through one server of API_CAPACITY/s."""
    free = t0
    rows = []
    for i in range(int(rate * duration)):
        scheduled = t0 + i / rate
        if fail(scheduled - t0):
            rows.append((scheduled, scheduled + 1.0, "failed"))
            continue
        start = max(scheduled, free)
        free = start + 1.0 / API_CAPACITY
        rows.append((scheduled, max(start + API_LATENCY, free), "purchased"))
    return rows


def _closed_shop(users: int, duration: float, t0: float):
    seconds = SHOP_SECONDS[users]
    rows = []
    for user in range(users):
        begin = t0 + user * 0.1
        while begin - t0 < duration:
            rows.append((begin, begin + seconds, "purchased"))
            begin += seconds
    return rows


def _write_run(root: Path, name: str, journey: str, kind: str, workload: dict, rows, t0: float,
               faults: list | None = None, login_share: float = 0.2) -> Path:
    run_id = f"{name}-{journey}"
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    cost = API_COST if journey == "api" else SHOP_COST
    with Recorder.requests(run_dir, run_id) as requests, Recorder.attempts(run_dir, run_id) as attempts:
        for i, (scheduled, end, outcome) in enumerate(rows):
            attempt_id = f"{run_id}-{i:05d}"
            failed = outcome == "failed"
            attempts.record(AttemptRecord(attempt_id=attempt_id, buyer=f"b{i}", journey=journey,
                                          scheduled=scheduled, start=scheduled, end=end, outcome=outcome,
                                          order_code=None if failed else f"C{i:05d}",
                                          error_kind="connect" if failed else None))
            steps = ["order"] if journey == "api" else ["event", "cart_add", "confirm"]
            for k, step in enumerate(steps):
                last = k == len(steps) - 1
                requests.record(RequestRecord(
                    attempt_id=attempt_id, buyer=f"b{i}", journey=journey, step=step, method="POST",
                    url_path=f"/{step}", scheduled=scheduled, start=scheduled, end=end, status=0 if failed and last
                    else 200, outcome="error" if failed and last else "ok",
                    error_kind="connect" if failed and last else None))
    ended = max(end for _s, end, _o in rows) + 1.0
    writer = MetricWriter(run_dir / METRICS, run_id)
    purchase_ends = np.sort([end for _s, end, o in rows if o == "purchased"])
    for second in np.arange(t0 - 1.0, ended + 1.0, 1.0):
        bought = float(np.searchsorted(purchase_ends, second, side="right"))
        rate = float(((purchase_ends > second - 1) & (purchase_ends <= second)).sum())
        for service, per in cost.items():
            writer.add((second, service, f"lab-{service}", "cpu_seconds", 100.0 + IDLE_CORES * (second - t0)
                        + per * bought, ""))
            writer.add((second, service, f"lab-{service}", "cpu_cores", per * rate, ""))
            writer.add((second, service, f"lab-{service}", "memory_bytes", (300 + 10 * rate) * 2**20, ""))
            writer.add((second, service, f"lab-{service}", "memory_limit_bytes", 1536 * 2**20, ""))
        writer.add((second, "monitor", "monitor", "cpu_seconds", 5.0 + 0.01 * (second - t0), ""))
        writer.add((second, "redis", "lab-redis", "celery_queue_length_total", float(rate // 3), ""))
        writer.add((second, "postgres-primary", "lab-postgres-primary", "lock_waits", float(rate > 5), ""))
        writer.add((second, "postgres-primary", "lab-postgres-primary", "replication_lag_bytes", 2048.0 * rate,
                    "application_name=replica"))
    writer.flush()
    schedule = None
    if faults:
        schedule = {"faults": faults}
        with fault_recorder(run_dir, run_id) as record:
            for fault in faults:
                fid, inject, undo = fault["id"], t0 + fault["at"], t0 + fault["at"] + fault["duration"]
                common = {"fault_id": fid, "action": fault["action"], "target": fault["target"],
                          "container": f"lab-{fault['target']}"}
                record.record(FaultRecord(**common, phase="probe", probe="before", start=inject - 0.5,
                                          end=inject - 0.4, outcome="pass", ok=True))
                record.record(FaultRecord(**common, phase="inject", start=inject, end=inject + 0.2, ok=True))
                record.record(FaultRecord(**common, phase="undo", start=undo, end=undo + 0.3, ok=True))
                record.record(FaultRecord(**common, phase="probe", probe="after", start=undo + 2, end=undo + 2.1,
                                          outcome="pass", ok=True))
    load = {"name": name, "journey": journey, "workload": workload, "login_share": login_share,
            "faults": schedule}
    folder = RunFolder(run_dir)  # run.json gets the current schema: the real fixtures keep schema 1
    folder.write_once(RunFolder.PARAMS, yaml.safe_dump({"load": load, "stack": ENVIRONMENT["stack_params"]}))
    folder.write_once(RunFolder.ENVIRONMENT, json.dumps(ENVIRONMENT, indent=2))
    folder.write_meta({
        "run_id": run_id, "event": "websummit", "organizer": "lab", "started": t0 - 0.5, "ended": ended,
        "journey": journey, "workload": json.dumps(workload), "summary": None, "interrupted": False,
        "faults": {"t0": t0, "faults": faults or []} if faults else None})
    write_audit(AuditResult(lost=CLEAN, ghost=CLEAN, duplicate=CLEAN, oversold=CLEAN, false_availability=CLEAN,
                            totals={"attempts": len(rows)}), run_dir)
    return run_dir


def build_study(folder: Path) -> Path:
    """Write the synthetic study into `folder` (created) and return it."""
    runs = Path(folder) / "runs"
    kinds = []
    t0 = T0
    for rate in (2, 4, 8):
        workload = {"model": "constant", "rate": rate, "duration": 20}
        path = _write_run(runs, f"capacity-{rate}", "api", "capacity", workload, _open_api(rate, 20, t0), t0)
        kinds.append({"name": f"capacity-{rate}", "kind": "capacity", "journey": "api",
                      "dir": f"runs/{path.name}", "label": f"{rate}/s"})
        t0 += 100
    for users in (2, 4):
        workload = {"model": "closed", "users": users, "duration": 20}
        path = _write_run(runs, f"capacity-shop-{users}", "shop", "capacity", workload,
                          _closed_shop(users, 20, t0), t0)
        kinds.append({"name": f"capacity-shop-{users}", "kind": "capacity", "journey": "shop",
                      "dir": f"runs/{path.name}", "label": f"{users} buyers"})
        t0 += 100
    fault = {"id": "f1-kill", "at": FAULT_FROM, "target": "pretix-web-1", "action": "kill",
             "duration": FAULT_TO - FAULT_FROM}
    path = _write_run(runs, "faults", "api", "faults", {"model": "constant", "rate": 4, "duration": 40},
                      _open_api(4, 40, t0, fail=lambda t: FAULT_FROM <= t < FAILING_UNTIL), t0, faults=[fault])
    kinds.append({"name": "faults", "kind": "faults", "journey": "api", "dir": f"runs/{path.name}",
                  "label": "kill web-1"})
    (Path(folder) / "study.json").write_text(json.dumps({
        "study_id": "20261201-2200-synthetic", "preset": "test", "status": "passed", "started": T0,
        "finished": t0 + 60, "failed": None, "runs": kinds}))
    return Path(folder)
