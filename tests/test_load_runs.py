"""Notebook 02-load's runs come from one tested call (issue 14, part 4): the overload scenario is sized from the api
capacity the study measured, else from the highest rate a step kept up with, else from the fallback rate."""

from __future__ import annotations

from pathlib import Path

import nbformat
import yaml
from study_fixture import build_study

from lab.study import params as studies
from lab.study.folder import StudyFolder
from lab.study.load_runs import plan_intro, plan_overload, plan_table, size_overload

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _study(tmp_path: Path, raw: dict | None = None) -> StudyFolder:
    """The synthetic study (api capacity 240/min: the 4/s step is the highest within the SLOs) as a study folder."""
    params = studies.validate({"preset": "test", **(raw or {})}, check_budget=False)
    path = build_study(tmp_path / "study")
    (path / "study.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    return StudyFolder(path, params)


def test_overload_is_sized_from_the_measured_capacity(tmp_path):
    study = _study(tmp_path, {"analysis": {"warmup_seconds": 0}, "overload": {"factor": 2.5}})
    plan = plan_overload(study)
    assert (plan.capacity, plan.rate, plan.source, plan.skipped) == (4.0, 10.0, "within SLO", "")
    assert plan.describe() == "api capacity within the SLOs: 4/s; offering 10/s"


def test_without_a_step_within_the_slo_the_highest_rate_kept_up_with_sizes_it(tmp_path):
    """A p95 SLO no step meets (the synthetic api latency is 0.15 s at best): every step still bought all it was
    offered without errors (the 8/s step late, behind its queue), so the highest, 8/s, sizes the scenario."""
    study = _study(tmp_path, {"analysis": {"warmup_seconds": 0, "slo_p95_seconds": 0.05}})
    plan = plan_overload(study)
    assert (plan.source, plan.capacity, plan.rate) == ("kept up", 8.0, 16.0)
    assert plan.describe().startswith("no api step met its SLOs; the highest rate it kept up with")


def test_without_any_measured_step_the_fallback_rate_is_offered_and_a_disabled_scenario_is_skipped():
    overload = studies.Overload(factor=2.0, fallback_rate=16)
    plan = size_overload(overload, None, [], 0.01)
    assert (plan.rate, plan.capacity, plan.source) == (32.0, None, "fallback")
    off = size_overload(studies.Overload(enabled=False), 5.0, [], 0.01)
    assert off.rate is None and off.describe() == "No overload scenario: disabled in the study."
    missing = size_overload(overload, 5.0, [], 0.01, available=False)
    assert missing.describe() == "No overload scenario: lab.experiments.overload is not in this lab."


def test_the_plan_table_lists_the_notebooks_runs(tmp_path):
    study = _study(tmp_path)
    table = plan_table(study)
    expected = [r.name for r in studies.plan_runs(study.params) if r.notebook == "02-load"]
    assert list(table["run"]) == expected and "faults-api" not in expected and len(expected) > 3
    assert plan_intro(study).startswith("Study `study`, preset `test`: the planned runs")


def test_the_notebook_makes_one_call_for_its_runs():
    """02-load keeps no planning of its own: one run_load call, no run executed or sized in a cell."""
    code = "\n".join(c.source for c in nbformat.read(NOTEBOOKS / "02-load.ipynb", as_version=4).cells
                     if c.cell_type == "code")
    assert code.count("run_load(") == 1
    for planning in ("study.execute(", "run_overload", "kept_up_from", "factor", "api_capacity"):
        assert planning not in code, planning
