"""A study always finishes: an audit read that times out is recorded as incomplete, a run that fails is recorded
as failed, and the next run goes on; the analysis and the headline say both (real stack, real pretix)."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from lab.evidence import audit as audit_module
from lab.evidence.audit import AuditReadError, read_with_retries
from lab.evidence.audit_rules import read_audit
from lab.experiments import run as run_module
from lab.study import params as studies
from lab.study.folder import StudyFolder

TINY = studies.PlannedRun(name="tiny-api", kind="capacity", journey="api", label="2/s", notebook="02-load.ipynb",
                          load={"name": "tiny", "journey": "api",
                                "workload": {"model": "constant", "rate": 2, "duration": 3}})


def test_a_read_is_retried_then_reported_with_what_it_was():
    calls = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ReadTimeout("slow")
        return 7

    assert read_with_retries(flaky, "availability", tries=3, pause=0, log=lambda _: None) == 7
    with pytest.raises(AuditReadError, match=r"^database: ReadTimeout: slow"):
        read_with_retries(lambda: (_ for _ in ()).throw(httpx.ReadTimeout("slow")), "database", tries=2, pause=0,
                          log=lambda _: None)


@pytest.mark.stack
def test_the_idle_stack_drains(ctx):
    from lab.evidence.drain import wait_drained

    drain = wait_drained(ctx.access, ctx.docker, timeout=60)
    print(drain.describe())
    assert drain.drained, drain.describe()
    assert drain.busy == []


@pytest.mark.stack
def test_an_audit_read_that_times_out_and_a_failed_run_do_not_stop_the_study(ctx, buyers, tmp_path, monkeypatch):
    from lab.analysis.summary import summarise

    folder = StudyFolder.create(studies.load(preset="quick", check_budget=False), tmp_path / "runs")
    # pretix's availability API really times out: every read gets a microsecond
    monkeypatch.setattr(audit_module, "AVAILABILITY_TIMEOUT", 1e-6)
    monkeypatch.setattr(audit_module, "READ_TRIES", 2)
    first = folder.execute(ctx, TINY)
    audit = read_audit(folder.path / first["dir"])
    assert audit.incomplete and audit.incomplete.startswith("availability:") and "Timeout" in audit.incomplete
    assert not audit.clean and audit.totals["purchased"] > 0 and audit.lost.count == 0  # the rest was checked
    monkeypatch.undo()

    async def broken(*_args, **_kwargs):
        raise RuntimeError("the generator broke")

    monkeypatch.setattr(run_module, "_drive", broken)
    failed = folder.execute(ctx, dataclasses.replace(TINY, name="broken-api"))
    assert failed["failed"] == "RuntimeError: the generator broke"
    monkeypatch.undo()
    after = folder.execute(ctx, dataclasses.replace(TINY, name="after-api"))
    assert read_audit(folder.path / after["dir"]).clean
    assert [r["name"] for r in folder.runs()] == ["tiny-api", "broken-api", "after-api"]

    summary = summarise(folder.path)
    table = summary.table.set_index("run_id")
    assert table.loc[first["dir"].split("/")[-1], "audit_incomplete"].startswith("availability:")
    assert table.loc[failed["dir"].split("/")[-1], "run_failed"] == "RuntimeError: the generator broke"
    headline = summary.headline()
    assert headline["audit"]["incomplete"] == 1 and headline["failed_runs"] == [failed["dir"].split("/")[-1]]
    audit_verdict = next(v for v in summary.verdicts if v.check.startswith("lost"))
    assert "audit incomplete for 1" in audit_verdict.evidence


def test_client_and_proxy_histories_are_reconciled_request_by_request():
    """Pure: the lab's request rows against the proxy's access rows, by the lab's request id."""
    import pandas as pd

    from lab.evidence.runlogs import reconcile

    client = pd.DataFrame({"request_id": ["lab-a", "lab-b", "lab-c", "lab-d", "lab-d", "lab-f", "lab-g", None],
                           "status": [201, 0, 0, 429, 201, 0, 409, 200]})
    proxy = pd.DataFrame({"request_id": ["lab-a", "lab-b", "lab-d", "lab-d", "lab-e", "lab-f", "lab-g", "0af3"],
                          "status": [201, 499, 429, 201, 201, 201, 201, 200]})
    agree = reconcile(client, proxy)
    assert (agree["client"], agree["proxy"], agree["matched"]) == (7, 7, 6)
    assert agree["client_only"] == {"0": 1}  # cut before it reached the proxy
    assert agree["proxy_only"] == {"201": 1}  # a request the lab sent but did not record: the bug this catches
    assert agree["unanswered_both"] == 1  # lab-b: the client gave up, the proxy logged 499
    assert agree["answer_not_seen"] == {"201": 1}  # lab-f: the proxy answered after the client gave up
    assert agree["status_differs"] == {"409->201": 1}  # lab-g: answered on both sides, differently: a bug


@pytest.mark.stack
def test_every_request_the_lab_sends_is_in_the_proxy_log_and_the_reverse(ctx, buyers, tmp_path):
    """A spike whose tail is cut by a short grace: answered requests agree exactly; what only one side saw is a
    request without an answer (the client's status 0, the proxy's 499)."""
    import json

    from lab.experiments.run import execute, validate_load
    from lab.pretix.seed import Catalogue

    params = validate_load({"name": "agree", "journey": "api", "audit": False,
                            "workload": {"model": "spike", "buyers": 40, "within": 1, "grace": 0.5}}, Catalogue())
    run_dir = execute(params, ctx.for_run(Catalogue(), buyers=buyers), root=tmp_path)
    agree = json.loads((run_dir / "run.json").read_text())["requests_vs_proxy"]
    print(agree)
    assert agree["client"] >= 40 and agree["matched"] >= 1
    assert set(agree["client_only"]) <= {"0"} and set(agree["proxy_only"]) <= {"499"}, agree
    assert agree["status_differs"] == {}, agree


@pytest.mark.stack
def test_the_environment_records_the_pretix_version_read_from_the_running_image(ctx):
    from lab.experiments.run import environment
    from lab.stack.wheelhouse import PRETIX_REQUIREMENTS

    record = environment(ctx.docker)
    pinned = next(p.split("==")[1] for p in PRETIX_REQUIREMENTS if p.startswith("pretix=="))
    assert record["pretix"] == pinned, record["pretix"]
