"""Admission control's pure parts: configuration rendering, the capacity search's decisions, queue behaviour,
parameters refused early, and the comparison table computed from hand-made run folders."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from lab.analysis.traffic import admission_table, fairness
from lab.experiments.capacity import (
    CapacityError,
    Probe,
    SearchSettings,
    admission_for,
    capacity_of,
    judge,
    latency_growth,
    next_rate,
    search,
    settings,
    summarise,
)
from lab.experiments.overload import scenario
from lab.experiments.run import RunParamsError, validate_load
from lab.load.http import classify
from lab.load.queue import QueueSettings, is_queued, parse_retry_after, pause_for
from lab.load.recorder import AttemptRecord, Recorder, RequestRecord
from lab.stack import admission
from lab.stack.admission import Admission, AdmissionError, parse_admission, render

# --- rendering ---------------------------------------------------------------------------------------------


def test_off_renders_no_limit_but_keeps_state_probe_and_exempt_paths():
    files = render(admission.OFF)
    assert "limit_req" not in files["location.conf"] and "limit_conn" not in files["location.conf"]
    assert "limit_req_zone" not in files["http.conf"]
    assert "location = /lab-admission-state" in files["server.conf"]
    assert "location = /healthcheck/" in files["server.conf"]
    assert json.loads(files["state.json"])["config"]["mode"] == "off"


def test_rate_per_client_keys_on_the_buyer_header_and_answers_429_with_retry_after():
    files = render(parse_admission({"mode": "rate", "rate": 12.5, "burst": 5, "retry_after": 3}))
    assert "$http_x_lab_client" in files["http.conf"] and '""      $binary_remote_addr' in files["http.conf"]
    assert "rate=750r/m" in files["http.conf"]  # 12.5/s in the whole requests per minute nginx takes
    assert "limit_req zone=lab_rate burst=5 nodelay;" in files["location.conf"]
    assert "error_page 429 = @lab_queued;" in files["location.conf"]
    assert "add_header Retry-After 3 always;" in files["server.conf"]
    assert "return 429" in files["server.conf"]
    # the probe path is limited the same way (measuring the limit itself) and served from a file, not `return`
    probe = files["server.conf"].split("location = /lab-admission-probe")[1]
    assert "limit_req zone=lab_rate burst=5 nodelay;" in probe and "alias /etc/nginx/admission/probe.txt" in probe


def test_waiting_room_counts_only_new_buyers_and_answers_a_503_page():
    files = render(parse_admission({"mode": "waiting-room", "rate": 12}))
    assert "map $http_cookie $lab_admission_key" in files["http.conf"]
    assert '""      "room";' in files["http.conf"] and 'default "";' in files["http.conf"]
    assert "return 503" in files["server.conf"] and "http-equiv=refresh" in files["server.conf"]
    assert "burst=10" in files["location.conf"]


def test_no_burst_renders_no_burst_parameter_which_nginx_would_refuse():
    files = render(parse_admission({"mode": "waiting-room", "rate": 1, "burst": 0}))
    assert "limit_req zone=lab_rate;" in files["location.conf"] and "burst=0" not in files["server.conf"]


def test_conn_limits_requests_in_progress_over_all_by_default():
    config = parse_admission({"mode": "conn", "connections": 8})
    files = render(config)
    assert config.key_scope == "all"
    assert "limit_conn_zone $lab_admission_key zone=lab_conn:10m;" in files["http.conf"]
    assert "limit_conn lab_conn 8;" in files["location.conf"]


def test_every_mode_shares_the_zone_key_name_and_size_so_live_reloads_between_modes_work():
    for raw in ({"mode": "rate", "rate": 1}, {"mode": "rate", "rate": 900, "per": "all"},
                {"mode": "waiting-room", "rate": 3}, {"mode": "conn", "connections": 2}):
        http = render(parse_admission(raw))["http.conf"]
        assert "zone=lab_" in http and ":10m" in http and "$lab_admission_key zone=" in http


def test_queue_draws_tickets_in_lua_and_a_new_configuration_starts_an_empty_queue():
    config = parse_admission({"mode": "queue", "rate": 2.5, "burst": 3, "retry_after": 20})
    files = render(config)
    zone = f"lab_queue_{admission.fingerprint_of(config)[:8]}"
    assert config.key_scope == "new-buyers" and config.describe().startswith("queue: 2.5/s burst 3")
    assert f"lua_shared_dict {zone} 10m;" in files["http.conf"]
    assert "ngx.worker.id() ~= 0" in files["http.conf"] and "rate, burst = ngx.shared." + zone + ", 2.5, 3" in \
        files["http.conf"]
    assert "limit_req" not in files["http.conf"] + files["location.conf"]  # no nginx limit: the tickets decide
    assert f"rate, cap = ngx.shared.{zone}, 2.5, 20" in files["location.conf"]
    assert "ngx.status = 503" in files["location.conf"] and "'Retry-After'] = wait" in files["location.conf"]
    assert "access_by_lua_block" in files["server.conf"].split("location = /lab-admission-probe")[1]
    assert "@lab_queued" not in files["server.conf"]
    other = render(parse_admission({"mode": "queue", "rate": 3}))
    assert f"lua_shared_dict {zone} " not in other["http.conf"]  # another zone: tickets start at 1 again


def test_fingerprints_differ_per_configuration():
    a = render(parse_admission({"mode": "rate", "rate": 5}))["server.conf"]
    b = render(parse_admission({"mode": "rate", "rate": 6}))["server.conf"]
    assert a != b


def test_write_and_current_round_trip(tmp_path):
    config = parse_admission({"mode": "waiting-room", "rate": 7.5, "burst": 8})
    target = admission.write(config, tmp_path)
    assert sorted(p.name for p in target.iterdir()) == sorted(render(config))
    assert admission.current(tmp_path) == config
    assert admission.ensure(tmp_path) == target and admission.current(tmp_path) == config  # ensure keeps it
    assert admission.current(tmp_path / "elsewhere") == admission.OFF


@pytest.mark.parametrize(("raw", "words"), [
    ({"mode": "gatekeeper"}, "mode: must be one of 'off', 'rate', 'conn', 'waiting-room', 'queue'"),
    ({"mode": "queue"}, "mode 'queue' needs `rate`"),
    ({"mode": "queue", "rate": 2, "per": "client"}, "the queue admits over all buyers; allowed: all"),
    ({"mode": "rate"}, "needs `rate`"),
    ({"mode": "rate", "rate": -1}, "rate: must be > 0 and <= 10000 (got -1)"),
    ({"mode": "rate", "rate": 20000}, "rate: must be > 0 and <= 10000 (got 20000)"),
    ({"mode": "conn"}, "needs `connections`"),
    ({"mode": "conn", "connections": 0}, "connections: must be >= 1"),
    ({"mode": "rate", "rate": 5, "burst": -2}, "burst: must be >= 0"),
    ({"mode": "rate", "rate": 5, "per": "planet"}, "per: must be one of 'client', 'all'"),
    ({"mode": "waiting-room", "rate": 5, "per": "client"}, "allowed: all"),
    ({"mode": "rate", "rate": 5, "retry_after": 0}, "retry_after"),
    ({"mode": "rate", "rate": 5, "speed": 3}, "speed: unknown parameter; allowed: mode, rate, burst"),
])
def test_bad_admission_is_refused_naming_field_and_allowed_values(raw, words):
    with pytest.raises(AdmissionError, match="invalid admission parameters") as caught:
        parse_admission(raw)
    assert words in str(caught.value)


def test_load_params_refuse_bad_admission_and_queue_before_anything_runs(tmp_path):
    cases = [({"admission": {"mode": "rate"}}, "admission: mode 'rate' needs `rate`"),
             ({"admission": {"mode": "warp"}}, "admission.mode"),
             ({"queue": {"max_wait": -1}}, "queue.max_wait"),
             ({"queue": {"max_wait": 99999}}, "queue.max_wait"),
             ({"queue": {"patience": 3}}, "queue.patience: unknown parameter; allowed: honour_retry_after")]
    for raw, words in cases:
        with pytest.raises(RunParamsError) as caught:
            validate_load(raw)
        assert words in str(caught.value), str(caught.value)
    params = validate_load({"admission": {"mode": "waiting-room", "rate": 4}, "queue": {"max_wait": 5}})
    assert params.admission == Admission(mode="waiting-room", rate=4) and params.queue.max_wait == 5
    assert list(tmp_path.iterdir()) == []


# --- the queue -------------------------------------------------------------------------------------------------


def _response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "https://127.0.0.1/"))


def test_retry_after_in_seconds_or_as_an_http_date():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # in the past: now
    for bad in (None, "", "soon", "-3", "1.5e9x"):
        assert parse_retry_after(bad) is None


def test_a_refusal_with_retry_after_is_queued_anything_else_keeps_its_kind():
    assert is_queued(_response(429, **{"Retry-After": "2"})) and is_queued(_response(503, **{"Retry-After": "1"}))
    assert classify(_response(503, **{"Retry-After": "1"}), None) == ("queued", None)
    assert classify(_response(503), None) == ("error", "http_5xx")  # pretix's own 503: an error
    assert classify(_response(429), None) == ("error", "http_429")
    assert classify(_response(409, **{"Retry-After": "5"}), None) == ("error", "http_409")  # pretix's key lock


def test_buyers_wait_as_told_within_their_patience():
    told = _response(503, **{"Retry-After": "3"})
    patient = QueueSettings(max_wait=10)
    assert pause_for(told, patient, waited=0) == 3
    assert pause_for(told, patient, waited=8) == 2  # only what is left of the patience
    assert pause_for(told, patient, waited=10) is None
    assert pause_for(_response(429, **{"Retry-After": "later"}), patient, 0) == patient.default_wait
    assert pause_for(_response(429, **{"Retry-After": "500"}), QueueSettings(max_wait=900, max_retry_after=30), 0) == 30
    assert pause_for(told, QueueSettings(max_wait=0), 0) is None
    assert pause_for(told, QueueSettings(honour_retry_after=False), 0) is None


# --- the capacity search ----------------------------------------------------------------------------------


def _probe(rate: float, limit: float) -> Probe:
    """A system that serves everything up to `limit`/s and fails 30% of what is above it."""
    offered = int(rate * 10)
    failed = 0 if rate <= limit else int(0.3 * offered)
    return Probe(rate=rate, offered=offered, purchased=offered - failed, failed=failed, p50=0.1, p95=0.3)


def test_judge_checks_latency_errors_and_goodput():
    s = SearchSettings(slo_p95=1.0)
    assert judge(Probe(rate=5, offered=100, purchased=100, failed=0, p95=0.9), s) == (True, "")
    assert "p95" in judge(Probe(rate=5, offered=100, purchased=100, failed=0, p95=1.5), s)[1]
    assert "failed 2.0% > 1%" in judge(Probe(rate=5, offered=100, purchased=98, failed=2, p95=0.5), s)[1]
    assert "goodput" in judge(Probe(rate=5, offered=100, purchased=90, failed=0, p95=0.5), s)[1]
    assert not judge(Probe(rate=5, offered=100, purchased=0, failed=0, queued=100, p95=math.nan), s)[0]


def test_a_probe_whose_latency_is_still_climbing_fails_even_under_the_p95():
    s = SearchSettings(slo_p95=10.0)  # climbing by more than 5 s from the first third to the last fails
    steady = [(t, 2.0 + 0.1 * (t % 3)) for t in range(30)]
    climbing = [(t, 1.0 + 0.3 * t) for t in range(30)]  # 1 s -> 9.7 s: a backlog building, p95 still < 10 s
    assert abs(latency_growth(steady)) < 0.2
    assert latency_growth(list(reversed(climbing))) == pytest.approx(6.0)  # ordered by schedule, not by input
    assert math.isnan(latency_growth(climbing[:8]))  # too few arrivals to tell
    ok = Probe(rate=1, offered=30, purchased=30, failed=0, p95=9.5, growth=latency_growth(steady))
    assert judge(ok, s) == (True, "")
    passed, reason = judge(Probe(rate=1, offered=30, purchased=30, failed=0, p95=9.5,
                                 growth=latency_growth(climbing)), s)
    assert not passed and "latency still rising by 6.00 s" in reason
    assert judge(Probe(rate=1, offered=5, purchased=5, failed=0, p95=1.0, growth=math.nan), s)[0]


def test_summarise_takes_latency_from_the_scheduled_start_and_its_trend():
    class A:
        def __init__(self, scheduled, ended, outcome="purchased"):
            self.scheduled, self.started, self.ended, self.outcome = scheduled, scheduled + 0.01, ended, outcome

    attempts = [A(t, t + 1.0 + 0.5 * t) for t in range(12)] + [A(99, None, "failed")]
    probe = summarise(2.0, attempts, offered=13)
    assert probe.purchased == 12 and probe.failed == 1
    assert probe.growth == pytest.approx(0.5 * (9.5 - 1.5))  # medians of arrivals 8..11 and 0..3
    assert probe.p50 == pytest.approx(1.0 + 0.5 * 5.5)


def test_search_steps_up_then_bisects_to_within_tolerance():
    s = SearchSettings(start=4, factor=2, tolerance=0.1)
    result = search(lambda r: _probe(r, 12.7), s, log=lambda m: None)
    rates = [p.rate for p in result.probes]
    assert rates[:3] == [4, 8, 16]  # steps
    assert all(4 <= r <= 16 for r in rates[3:])  # then bisects inside the bracket
    assert result.capacity is not None and 12.7 * 0.9 <= result.capacity <= 12.7
    lo, hi = result.capacity, min(p.rate for p in result.probes if not p.passed)
    assert (hi - lo) / hi <= 0.1


def test_search_ends_when_even_the_first_probes_fail_or_max_rate_passes():
    s = SearchSettings(start=4, tolerance=0.1)
    broken = lambda r: Probe(rate=r, offered=10, purchased=0, failed=10, p95=5.0)  # noqa: E731
    nothing = search(broken, s, log=lambda m: None)
    assert nothing.capacity is None and len(nothing.probes) <= s.max_probes
    assert min(p.rate for p in nothing.probes) <= s.start * s.tolerance  # it looked far below the start
    capped = search(lambda r: _probe(r, 1e9), SearchSettings(start=4, max_rate=20), log=lambda m: None)
    assert capped.capacity == 20 and [p.rate for p in capped.probes] == [4, 8, 16, 20]


def test_next_rate_respects_max_probes_and_capacity_ignores_passes_above_a_failure():
    s = SearchSettings(max_probes=2)
    probes = [Probe(rate=4, offered=1, purchased=1, failed=0, passed=True),
              Probe(rate=8, offered=1, purchased=0, failed=1, passed=False)]
    assert next_rate(probes, s) is None
    noisy = [*probes, Probe(rate=10, offered=1, purchased=1, failed=0, passed=True)]
    assert capacity_of(noisy) == 4


def test_search_settings_out_of_range_are_refused_naming_the_field():
    for raw, words in [({"start": 0}, "start"), ({"factor": 1}, "factor"), ({"tolerance": 0.9}, "tolerance"),
                       ({"start": 50, "max_rate": 10}, "above max_rate"), ({"probes": 3}, "unknown parameter")]:
        with pytest.raises(CapacityError, match=words):
            settings(raw)


def test_admission_for_turns_capacity_into_a_waiting_room():
    room = admission_for(12.0)
    assert room.mode == "waiting-room" and room.rate == pytest.approx(9.6) and room.burst == 5
    assert admission_for(0.4).burst == 1
    assert admission_for(10.0, headroom=1.0).rate == 10.0
    with pytest.raises(CapacityError):
        admission_for(0.0)
    queue = admission_for(12.0, mode="queue")
    assert queue.mode == "queue" and queue.rate == pytest.approx(9.6) and queue.burst == 5
    with pytest.raises(CapacityError, match="allowed: waiting-room, queue"):
        admission_for(12.0, mode="moat")


def test_the_overload_scenario_runs_no_control_first_then_each_control():
    runs = scenario(18.0, 9.0, ("waiting-room", "queue"))
    assert [(suffix, label, a.mode) for suffix, label, a in runs] == [
        ("none", "no control", "off"), ("room", "waiting room", "waiting-room"), ("queue", "ticket queue", "queue")]
    assert runs[2][2].rate == pytest.approx(7.2)
    assert [a.mode for _, _, a in scenario(18.0)] == ["off", "waiting-room"]  # default: the waiting room only
    for bad in ((), ("moat",)):
        with pytest.raises(ValueError, match="allowed: one or more of waiting-room, queue"):
            scenario(18.0, 9.0, bad)


# --- the comparison table -----------------------------------------------------------------------------------


def _run(tmp_path, name: str, rows: list[tuple[float, float, str, int, float]], mode: str):
    """A run folder: per buyer (scheduled, end, outcome, queued, queue_wait)."""
    run_dir = tmp_path / name
    with Recorder.attempts(run_dir, name) as attempts, Recorder.requests(run_dir, name) as requests:
        for i, (scheduled, end, outcome, queued, wait) in enumerate(rows):
            aid = f"{name}-{i}"
            attempts.record(AttemptRecord(attempt_id=aid, buyer=str(i), journey="api", scheduled=scheduled,
                                          start=scheduled, end=end, outcome=outcome, queued=queued,
                                          queue_wait=wait))
            for q in range(queued):
                requests.record(RequestRecord(attempt_id=aid, buyer=str(i), journey="api", step="order",
                                              method="POST", url_path="/", scheduled=scheduled, start=scheduled + q,
                                              end=scheduled + q + 0.01, status=503, outcome="queued"))
            requests.record(RequestRecord(attempt_id=aid, buyer=str(i), journey="api", step="order", method="POST",
                                          url_path="/", scheduled=scheduled, start=scheduled + wait, end=end,
                                          status=201, outcome="ok" if outcome == "purchased" else "error"))
    (run_dir / "run.json").write_text(json.dumps({"admission": {"mode": mode}}))
    return run_dir


def test_admission_table_from_run_folders(tmp_path):
    none = _run(tmp_path, "none", [(0, 5, "purchased", 0, 0), (1, 4, "purchased", 0, 0), (2, 30, "failed", 0, 0),
                                   (3, 9, "purchased", 0, 0)], "off")
    room = _run(tmp_path, "room", [(0, 0.5, "purchased", 0, 0), (1, 3.5, "purchased", 2, 2.0),
                                   (2, 6.5, "purchased", 4, 4.0), (3, 63, "queued", 30, 60.0)], "waiting-room")
    table = admission_table([none, room]).set_index("label")
    assert list(table.index) == ["no control", "waiting room"]
    assert table.loc["no control", "purchased"] == 3 and table.loc["no control", "failed"] == 1
    assert table.loc["no control", "goodput_per_min"] == pytest.approx(60 * 3 / 30)
    assert table.loc["waiting room", "queued_buyers"] == 3 and table.loc["waiting room", "gave_up_in_queue"] == 1
    assert table.loc["waiting room", "queue_wait_p50_s"] == pytest.approx(4.0)
    assert table.loc["waiting room", "admitted_p95_s"] == pytest.approx(0.5)  # admission to purchase
    assert table.loc["waiting room", "fcfs_rank_corr"] == pytest.approx(1.0)
    assert table.loc["no control", "fcfs_rank_corr"] == pytest.approx(0.5)


def test_fairness_is_rank_correlation_of_arrival_and_purchase():
    import pandas as pd

    assert fairness(pd.DataFrame({"scheduled": [0, 1, 2, 3], "end": [1, 2, 3, 4]})) == pytest.approx(1.0)
    assert fairness(pd.DataFrame({"scheduled": [0, 1, 2, 3], "end": [4, 3, 2, 1]})) == pytest.approx(-1.0)
    assert math.isnan(fairness(pd.DataFrame({"scheduled": [0], "end": [1]})))
