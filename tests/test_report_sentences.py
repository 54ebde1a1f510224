"""The study report's sentences and first page (lab.report.sentences, lab.report.first_page) and its appendix rule,
on the synthetic study (tests/study_fixture.py: answers known from how it was built) and the recorded one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from study_fixture import API_CAPACITY, API_COST, SHOP_COST, build_study

from lab.analysis.summary import summarise
from lab.analysis.verdicts import Targets, Verdict
from lab.report import sentences as text
from lab.report.appendix import WIDE_COLUMNS, Appendix, columns, is_wide
from lab.report.first_page import first_page, on_sale_sentences
from lab.report.views import runs_view, styled

REAL = Path(__file__).parent / "fixtures" / "real-study"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return summarise(build_study(tmp_path_factory.mktemp("s") / "study"), extra_targets=[1200.0])


@pytest.fixture(scope="module")
def real():
    return summarise(REAL)


def test_scope_parameters_and_legend_say_what_the_report_covers(synthetic):
    assert text.scope(synthetic, True) == ("**Study `study`**: 6 run(s) (5 capacity, 1 faults), journeys api, shop.")
    assert text.scope(synthetic, False).startswith("**Run `study`**")
    assert text.report_parameters(synthetic) == (
        "Report parameters: target 800 purchases/min (and 1200 for planning), SLO p95 1 s api / 10 s web shop, "
        "failed attempts at most 1%, cores planned at 70% utilisation.")
    assert text.runs_legend(synthetic).endswith("(no warm-up left out).")
    warm = dataclasses.replace(synthetic, warmup_seconds=5.0)
    assert text.runs_legend(warm).endswith("leave out each run's first 5 s.")
    assert text.verdict_statement(synthetic).startswith("The deployment did not meet the bar of 800 purchases/min")


def test_capacity_sentences_carry_the_measured_figures(synthetic):
    api, shop = text.saturation_sentences(synthetic)
    assert api.startswith("- **api** (open workload, 3 step(s)): at most "
                          f"{API_CAPACITY * 60:.0f} purchases/min")  # the synthetic server's ceiling
    assert "shop" in shop and "not saturated up to 4 concurrent buyers" in shop
    assert text.capacity_interval(synthetic).startswith(
        "**api capacity within the SLOs: 240/min (1 run: no interval).**")
    assert text.capacity_interval(dataclasses.replace(synthetic, capacity_rounds=pd.DataFrame())) is None


def test_planning_sentences(synthetic):
    ratio = sum(SHOP_COST.values()) / sum(API_COST.values())  # the fixture charges these per purchase
    assert text.shop_ratio(synthetic).startswith(f"A web-shop purchase costs {ratio:.1f}x the CPU of an API order")
    assert text.login_cost(synthetic) == ("Login cost per shop login: pretix-web 0.220 s (assumed: from the "
                                          "login_cpu_seconds parameter, since no shop runs at two login shares "
                                          "measured it).")
    assert text.cores_intro(synthetic) == "Cores per module for each journey alone, at 800 and 1200 purchases/min:"
    assert "**api** fitted over 3 runs" in text.planning_intro(synthetic)
    assert text.mix_heading(1500) == "**Cores per module at 1500 purchases/min, by journey mix:**"
    assert text.mix_table_title(1500) == "Cores at 1500 purchases/min by journey mix"


def test_fault_and_failure_sentences(synthetic, real):
    (fault,) = text.fault_sentences(synthetic.faults)
    assert fault.startswith("- **f1-kill** (kill pretix-web-1, 10 s): failed attempts from")
    assert "throughput back within 10%" in fault
    (retried,) = text.fault_sentences(real.faults)  # the real kill: requests failed, the retries saved every attempt
    assert "no failed attempt" in retried and "(retried)" in retried
    assert text.failed_runs(synthetic) == []
    table = synthetic.table.copy()
    table.loc[0, "run_failed"] = "ReadTimeout: the audit"
    assert text.failed_runs(dataclasses.replace(synthetic, table=table)) == [
        f"Run `{table.loc[0, 'run_id']}` failed and was recorded as far as it got: ReadTimeout: the audit"]


def test_the_meaning_is_a_numbered_list_of_the_summary_sentences(synthetic):
    lines = text.meaning(synthetic).split("\n")
    assert lines == [f"{i}. {s}" for i, s in enumerate(synthetic.meaning(), 1)]


def test_the_first_page_says_what_the_verdict_means_for_the_on_sale(synthetic, real):
    for summary in (synthetic, real):
        said = on_sale_sentences(summary)
        assert 3 <= len(said) <= 5, said
        assert first_page(summary).startswith(f"# Verdict: {summary.verdict}\n\n{said[0]}")
    said = on_sale_sentences(synthetic)
    assert said[0] == "Within its SLOs the deployment sustained 240/min (1 run: no interval) against the on-sale's " \
                      "800 purchases/min."
    assert said[1].startswith(f"About {800 / 240:.1f}x that capacity is needed")
    assert "6 audited run(s) of 6" in said[2] and "kill on pretix-web-1" in said[3]
    assert on_sale_sentences(real)[1].startswith("No step met its SLOs")  # its capacity within SLO is 0


def test_the_first_page_for_a_pass_an_undecided_and_a_sell_out(synthetic):
    capacity = synthetic.verdicts[0]
    passed = dataclasses.replace(synthetic, targets=Targets(target_per_min=200.0),
                                 verdicts=[dataclasses.replace(capacity, passed=True)] + synthetic.verdicts[1:])
    assert on_sale_sentences(passed)[1] == f"It can take the expected rush at this size ({240 / 200:.1f}x the target)."
    undecided = dataclasses.replace(synthetic, verdicts=[
        Verdict(capacity.check, None, "790/min (95% interval 700-900, 3 runs)", ">= 800/min", "ramp", undecided=True),
        *synthetic.verdicts[-1:]])
    assert undecided.verdict == "UNDECIDED"
    assert on_sale_sentences(undecided)[1].startswith("The interval straddles the target")
    sold = dataclasses.replace(synthetic, sellout=pd.DataFrame({"oversold": [0, 0], "false_availability": [0, 1]}))
    assert "In 2 sell-out(s) the quota was never oversold and pretix misreported 1 time(s) what was left." \
        in on_sale_sentences(sold)
    assert len(on_sale_sentences(sold)) == 5


def test_wide_tables_go_to_the_appendix_and_the_body_says_where(synthetic, capsys):
    runs = styled(runs_view(synthetic.table))
    assert columns(runs) == 13 and is_wide(runs)  # the index is hidden
    narrow = pd.DataFrame({"a": [1], "b": [2]})
    assert columns(narrow) == 3 and not is_wide(narrow)  # a DataFrame shows its index
    assert is_wide(pd.DataFrame({c: [0] for c in "abcdefg"})) and WIDE_COLUMNS == 8
    appendix = Appendix()
    appendix.place("Small", narrow)
    appendix.place("Runs", runs)
    assert [title for title, _ in appendix.tables] == ["Runs"]
    assert appendix.pointer(0) == "*Runs: Table A1 in the appendix (too wide for the page).*"
    html = appendix.html(0)
    assert html.startswith('<div class="lab-appendix"><h3>Table A1: Runs</h3>') and "capacity-8-api" in html


def test_a_fault_whose_rate_had_not_settled_but_whose_service_passed_its_check_is_not_called_stuck(synthetic):
    """A dense fault schedule leaves no time for the rate to settle before the next fault: when the steady-state
    check after the undo passed, the first page and the bullets say so instead of 'did not come back'."""
    from lab.faults.analysis import unrecovered

    base = synthetic.faults.iloc[[0]]
    rows = pd.concat([base.assign(fault_id="f1-kill", recovery_recovered=True),
                      base.assign(fault_id="f2-pause", action="pause", target="redis", recovery_recovered=False,
                                  steady_after="pass"),
                      base.assign(fault_id="f3-kill", action="kill", target="pretix-worker",
                                  recovery_recovered=False, steady_after="fail"),
                      base.assign(fault_id="f4-kill", action="kill", target="pretix-worker-1",
                                  recovery_recovered=False, steady_after="cut")], ignore_index=True)
    stuck, unsettled, cut = unrecovered(rows)
    assert list(stuck["fault_id"]) == ["f3-kill"] and list(unsettled["fault_id"]) == ["f2-pause"]
    assert list(cut["fault_id"]) == ["f4-kill"]  # the next fault began before its check held: not called stuck
    said = " ".join(on_sale_sentences(dataclasses.replace(synthetic, faults=rows)))
    assert ("After kill on pretix-worker the throughput did not come back within the observation window and the "
            "steady-state check after the undo failed") in said
    assert "After pause on redis the steady-state check after the undo passed, but the throughput had not " \
           "settled" in said
    bullets = text.fault_sentences(rows)
    assert "throughput back within 10%" in bullets[0]
    assert "not yet settled within 10% in the window, steady-state check after the undo passed" in bullets[1]
    assert "throughput NOT back to its pre-fault level in the window" in bullets[2]
    assert "the next fault began before the steady-state check after the undo held" in bullets[3]
    assert ("after kill on pretix-worker-1 the next fault began before the steady-state check after the undo held, "
            "so whether the service came back is not known") in said
    assert "kill on pretix-worker-1 the throughput did not come back" not in said
    assert unrecovered(rows.iloc[0:0])[0].empty
