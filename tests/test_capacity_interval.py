"""The one capacity definition and its uncertainty: each round's highest rate that met every SLO, the median of the
rounds with a bootstrap interval, and a verdict that can be UNDECIDED (pure: run-table rows)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lab.analysis import capacity, verdicts
from lab.analysis.capacity import capacity_rounds, describe_interval, interval, latency_growth, slo_misses
from lab.analysis.verdicts import Targets, Verdict


def step(rate: float, round_: int, *, p95: float = 0.4, error_rate: float = 0.0, bought: float = 1.0,
         growth: float = 0.0, failed: str = "") -> dict:
    attempts = int(rate * 20)
    return {"run_id": f"capacity-api-{rate:g}-r{round_}", "kind": "capacity", "journey": "api", "model": "open",
            "offered_per_min": rate * 60, "attempts": attempts, "purchased": int(attempts * bought),
            "p95": p95, "error_rate": error_rate, "latency_growth": growth, "round": round_, "run_failed": failed}


def test_every_slo_criterion_is_a_miss_with_its_reason():
    targets = Targets()
    assert slo_misses(step(4, 1), targets) == []
    assert slo_misses(step(4, 1, p95=1.5), targets) == ["p95 1.50 s > 1 s"]
    assert slo_misses(step(4, 1, error_rate=0.05), targets) == ["failed 5.0% > 1%"]
    assert slo_misses(step(4, 1, bought=0.9), targets) == ["goodput 90% < 95%"]
    assert slo_misses(step(4, 1, growth=0.8), targets) == ["latency still rising by 0.80 s (api)"]
    assert slo_misses(step(4, 1, p95=math.nan), targets) == ["no answered attempt"]


def test_a_round_counts_its_highest_rate_that_met_the_slo_and_failed_runs_do_not_count():
    table = pd.DataFrame([step(4, 1), step(6, 1), step(8, 1, p95=2.0),
                          step(4, 2), step(6, 2, bought=0.8), step(8, 2, failed="RuntimeError: x"),
                          step(4, 3, p95=3.0), step(6, 3, p95=3.0)])
    rounds = capacity_rounds(table, Targets())
    assert rounds["capacity_per_min"].tolist() == [360.0, 240.0, 0.0]
    assert rounds["run_id"].tolist() == ["capacity-api-6-r1", "capacity-api-4-r2", "-"]


def test_the_interval_is_the_median_with_a_bootstrap_interval():
    same = interval([300.0, 300.0, 300.0])
    assert same == {"per_min": 300.0, "ci_low": 300.0, "ci_high": 300.0, "repeats": 3}
    spread = interval([240.0, 360.0, 300.0, 360.0, 300.0])
    assert spread["per_min"] == 300.0 and spread["repeats"] == 5
    assert 240.0 <= spread["ci_low"] <= 300.0 <= spread["ci_high"] <= 360.0
    one = interval([420.0])
    assert one["per_min"] == 420.0 and math.isnan(one["ci_low"]) and one["repeats"] == 1
    assert describe_interval(one) == "420/min (1 run: no interval)"
    assert describe_interval(same) == "300/min (95% interval 300-300, 3 runs)"


@pytest.mark.parametrize(("values", "label"), [
    ([900.0, 840.0, 960.0], "pass"),  # the whole interval at or above 800
    ([600.0, 540.0, 660.0], "FAIL"),  # the whole interval below
    ([720.0, 840.0, 780.0, 900.0, 660.0], "UNDECIDED"),  # it straddles the target
])
def test_the_capacity_verdict_is_pass_fail_or_undecided(values, label):
    verdict = capacity.capacity_verdict(interval(values), Targets(target_per_min=800), "api", len(values))
    assert verdict.label == label, verdict
    assert verdict.check == "api: sustained within SLO"


def test_the_study_verdict_is_undecided_only_when_nothing_failed():
    undecided = Verdict("a", None, "", "", "", undecided=True)
    assert verdicts.overall_label([Verdict("x", True, "", "", ""), undecided]) == "UNDECIDED"
    assert verdicts.overall_label([Verdict("x", False, "", "", ""), undecided]) == "FAIL"
    assert verdicts.overall_label([Verdict("x", True, "", "", "")]) == "PASS"
    assert not verdicts.overall([Verdict("x", True, "", "", ""), undecided])


def test_latency_still_rising_is_the_last_third_against_the_first():
    flat = [(float(i), 0.2) for i in range(12)]
    rising = [(float(i), 0.2 + 0.1 * i) for i in range(12)]
    assert latency_growth(flat) == 0.0
    assert latency_growth(rising) == pytest.approx(0.8)
    assert math.isnan(latency_growth(flat[:6]))  # too few to tell


def test_two_studies_are_compared_figure_by_figure_against_their_noise(tmp_path):
    """`lab compare STUDY STUDY`: capacities by their intervals, single samples said to be single, counts exact."""
    import dataclasses

    from study_fixture import build_study

    from lab.analysis.compare import compare_studies
    from lab.analysis.summary import summarise

    base = summarise(build_study(tmp_path / "study"))
    rows = compare_studies(base, base).set_index("figure")["difference"]
    assert rows["api capacity within SLO"] == "one sample: cannot tell"  # the fixture ramps once
    assert rows["api p95 latency (best steady run)"] == "one sample: cannot tell"
    assert rows["lost orders"] == "none"

    def measured(low: float, high: float):
        return dataclasses.replace(base, capacity={"api": {"per_min": (low + high) / 2, "ci_low": low,
                                                           "ci_high": high, "repeats": 3}})

    apart = compare_studies(measured(280, 320), measured(340, 380)).set_index("figure")["difference"]
    assert apart["api capacity within SLO"] == "beyond the noise"
    close = compare_studies(measured(280, 350), measured(340, 380)).set_index("figure")["difference"]
    assert close["api capacity within SLO"] == "within the noise (the intervals overlap)"


def test_lab_capacity_and_lab_bench_capacity_judge_a_step_as_the_study_does():
    """One definition of capacity: the same figures, as a study's run-table row, as a `lab capacity` probe and as a
    `lab bench capacity` step, meet or miss the SLO together, for the same reasons."""
    from lab.experiments.bench import Step
    from lab.experiments.capacity import Probe, SearchSettings, judge

    cases = [dict(p95=0.4), dict(p95=1.5), dict(error_rate=0.05), dict(bought=0.9), dict(growth=0.8),
             dict(p95=0.9, bought=0.96), dict(p95=math.nan)]
    targets, search = Targets(), SearchSettings()
    table = pd.DataFrame([step(4 + n, 1, **case) for n, case in enumerate(cases)])
    for n, row in table.iterrows():
        attempts, purchased = int(row["attempts"]), int(row["purchased"])
        failed = round(row["error_rate"] * attempts)
        probe = Probe(rate=4 + n, offered=attempts, purchased=purchased, failed=failed, p95=row["p95"],
                      growth=row["latency_growth"])
        bench = Step(rate=4 + n, launched=attempts, purchased=purchased, sold_out=0, failed=failed, dropped=0,
                     p50=0.1, p95=row["p95"], p99=row["p95"], achieved_per_min=0.0, generator_cpu=0.0,
                     growth=row["latency_growth"])
        study = slo_misses(row, targets)
        assert judge(probe, search) == (not study, "; ".join(study)), cases[n]
        assert bench.misses(search.slo_p95, search.error_limit) == study, cases[n]
    # and the capacity each would report from these steps is the study's round capacity
    passing = [4 + n for n, row in table.iterrows() if not slo_misses(row, targets)]
    assert capacity_rounds(table, targets)["capacity_per_min"].tolist() == [60.0 * max(passing)]
