"""What a PostgreSQL primary kill costs under api load, asynchronous vs synchronous replication, measured.

For each mode: converge the stack to it (only the PostgreSQL nodes are recreated), run the api journey at a
constant rate with a `pg-failover` fault through lab.experiments.run.execute (so the run folder is an ordinary one the
report can read), then take from the run's own records: attempts, failed, lost / ghost / duplicate / oversold
(audit), the promotion time, and the write outage (first to last failed order request around the fault).
Nothing is assumed about what asynchronous replication loses: it is counted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.evidence.audit_rules import read_audit
from lab.faults import analyse_faults, read_faults
from lab.load.recorder import read_attempts, read_requests


@dataclass
class FailoverFigures:
    replication: str
    run_dir: str
    rate: float
    attempts: int
    purchased: int
    failed: int
    stuck_key_recoveries: int
    lost: int
    ghost: int
    duplicate: int
    oversold: int
    promoted_in: float | None  # s, pg_promote() until the replica writes
    write_outage: float  # s, first to last failed order request around the fault (0: none failed)
    writes_back_after: float | None  # s from the kill to the first order written by a request sent after it
    time_to_recover: float  # s from the kill until answered attempts/s are back within 10 %

    def line(self) -> str:
        promoted = f"{self.promoted_in:.2f}" if self.promoted_in is not None else "-"
        return (f"{self.replication:6} {self.attempts:8d} {self.purchased:9d} {self.failed:6d} "
                f"{self.stuck_key_recoveries:6d} {self.lost:4d} {self.ghost:5d} {self.duplicate:9d} "
                f"{self.oversold:8d} {promoted:>11} {_num(self.writes_back_after):>11} {self.write_outage:12.2f} "
                f"{self.time_to_recover:10.1f}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


HEADER = (f"{'mode':6} {'attempts':>8} {'purchased':>9} {'failed':>6} {'stuck':>6} {'lost':>4} {'ghost':>5} "
          f"{'duplicate':>9} {'oversold':>8} {'promoted s':>11} {'writes in s':>11} {'error span s':>12} "
          f"{'recover s':>10}")


def figures_of(run_dir: Path, replication: str, rate: float) -> FailoverFigures:
    """The figures of one failover run, from its folder alone."""
    attempts, requests, faults = read_attempts(run_dir), read_requests(run_dir), read_faults(run_dir)
    audit = read_audit(run_dir)
    promoted, killed = None, None
    injects = faults[faults["phase"] == "inject"]
    for detail, start in zip(injects["detail"], injects["start"], strict=True):
        step = json.loads(detail) if detail else {}
        if step.get("step") == "kill":
            killed = float(start)
        if step.get("step") == "promote" and "promoted in " in step.get("output", ""):
            promoted = float(step["output"].split("promoted in ")[1].split(" s")[0])
    writes_back = None
    if killed is not None:
        written = requests[(requests["step"] == "order") & (requests["status"] == 201) & (requests["start"] >= killed)]
        writes_back = float(written["end"].min() - killed) if not written.empty else None
    table = analyse_faults(faults, attempts, requests)
    row = table.iloc[0] if not table.empty else None
    gap = 0.0
    if row is not None and row.get("failed_requests", 0):
        gap = float(row["request_errors_to"] - row["request_errors_from"])
    return FailoverFigures(
        replication=replication, run_dir=str(run_dir), rate=rate, attempts=len(attempts),
        purchased=int((attempts["outcome"] == "purchased").sum()),
        failed=int((~attempts["outcome"].isin(["purchased", "sold_out"])).sum()),
        stuck_key_recoveries=int(requests.loc[requests["step"] == "order_lookup", "attempt_id"].nunique()),
        lost=audit.lost.count, ghost=audit.ghost.count, duplicate=audit.duplicate.count,
        oversold=audit.oversold.count, promoted_in=promoted, write_outage=gap, writes_back_after=writes_back,
        time_to_recover=float(row["recovery_time_to_recover"]) if row is not None else float("nan"),
    )


def bench_failover(modes: tuple[str, ...], rate: float, seconds: float, kill_at: float,
                   log=print) -> list[FailoverFigures]:
    """Deploy (or converge) in each replication mode in turn and kill the primary under load; the stack stays up,
    in the last mode."""
    from lab.experiments.context import LabContext
    from lab.experiments.run import execute, validate_load
    from lab.pretix.seed import Catalogue, CustomerSeed
    from lab.stack import deploy
    from lab.stack.params import StackParams

    catalogue = Catalogue()
    results = []
    for mode in modes:
        deploy.up(StackParams(replication=mode), log=log)
        ctx = LabContext.load()
        buyers, _ = ctx.customers(CustomerSeed(count=300, login_pool=10), log=log)
        params = validate_load({
            "name": f"failover-{mode}", "journey": "api", "monitor": True,
            "workload": {"model": "constant", "rate": rate, "duration": seconds, "grace": 60},
            "faults": {"faults": [{"at": kill_at, "target": "postgres-primary", "action": "pg-failover",
                                   "duration": 10}], "steady_state": {"settle": 120}},
        }, catalogue)
        run_dir = execute(params, ctx.for_run(catalogue, buyers=buyers), log=log)
        results.append(figures_of(run_dir, mode, rate))
    return results


def as_dicts(results: list[FailoverFigures]) -> list[dict]:
    return [asdict(r) for r in results]
