"""The analysis notebook over a run folder, executed by papermill and published as HTML (and PDF)."""

from __future__ import annotations

import json
import re

from lab.evidence.audit_rules import AuditResult, RuleResult, write_audit
from lab.load.recorder import AttemptRecord, Recorder, RequestRecord
from lab.report.publish import chromium, report_run


def synthetic_run(run_dir, n: int = 40, t0: float = 1_700_000_000.0):
    """A run folder written with the lab's own writers (what a real run writes, minus the stack)."""
    with Recorder.requests(run_dir, "synthetic") as requests, Recorder.attempts(run_dir, "synthetic") as attempts:
        for i in range(n):
            scheduled = t0 + i * 0.25
            outcome = "failed" if i % 10 == 9 else "purchased"
            attempts.record(AttemptRecord(attempt_id=f"a{i}", buyer="b", journey="api", scheduled=scheduled,
                                          start=scheduled, end=scheduled + 0.2 + (i % 5) * 0.05, outcome=outcome,
                                          order_code=None if outcome == "failed" else f"C{i:04d}",
                                          error_kind="timeout" if outcome == "failed" else None))
            requests.record(RequestRecord(attempt_id=f"a{i}", buyer="b", journey="api", step="order",
                                          method="POST", url_path="/api/v1/x", scheduled=scheduled,
                                          start=scheduled, end=scheduled + 0.2, status=0 if outcome == "failed"
                                          else 201, outcome="error" if outcome == "failed" else "ok",
                                          error_kind="timeout" if outcome == "failed" else None))
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_dir.name, "started": t0, "ended": t0 + n * 0.25,
                                                  "journey": "api", "workload": "constant 4/s for 10 s"}))
    empty = RuleResult(count=0, unit="", rows=[], truncated=False)
    write_audit(AuditResult(lost=empty, ghost=empty, duplicate=empty, oversold=empty, false_availability=empty,
                            totals={}), run_dir)
    return run_dir


def test_analysis_notebook_publishes_html_with_every_figure_and_no_code(tmp_path, monkeypatch):
    monkeypatch.setenv("PRETIX_LAB_REPORTS", str(tmp_path / "reports"))
    run = synthetic_run(tmp_path / "20261128T000000Z-synthetic-api")
    html = report_run(run, pdf=False)
    text = html.read_text()
    images = re.findall(r'<img[^>]+src="data:image/png;base64,', text)
    assert len(images) == 4, len(images)  # capacity step (first page and its section), buyers timeline, resources
    assert "Traceback" not in text and "from lab.analysis" not in text  # no code cells, no error output
    assert "failed attempts" in text and "10.00%" in text  # the verdicts are computed from the data
    assert (run / "notebooks" / "04-analysis.ipynb").exists()  # the executed copy is kept with the run


def test_pdf_has_pages_and_text(tmp_path, monkeypatch):
    monkeypatch.setenv("PRETIX_LAB_REPORTS", str(tmp_path / "reports"))
    run = synthetic_run(tmp_path / "20261128T000000Z-synthetic-api")
    report_run(run, pdf=True)
    pdf = (tmp_path / "reports" / run.name / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 1 and len(pdf) > 10_000
    assert chromium() is not None
