"""04-analysis over a study folder and 05-compare over two runs, executed by papermill and published as HTML:
every figure renders, no code or error shows, and the numbers published are the ones the functions compute."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from study_fixture import build_study

from lab.analysis.compare import compare_sentences, compare_table, load_compared
from lab.analysis.summary import summarise
from lab.report.publish import execute_notebook, to_html


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("r") / "study")


def _images(text: str) -> int:
    return len(re.findall(r'<img[^>]+src="data:image/png;base64,', text))


def test_study_report_publishes_every_section_with_computed_numbers(study, tmp_path):
    notebook = execute_notebook("04-analysis.ipynb", tmp_path, {"study_dir": str(study), "plan_per_min": 1200.0})
    text = to_html(notebook, tmp_path / "index.html").read_text()
    # capacity; traffic, resources, gauges of the faults run; per-fault latency; CPU per purchase
    assert _images(text) == 6
    assert "Traceback" not in text and "from lab.analysis" not in text and "summarise(" not in text
    expected = summarise(study, extra_targets=[1200.0])
    assert "Verdict: FAIL" in text
    for verdict in expected.verdicts:
        assert verdict.measured.replace("<", "&lt;") in text or verdict.measured in text, verdict
    for sentence in expected.meaning():
        assert sentence.split(":")[0] in text
    for section in ("Environment", "Capacity", "Timelines", "Faults", "Capacity planning", "What it means"):
        assert f">{section}" in text
    assert "Traffic control" not in text  # no run of kind overload
    assert "Synthetic CPU 9000" in text and "kill pretix-web-1" in text
    assert "Cores per module at 1200 purchases/min" in text
    headline = json.loads((study / "headline.json").read_text())
    want = expected.headline()
    for key in ("passed", "runs", "throughput_per_min", "throughput_run", "p95_seconds", "cores_for_target",
                "lost", "duplicate", "oversold", "faults"):
        assert headline[key] == want[key], key


def test_compare_notebook_over_two_runs(study, tmp_path):
    runs = [str(study / "runs" / "capacity-4-api"), str(study / "runs" / "faults-api")]
    notebook = execute_notebook("05-compare.ipynb", tmp_path, {"run_dirs": runs})
    text = to_html(notebook, tmp_path / "compare.html").read_text()
    assert _images(text) == 2 and "Traceback" not in text and "compare_table(" not in text
    expected = compare_table(load_compared(runs))
    for sentence in compare_sentences(expected):
        assert sentence.split(":")[0] in text
    assert "load.workload.duration" in text and "f1-kill" in text


def test_traffic_control_section_only_with_overload_runs(study, tmp_path):
    import shutil

    overload = tmp_path / "overload-study"
    shutil.copytree(study / "runs" / "capacity-8-api", overload / "runs" / "capacity-8-api")
    (overload / "study.json").write_text(json.dumps({"runs": [{"run_id": "capacity-8-api", "kind": "overload"}]}))
    notebook = execute_notebook("04-analysis.ipynb", tmp_path, {"study_dir": str(overload)})
    text = to_html(notebook, tmp_path / "index.html").read_text()
    assert "Traffic control under overload" in text and "Traceback" not in text


REAL = Path(__file__).parent / "fixtures" / "real-study"  # runs recorded on this lab (scripts/fixture_from_runs.py)


def test_real_runs_analyse_consistently():
    """A study recorded on the real stack: api capacity steps at 2, 4 and 8/s, a kill of pretix-web-1, web-shop
    closed runs with 2 and 4 buyers (a fifth of them log in) and 4 buyers who all log in, an api run under
    synchronous replication."""
    s = summarise(REAL)
    assert list(s.table["kind"]) == ["capacity"] * 3 + ["faults", "closed", "closed", "login", "load"]
    assert s.table["attempts"].tolist()[:4] == [40, 80, 160, 200]  # the offered load, attempt for attempt
    steps = s.steps.sort_values(["journey", "load"])
    api = steps[steps["journey"] == "api"]
    assert api["load"].tolist() == pytest.approx([120, 240, 480])
    assert (api["throughput_per_min"] <= api["load"] * 1.02).all()  # never more than was offered
    assert steps[steps["journey"] == "shop"]["users"].tolist() == [2, 4]
    assert s.table["lost"].sum() == s.table["duplicate"].sum() == s.table["oversold"].sum() == 0
    fault = s.faults.iloc[0]
    assert fault["action"] == "kill" and fault["target"] == "pretix-web-1" and 9 < fault["fault_seconds"] < 13
    assert bool(fault["recovery_recovered"]) and fault["failed_requests"] > 0  # retried: no attempt failed
    costs = s.journey_costs
    assert costs.loc["api"].idxmax() == "pretix-web" and costs.loc["shop"].idxmax() == "pretix-web"
    assert costs.loc["shop"].sum() > 5 * costs.loc["api"].sum()  # the web shop costs far more than an api order
    assert s.fit_methods["api"].startswith("fitted over") and s.login_source == "measured"
    assert s.login_cost.idxmax() == "pretix-web" and s.login_cost["pretix-web"] > 0.05  # an Argon2 hash


def test_study_report_on_real_runs(tmp_path):
    import shutil

    study = tmp_path / "real-study"
    shutil.copytree(REAL, study)
    notebook = execute_notebook("04-analysis.ipynb", tmp_path, {"study_dir": str(study)})
    text = to_html(notebook, tmp_path / "index.html").read_text()
    # capacity; 3 timelines for each of faults, login and sync runs; per-fault latency; CPU per purchase
    assert _images(text) == 12 and "Traceback" not in text
    expected = summarise(study)
    for verdict in expected.verdicts:
        assert verdict.measured in text, verdict
    assert "AMD EPYC" in text or "not recorded" in text
    assert json.loads((study / "headline.json").read_text())["sustained_per_min"] == pytest.approx(
        expected.headline()["sustained_per_min"])


def test_compare_sync_and_async_replication_on_real_runs(tmp_path):
    names = ("capacity-api-4-api", "sync-api-4-api")
    runs = sorted(str(p) for p in (REAL / "runs").iterdir() if p.name.endswith(names))
    notebook = execute_notebook("05-compare.ipynb", tmp_path, {"run_dirs": runs})
    text = to_html(notebook, tmp_path / "compare.html").read_text()
    table = compare_table(load_compared(runs))
    assert list(table["label"]) == ["async replication", "sync replication"]  # what differs names them
    assert "stack.replication" in text and "sync replication against async replication" in text
    assert _images(text) == 2
