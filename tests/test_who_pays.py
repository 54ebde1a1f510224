"""Who pays for an order (unit): the study's comparison record -> the split, the plan and the report's words."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from lab.analysis import efficiency as eff
from lab.analysis import who_pays
from lab.experiments.who_pays import choose_rate
from lab.report import who_pays_text


def _repeat(side: str, repeat: int, per_order: dict[str, float]) -> eff.SideRepeat:
    modules = dict.fromkeys(eff.MODULES, 0.0) | per_order
    return eff.SideRepeat(side, repeat, 240.0, 4.0, 60, modules, 0.8)


def record(rounds: int = 3) -> dict:
    """What lab.experiments.who_pays.measure writes: the stack dearer than alone in web, with a proxy and sentinels."""
    repeats = []
    for r in range(1, rounds + 1):
        repeats.append(_repeat("stack", r, {"web": 0.080 + 0.002 * r, "celery": 0.020, "pg primary": 0.015,
                                            "pg replica": 0.004, "redis": 0.003, "sentinels": 0.006, "proxy": 0.010,
                                            "generator": 0.030}))
        repeats.append(_repeat("alone", r, {"web": 0.060 + 0.002 * r, "celery": 0.018, "pg primary": 0.012,
                                            "redis": 0.002, "generator": 0.029}))
    return {"measured_at": "2026-12-04T03:10:00+00:00", "journey": "api", "rate": 4.0, "seconds": 15,
            "repeats": rounds, "rate_source": "50% of the api capacity (8/s)",
            "summary": {"stack": asdict(eff.summarise("stack", repeats)),
                        "alone": asdict(eff.summarise("alone", repeats))}}


def test_the_split_shows_each_module_and_leaves_the_generator_out_of_the_totals():
    split = who_pays.cost_split(json.loads(json.dumps(record())))  # as read back from efficiency.json
    rows = split.set_index("module")
    assert rows.loc["web", "deployment (ms)"] == pytest.approx(84.0)  # median of 82, 84, 86
    assert (rows.loc["web", "deployment min"], rows.loc["web", "deployment max"]) == pytest.approx((82.0, 86.0))
    assert rows.loc["web", "pretix alone (ms)"] == pytest.approx(64.0)
    assert rows.loc["proxy", "pretix alone (ms)"] == 0.0 and rows.loc["proxy", "added (ms)"] == pytest.approx(10.0)
    assert "cron" not in rows.index  # neither side used it
    assert not rows.loc["generator", "counted"]
    total = who_pays.totals(split)
    assert total["deployment"] == pytest.approx(84 + 20 + 15 + 4 + 3 + 6 + 10)
    assert total["alone"] == pytest.approx(64 + 18 + 12 + 2)
    assert total["ratio"] == pytest.approx(142 / 96)


def test_the_plan_is_in_cores_and_in_multiples_of_pretix_own_cost():
    split = who_pays.cost_split(record())
    plan = who_pays.plan(split, per_min=800, utilisation=0.5).set_index("module")
    assert plan.loc["web", "cores"] == pytest.approx(0.084 * 800 / 60 / 0.5)
    assert plan.loc["web", "x pretix's own cost"] == pytest.approx(84 / 96)
    assert plan.loc["in all", "x pretix's own cost"] == pytest.approx(142 / 96)
    assert plan.loc["in all", "cores"] == pytest.approx(0.142 * 800 / 60 / 0.5)
    assert "generator" not in plan.index
    with pytest.raises(ValueError, match="utilisation"):
        who_pays.plan(split, 800, 0)


def test_the_rate_is_a_share_of_the_measured_capacity_else_the_fallback():
    assert choose_rate(9.0, 0.5, 3.0) == (4.5, "50% of the api capacity (9/s)")
    assert choose_rate(0.4, 0.5, 3.0)[0] == 0.5  # never below half an order per second
    assert choose_rate(None, 0.5, 3.0) == (3.0, "the study's fallback rate (no api capacity measured)")
    assert choose_rate(math.nan, 0.5, 3.0)[0] == 3.0


class _Summary:
    """The two fields the report's words read from a StudySummary."""

    def __init__(self, efficiency):
        from lab.analysis.verdicts import Targets

        self.efficiency, self.targets, self.utilisation = efficiency, Targets(target_per_min=800), 0.7


def test_the_report_says_pretix_own_cost_the_ratio_and_where_the_difference_goes():
    said = who_pays_text.sentences(_Summary(record()))
    assert "2026-12-04 03:10 UTC" in said[0] and "4 api orders/s" in said[0] and "3 times" in said[0]
    assert "pretix's own cost: 96 ms of CPU per order" in said[1] and "142 ms, 1.48x" in said[1]
    assert "add 46 ms per order, the most in web +20 ms, proxy +10 ms, sentinels +6 ms" in said[1]
    assert f"{0.096 * 800 / 60 / 0.7:.1f} cores" in said[2] and f"{0.142 * 800 / 60 / 0.7:.1f}" in said[2]
    view = who_pays_text.split_view(who_pays.cost_split(record()))
    assert view.set_index("module").loc["web", "this deployment"] == "84 (82-86)"
    assert "generator (not counted)" in set(view["module"])


