"""The study report's analysis functions on synthetic runs with known answers (pure pandas, fast)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from study_fixture import API_CAPACITY, API_COST, FAILING_UNTIL, FAULT_FROM, SHOP_COST, build_study

from lab.analysis import capacity, compare, planning, timelines, verdicts
from lab.analysis.environment import hardware_table, images_table, limits_table, versions_table
from lab.analysis.study import (
    infer_kind,
    latency_quantiles,
    load_runs,
    load_seconds,
    manifest_kinds,
    run_dirs,
    sustained_per_min,
)
from lab.analysis.summary import audit_by_fault, summarise
from lab.analysis.verdicts import Targets, Verdict
from lab.evidence.audit_rules import AuditResult, RuleResult, write_audit
from lab.experiments.run import host_hardware


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("s") / "study")


@pytest.fixture(scope="module")
def summary(study):
    return summarise(study, extra_targets=[1500.0])


def _row(**kw):
    base = {"run_id": "r", "kind": "capacity", "journey": "api", "model": "open", "users": None,
            "offered_per_min": 120.0, "throughput_per_min": 120.0, "p50": 0.1, "p95": 0.2, "p99": 0.3,
            "error_rate": 0.0, "faults": False, "audited": True, "lost": 0, "duplicate": 0, "oversold": 0}
    base.update(kw)
    return base


# ------------------------------------------------------------------------------------------------ study folder
def test_runs_are_found_under_runs_with_their_manifest_kinds(study):
    paths = run_dirs(study)
    assert len(paths) == 6 and all(p.parent.name == "runs" for p in paths)
    kinds = manifest_kinds(study)
    assert kinds["faults-api"] == "faults" and kinds["capacity-2-api"] == "capacity"
    runs = load_runs(study)
    assert [r.label for r in runs][:3] == ["2/s", "4/s", "8/s"] and runs[-1].label == "kill web-1"
    assert run_dirs(paths[0]) == [paths[0]]  # a run folder is a study of one run


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        run_dirs(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no run folder"):
        load_runs(tmp_path)


def test_kind_is_declared_or_inferred():
    assert infer_kind({"kind": "spike"}, {}, "x") == "spike"
    assert infer_kind({}, {"load": {"faults": [{"at": 1}]}}, "x") == "faults"
    assert infer_kind({}, {"load": {"name": "overload-3"}}, "x") == "overload"
    assert infer_kind({}, {}, "20261201T000000Z-run-api") == "load"


def test_load_seconds_from_the_workload_or_the_schedule():
    attempts = pd.DataFrame({"scheduled": [0.0, 4.0, 10.0]})
    assert load_seconds(attempts, {"model": "constant", "duration": 20}) == 20
    assert load_seconds(attempts, {"model": "ramp", "stages": [{"duration": 5}, {"duration": 7}]}) == 12
    assert load_seconds(attempts, {"model": "spike", "within": 3, "buyers": 10}) == 3
    assert load_seconds(attempts, {}) == 10


def test_peak_is_the_busiest_window():
    from lab.analysis.study import peak_per_min

    ends = [0.1 * i for i in range(20)] + [30.0, 31.0]  # 20 purchases within 2 s, then two more
    attempts = pd.DataFrame({"end": ends, "outcome": "purchased"})
    assert peak_per_min(attempts, window_seconds=10.0) == pytest.approx(60 * 20 / 10)
    assert peak_per_min(attempts.iloc[:0]) == 0.0


def test_sustained_rate_and_latency_quantiles():
    attempts = pd.DataFrame({"scheduled": [0.0, 1.0, 2.0, 3.0], "end": [0.5, 1.5, 2.5, 5.0],
                             "outcome": ["purchased", "purchased", "failed", "purchased"]})
    assert sustained_per_min(attempts) == pytest.approx(60 * 3 / 5.0)
    q = latency_quantiles(attempts)
    assert q["p50"] == pytest.approx(0.5)
    # a buyer who never got an answer waited too: the failed attempt counts with its 0.5 s; a dropped one never began
    assert latency_quantiles(attempts.iloc[2:3])["p95"] == pytest.approx(0.5)
    assert math.isnan(latency_quantiles(attempts.iloc[2:3].assign(outcome="dropped"))["p95"])


def test_warmup_leaves_the_first_seconds_out_of_latency_and_errors(study):
    from lab.analysis.study import after_warmup, run_row

    run = next(r for r in load_runs(study) if r.run_id == "capacity-8-api")
    cold = run_row(run)
    warm = run_row(run, warmup_seconds=10.0)
    assert len(after_warmup(run.run.attempts, 10.0)) == 80 and warm["attempts"] == cold["attempts"] == 160
    assert warm["throughput_per_min"] == cold["throughput_per_min"]  # throughput counts every attempt
    assert warm["p95"] > cold["p50"]  # the queue only grows: later attempts wait longer
    with pytest.raises(ValueError, match="warmup_seconds"):
        summarise(study, warmup_seconds=-1)


def test_run_table_numbers(summary):
    t = summary.table.set_index("run_id")
    assert t.loc["capacity-2-api", "offered_per_min"] == pytest.approx(120)
    assert t.loc["capacity-8-api", "throughput_per_min"] == pytest.approx(API_CAPACITY * 60, rel=0.01)
    assert t.loc["capacity-shop-4-shop", "users"] == 4 and t.loc["capacity-shop-4-shop", "model"] == "closed"
    faults = t.loc["faults-api"]
    failing = int((FAILING_UNTIL - FAULT_FROM) * 4)
    assert faults["failed"] == failing and faults["error_rate"] == pytest.approx(failing / 160)
    assert bool(faults["faults"]) and faults["kind"] == "faults"


# ------------------------------------------------------------------------------------------------ verdicts
def test_verdicts_judge_the_best_steady_run(summary):
    by = {v.check: v for v in summary.verdicts}
    capacity = by["api: sustained within SLO"]  # the study's ramp: the highest rate that met every SLO
    assert capacity.passed is False and not capacity.undecided
    assert capacity.measured == "240/min (1 run: no interval)"  # 4/s met it; 8/s > API_CAPACITY did not
    assert "sustained purchases per minute" not in by  # the most any run delivered is not a claim
    assert summary.table["throughput_per_min"].max() == pytest.approx(API_CAPACITY * 60, rel=0.05)
    assert "capacity-8-api" in by["api: p95 latency"].evidence  # the faults run is not the steady measure
    assert by["api: failed attempts"].passed and by["shop: p95 latency"].passed
    assert by["lost / duplicate / oversold orders"].passed
    assert summary.passed is False


def test_throughput_passes_at_the_target_and_audit_fails_on_any_loss():
    table = pd.DataFrame([_row(throughput_per_min=850.0), _row(run_id="b", lost=1)])
    assert verdicts.throughput_verdict(table, Targets()).passed
    assert not verdicts.throughput_verdict(table, Targets(target_per_min=900)).passed
    audit = verdicts.audit_verdict(table)
    assert audit.passed is False and audit.measured == "1 / 0 / 0"
    unaudited = pd.DataFrame([_row(audited=False, lost=math.nan)])
    assert verdicts.audit_verdict(unaudited).passed is None


def test_shop_uses_its_own_p95_limit():
    table = pd.DataFrame([_row(journey="shop", p95=8.0)])
    (p95, errors) = verdicts.journey_verdicts(table, Targets())
    assert p95.passed and p95.target == "<= 10.0 s"
    assert not verdicts.journey_verdicts(table, Targets(slo_p95_shop_seconds=5.0))[0].passed


def test_overall_needs_a_measured_verdict_and_every_one_passing():
    assert not verdicts.overall([Verdict("x", None, "-", "-", "-")])
    assert verdicts.overall([Verdict("x", True, "", "", ""), Verdict("y", None, "", "", "")])
    assert not verdicts.overall([Verdict("x", True, "", "", ""), Verdict("y", False, "", "", "")])


def test_what_it_means_follows_the_verdicts(summary):
    text = " ".join(summary.meaning())
    assert "below the on-sale target of 800/min" in text and "api buyers wait too long" in text
    assert "No order was lost" in text and "saturates at about 360" in text
    assert f"{sum(API_COST.values()) * 800 / 60 / 0.7:.1f} cores" in text
    passing = [Verdict("sustained purchases per minute", True, "900/min", ">= 800/min", "r")]
    assert "can take the expected rush" in verdicts.what_it_means(passing, pd.DataFrame([_row()]), Targets())[0]


# ------------------------------------------------------------------------------------------------ capacity
def test_saturation_open_and_closed(summary):
    sat = summary.saturation.set_index("journey")
    assert sat.loc["api", "saturated"] and sat.loc["api", "saturation_load"] == pytest.approx(480)
    assert sat.loc["api", "max_within_slo_per_min"] == pytest.approx(241, abs=1)
    assert not sat.loc["shop", "saturated"] and "not saturated up to 4 concurrent buyers" in sat.loc["shop", "where"]


def test_a_closed_curve_that_flattens_is_saturated():
    steps = pd.DataFrame([_row(model="closed", users=u, offered_per_min=math.nan, throughput_per_min=tp)
                          for u, tp in ((2, 60.0), (4, 100.0), (8, 104.0))])
    steps["load"] = steps["users"]
    row = capacity.saturation(steps, Targets()).iloc[0]
    assert row["saturated"] and row["saturation_load"] == 8 and "more throughput" in row["where"]


def test_an_open_step_behind_its_offered_load_is_saturated():
    steps = pd.DataFrame([_row(offered_per_min=600.0, throughput_per_min=500.0)])
    steps["load"] = steps["offered_per_min"]
    assert "under 90%" in capacity.saturation(steps, Targets()).iloc[0]["where"]


def test_capacity_steps_fall_back_to_steady_runs():
    table = pd.DataFrame([_row(kind="load"), _row(run_id="f", kind="faults", faults=True)])
    assert list(capacity.capacity_steps(table)["run_id"]) == ["r"]


# ------------------------------------------------------------------------------------------------ planning
def test_cpu_per_purchase_by_module_is_the_known_cost(summary):
    api = summary.journey_costs.loc["api"]
    assert api["pretix-web"] == pytest.approx(API_COST["pretix-web-1"] + API_COST["pretix-web-2"])
    assert api["postgres-primary"] == pytest.approx(API_COST["postgres-primary"])
    assert summary.journey_costs.loc["shop"].sum() == pytest.approx(sum(SHOP_COST.values()))
    assert "monitor" not in summary.journey_costs.columns
    assert "faults-api" not in set(summary.costs["run_id"])


def test_cores_for_a_rate_at_a_utilisation(summary):
    cores = summary.cores(800, "api")
    assert cores.sum() == pytest.approx(sum(API_COST.values()) * 800 / 60 / 0.7)
    table = summary.cores_table()
    assert set(table["purchases/min"]) == {800.0, 1500.0} and len(table) == 4
    with pytest.raises(ValueError, match="utilisation"):
        planning.cores_for(pd.Series({"a": 1.0}), 800, 1.5)


def _cost_rows(rates, idle, cost, journey="api", login_share=0.0):
    return pd.DataFrame([{"run_id": f"{journey}{i}", "journey": journey, "login_share": login_share,
                          "purchases": int(rate * 20), "seconds": 20.0, "rate": rate,
                          "pretix-web": idle + cost * rate} for i, rate in enumerate(rates)])


def test_a_line_through_the_steps_separates_idle_from_the_cost_of_a_purchase():
    slope, idle, how = planning.fit_journey(_cost_rows([2.0, 4.0, 6.0], idle=0.2, cost=0.05), "api")
    assert slope["pretix-web"] == pytest.approx(0.05) and idle["pretix-web"] == pytest.approx(0.2)
    assert how.startswith("fitted over 3 runs (120-360 purchases/min)")
    slope, idle, how = planning.fit_journey(_cost_rows([2.0, 2.2], idle=0.2, cost=0.05), "api")
    assert slope["pretix-web"] == pytest.approx((0.2 + 0.05 * 2.2) / 2.2)  # too close to fit: one run, idle in
    assert idle["pretix-web"] == 0 and "idle included" in how
    cores = planning.cores_for(pd.Series({"pretix-web": 0.05}), 600, 0.5, pd.Series({"pretix-web": 0.2}))
    assert cores["pretix-web"] == pytest.approx((0.2 + 0.05 * 10) / 0.5)


def test_login_cost_is_what_a_run_at_another_login_share_used_beyond_the_line():
    base = _cost_rows([1.0, 2.0], idle=0.1, cost=0.8, journey="shop", login_share=0.2)
    logins = _cost_rows([1.5], idle=0.1, cost=0.8 + 0.3 * (1.0 - 0.2), journey="shop", login_share=1.0)
    logins["run_id"] = "login"
    login, source = planning.login_cost(pd.concat([base, logins], ignore_index=True), 0.22)
    assert source == "measured" and login["pretix-web"] == pytest.approx(0.3)
    assert planning.recorded_login_share(pd.concat([base, logins], ignore_index=True)) == 0.2
    login, source = planning.login_cost(base, 0.22)
    assert source == "assumed" and login["pretix-web"] == 0.22


def test_module_names_drop_the_instance_number():
    assert planning.module_of("pretix-web-2") == "pretix-web"
    assert planning.module_of("postgres-primary") == "postgres-primary"


def test_mix_cost_weights_the_journeys_and_the_logins(summary):
    journeys = summary.journey_costs
    api, shop = journeys.loc["api"].sum(), journeys.loc["shop"].sum()
    half = planning.mix_cost(journeys, pd.Series({"pretix-web": 0.22}), 0.5, 0.2, 0.2)
    assert half.sum() == pytest.approx(0.5 * api + 0.5 * shop)
    all_login = planning.mix_cost(journeys, pd.Series({"pretix-web": 0.22}), 1.0, 1.0, 0.2)
    assert all_login.sum() == pytest.approx(shop + 0.8 * 0.22)
    mixes = summary.mixes()
    assert len(mixes) == len(planning.DEFAULT_MIXES)
    assert mixes.iloc[0]["total cores"] == pytest.approx(round(api * 800 / 60 / 0.7, 2))
    only_api = journeys.loc[["api"]]
    assert planning.mix_cost(only_api, pd.Series(dtype=float), 0.5, 0.0, 0.0).empty


# ------------------------------------------------------------------------------------------------ timelines
def test_errors_over_time_by_kind():
    requests = pd.DataFrame({"outcome": ["error", "error", "ok", "error"], "end": [1.0, 2.0, 3.0, 7.0],
                             "start": [0.5, 1.5, 2.5, 6.5], "error_kind": ["timeout", "timeout", None, None]})
    table = timelines.errors_over_time(requests, t0=0.0).set_index(["t", "error_kind"])["per_second"]
    assert table[(0.0, "timeout")] == pytest.approx(2 / 5) and table[(5.0, "unknown")] == pytest.approx(1 / 5)


def test_resource_series_breaks_where_a_container_had_no_sample():
    metrics = pd.DataFrame({"time": [0.2, 1.2, 2.2, 4.2, 0.3], "service": ["web"] * 4 + ["monitor"],
                            "metric": ["cpu_cores"] * 5, "value": [0.5, 0.6, 0.7, 0.8, 9.0]})
    table = timelines.resource_series(metrics, "cpu_cores", t0=0.0).set_index("t")["value"]
    assert list(table.index) == [0.0, 1.0, 2.0, 3.0, 4.0] and math.isnan(table[3.0]) and table[4.0] == 0.8


def test_empty_runs_judge_nothing_and_are_no_capacity_step():
    table = pd.DataFrame([_row(attempts=10), _row(run_id="crashed", attempts=0, throughput_per_min=0.0,
                                                  p95=math.nan, journey="shop")])
    assert verdicts.best_run(table, "shop") is None
    assert list(capacity.capacity_steps(table)["run_id"]) == ["r"]


def test_label_values_make_short_legends():
    assert timelines.label_values("application_name=walreceiver,state=streaming") == "walreceiver/streaming"
    assert timelines.label_values("") == ""


def test_gauges_carry_their_labels(summary):
    run = summary.runs[0].run
    assert timelines.available_gauges(run.metrics) == ["celery queue", "PostgreSQL lock waits",
                                                       "replication lag (bytes)"]
    lag = timelines.gauge(run.metrics, "replication_lag_bytes", run.t0, 1 / 1024)
    assert set(lag["series"]) == {"postgres-primary replica"}
    cpu = timelines.resource_series(run.metrics, "cpu_cores", run.t0)
    assert "monitor" not in set(cpu["service"])


# ------------------------------------------------------------------------------------------------ environment
def test_environment_tables(summary):
    from lab.analysis.environment import read_environment

    env = read_environment(summary.runs[0].run.path)
    hw = hardware_table(env)["value"]
    assert hw["CPU model"] == "Synthetic CPU 9000" and hw["RAM"] == "24.0 GiB" and hw["logical cores"] == "2"
    assert versions_table(env).loc["pretix", "version"] == "2026.8.0"
    assert images_table(env).loc["pretix-lab/pretix:local", "image id"] == "sha256:aaaaaaaaaaaa"
    limits = limits_table(env, summary.runs[0].run.metrics)
    assert limits.loc["pretix-web-1", "CPU limit (cores)"] == 1.0
    assert limits.loc["pretix-web-1", "enforced memory limit (MiB)"] == 1536
    assert hardware_table({})["value"]["CPU model"] == "not recorded"


def test_host_hardware_reads_proc():
    info = host_hardware("processor: 0\nmodel name\t: Test CPU @ 3GHz\n", "MemTotal:       1024 kB\n")
    assert info["cpu_model"] == "Test CPU @ 3GHz" and info["memory_bytes"] == 1024 * 1024 and info["cpus"] >= 1


# ------------------------------------------------------------------------------------------------ faults, audit
def test_faults_are_analysed_per_run(summary):
    f = summary.faults.iloc[0]
    assert f["run_id"] == "faults-api" and f["action"] == "kill" and f["target"] == "pretix-web-1"
    assert f["failed_attempts"] == int((FAILING_UNTIL - FAULT_FROM) * 4)
    assert bool(f["recovery_recovered"]) and f["recovery_time_to_recover"] > 0


def test_audit_is_attributed_to_the_fault_window(summary, tmp_path):
    run = next(r for r in summary.runs if r.kind == "faults")
    inside = run.run.attempts[run.run.attempts["scheduled"] - run.run.t0 > FAULT_FROM + 1].iloc[0]["attempt_id"]
    outside = run.run.attempts.iloc[0]["attempt_id"]
    lost = RuleResult(count=2, unit="", rows=[{"attempt_id": inside}, {"attempt_id": outside}], truncated=False)
    clean = RuleResult(count=0, unit="", rows=[], truncated=False)
    copy = type(run)(type(run.run)(tmp_path, run.run.meta, run.run.attempts, run.run.requests, run.run.metrics),
                     run.kind, run.params)
    write_audit(AuditResult(lost=lost, ghost=clean, duplicate=clean, oversold=clean, false_availability=clean,
                            totals={}), tmp_path)
    table = audit_by_fault(copy, summary.faults)
    assert table.iloc[0]["lost"] == 1 and table.iloc[0]["duplicate"] == 0 and not table.iloc[0]["run clean"]


def test_headline_json(summary, tmp_path):
    path = summary.write_headline(tmp_path)
    doc = json.loads(path.read_text())
    assert doc["passed"] is False and doc["runs"] == 6 and doc["faults"] == 1
    assert doc["throughput_per_min"] == pytest.approx(API_CAPACITY * 60, rel=0.01)
    assert doc["throughput_run"] == "capacity-8-api" and doc["lost"] == 0
    assert doc["kinds"] == ["capacity", "faults"] and len(doc["verdicts"]) == 6
    # the keys CONTRACT.md names for the reports index
    assert doc["study_id"] == "20261201-2200-synthetic" and doc["verdict"] == "FAIL"
    assert doc["sustained_per_min"] == doc["throughput_per_min"] and doc["peak_per_min"] >= 360
    assert doc["p95_api_s"] == doc["p95_seconds"]["api"] and doc["p95_shop_s"] == pytest.approx(3.2)
    assert doc["error_rate"] == 0.0 and doc["target_per_min"] == 800.0 and doc["generated"]


# ------------------------------------------------------------------------------------------------ compare
def test_compare_two_runs(study):
    runs = compare.load_compared([study / "runs" / "capacity-4-api", study / "runs" / "faults-api"])
    table = compare.compare_table(runs)
    assert list(table["label"]) == ["capacity-4-api", "faults-api"]  # run folders alone: no label, run ids
    labelled = compare.compare_table(compare.load_compared([study]))
    assert list(labelled["label"])[:2] == ["2/s", "4/s"]  # a study's own labels, in its order
    assert table.iloc[1]["fault_count"] == 1 and table.iloc[0]["fault_count"] == 0
    rel = compare.relative_to_baseline(table)
    assert rel.iloc[0]["throughput_per_min"] == 0
    assert rel.iloc[1]["throughput_per_min"] == pytest.approx(table.iloc[1]["throughput_per_min"]
                                                              / table.iloc[0]["throughput_per_min"] - 1)
    differs = compare.differing_setup(runs, list(table["label"]))
    assert list(differs.index) == ["load.workload.duration"]
    text = " ".join(compare.compare_sentences(table))
    assert "faults-api against capacity-4-api" in text and "1 fault(s)" in text and "Best failed attempts" in text
    with pytest.raises(ValueError, match="labels"):
        compare.compare_table(runs, ["one"])


def test_compare_needs_two_runs(study):
    with pytest.raises(ValueError, match="two or more"):
        compare.load_compared([study / "runs" / "faults-api"])