def test_without_a_comparison_the_report_says_why():
    assert who_pays_text.sentences(_Summary(None)) == [who_pays_text.NO_COMPARISON]
    failed = who_pays_text.sentences(_Summary({"error": "AloneError: no port"}))
    assert len(failed) == 1 and "AloneError: no port" in failed[0]


def test_the_record_is_read_from_the_study_folder(tmp_path: Path):
    assert who_pays.read(tmp_path) is None
    (tmp_path / who_pays.EFFICIENCY_FILE).write_text(json.dumps(record()))
    assert who_pays.read(tmp_path)["rate"] == 4.0
    assert isinstance(who_pays.cost_split(who_pays.read(tmp_path)), pd.DataFrame)


def test_a_failed_comparison_is_recorded_and_the_study_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """lab.study.load_runs.run_efficiency: an error inside the measurement lands in efficiency.json with its reason,
    nothing is raised, and a disabled comparison writes nothing."""
    from lab.experiments import who_pays as experiment
    from lab.study import load_runs
    from lab.study import params as studies

    class Folder:
        path = tmp_path
        params = studies.validate({"efficiency": {"seconds": 5, "repeats": 1}}, check_budget=False)

        def api_capacity(self):
            return 6.0

    def broken(*args, **kwargs):
        raise RuntimeError("the alone side did not answer")

    monkeypatch.setattr(experiment, "measure", broken)
    said: list[str] = []
    out = load_runs.run_efficiency(Folder(), ctx=None, log=said.append)  # type: ignore[arg-type]
    saved = json.loads((tmp_path / load_runs.EFFICIENCY_FILE).read_text())
    assert out == saved and saved["error"] == "RuntimeError: the alone side did not answer"
    assert saved["rate_source"] == "50% of the api capacity (6/s)"
    assert any("3/s" in line for line in said) and any("failed" in line for line in said)
    (tmp_path / load_runs.EFFICIENCY_FILE).unlink()

    def steps_with_asyncio_run(*args, **kwargs):  # what measure's steps do: refused inside a running loop
        return {"ran": asyncio.run(asyncio.sleep(0, result="in a thread without a loop"))}

    async def in_a_notebook_cell():  # a Jupyter kernel runs each cell inside its event loop
        return load_runs.run_efficiency(Folder(), ctx=None, log=said.append)  # type: ignore[arg-type]

    monkeypatch.setattr(experiment, "measure", steps_with_asyncio_run)
    assert asyncio.run(in_a_notebook_cell())["ran"] == "in a thread without a loop"
    Folder.params = studies.validate({"efficiency": {"enabled": False}}, check_budget=False)
    (tmp_path / load_runs.EFFICIENCY_FILE).unlink()
    assert load_runs.run_efficiency(Folder(), ctx=None) is None
    assert not (tmp_path / load_runs.EFFICIENCY_FILE).exists()


def test_bad_efficiency_parameters_name_the_field():
    from lab.study import params as studies

    with pytest.raises(studies.StudyParamsError, match="efficiency.share"):
        studies.validate({"efficiency": {"share": 1.5}})
    with pytest.raises(studies.StudyParamsError, match="efficiency.repeats"):
        studies.validate({"efficiency": {"repeats": 0}})


def test_the_report_shows_the_newest_profiled_bench_dated_and_skips_unprofiled_ones(tmp_path: Path):
    """A study does not profile: its report shows the newest `lab bench efficiency --profile` on the machine, with
    its date, and says how to make one when there is none."""
    from test_profile_costs import PG_READ

    from lab.experiments.bench_profile import ProfiledStep

    assert who_pays.latest_profile(tmp_path) is None
    profiled = {"profile": {"stack": asdict(ProfiledStep(6.0, 20.0, 40, statements=PG_READ,
                                                         cpu_seconds={"postgres-primary": 1.2}))}}
    (tmp_path / "20261204T030100Z-efficiency-api.json").write_text(json.dumps(profiled))
    (tmp_path / "20261204T040000Z-efficiency-api.json").write_text(json.dumps({"journey": "api"}))  # newer, no profile
    (tmp_path / "20261204T050000Z-efficiency-api.json").write_text("{not json")  # cut short
    path, table = who_pays.latest_profile(tmp_path)
    assert path.name == "20261204T030100Z-efficiency-api.json"
    assert set(table["source"]) == {"postgres"}
    note = who_pays_text.profile_note(path)
    assert "2026-12-04 03:01 UTC" in note and "not this study's run" in note
    view = who_pays_text.profile_view(table, width=30)
    assert {"ms/order", "CPU ms/order", "calls/order", "mean ms"} <= set(view.columns)
    assert view["what"].map(len).max() <= 30
