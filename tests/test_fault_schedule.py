"""Fault schedules as data, the registry, the faults.parquet dataset and the per-fault analysis (no docker)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict

from lab.faults import (
    Fault,
    FaultActionError,
    FaultContext,
    FaultInstance,
    FaultScheduleError,
    UnknownFaultError,
    analyse_faults,
    check_fits,
    error_window,
    fault_spans,
    faults,
    latency_during_vs_before,
    parse_schedule,
    read_faults,
    run_schedule,
    time_to_recover,
)
from lab.faults.catalogue import groups
from lab.faults.probes import SteadyStateProbe, answered_rate
from lab.faults.record import FaultRecord, fault_recorder
from lab.faults.schedule import SteadyState
from lab.stack.topology import long_running, services

# --- the registry ---------------------------------------------------------------------------------------------


def test_builtins_are_registered_and_an_unknown_fault_names_the_known_ones():
    names = faults.names()
    for name in ("kill", "pause", "restart", "partition", "cpu-throttle", "memory-squeeze", "pg-failover"):
        assert name in names
    with pytest.raises(UnknownFaultError, match=r"No fault named 'tsunami'; known: cpu-throttle, kill, "):
        faults.get("tsunami")


def test_a_plugin_registers_exactly_like_a_builtin():
    @faults.register("test-noop")
    class Noop(Fault):
        def apply(self, container):
            return {"touched": container.name}

        def revert(self, container, state):
            return {"restored": state["touched"]}

    try:
        assert faults.get("test-noop") is Noop and Noop.name == "test-noop"
        plan = parse_schedule([{"at": 0, "target": "redis", "action": "test-noop", "duration": 1}])
        assert plan.fault_ids() == ["f1-test-noop"]
    finally:
        faults.unregister("test-noop")
    with pytest.raises(TypeError, match="must be a Fault subclass"):
        faults.register("bad", object)  # type: ignore[arg-type]


def test_targets_come_from_the_compose_topology():
    topology = services()
    allowed = faults.get("kill").allowed_targets()
    assert set(long_running()) <= set(allowed)
    assert "pretix-migrate" not in allowed  # one-shot jobs are not targets
    assert groups()["pretix-worker"] == ["pretix-worker-1", "pretix-worker-2"]
    assert faults.get("kill").services_of("pretix-worker") == ["pretix-worker-1", "pretix-worker-2"]
    postgres = [name for name, spec in topology.items() if "postgres" in spec.image]
    assert faults.get("pg-failover").allowed_targets() == postgres


# --- validation -----------------------------------------------------------------------------------------------


def test_a_valid_schedule_parses_with_defaults():
    plan = parse_schedule([
        {"at": 10, "target": "pretix-web-1", "action": "kill", "duration": 15},
        {"at": 40, "target": "pretix-worker", "action": "kill", "duration": 5, "id": "both-workers"},
        {"at": 40, "target": "redis", "action": "pause", "duration": 3},
        {"at": 60, "target": "pretix-web-2", "action": "cpu-throttle", "duration": 10, "options": {"cpus": 0.2}},
        {"at": 60, "target": "pretix-web-1", "action": "partition", "duration": 10},
        {"at": 80, "target": "proxy", "action": "restart", "duration": 0},
        {"at": 90, "target": "pretix-web-1", "action": "memory-squeeze", "duration": 10,
         "options": {"headroom_mib": 8}},
        {"at": 120, "target": "postgres-primary", "action": "pg-failover", "duration": 10},
    ])
    assert plan.fault_ids()[:3] == ["f1-kill", "both-workers", "f3-pause"]
    assert plan.steady_state.tolerance == 0.2 and plan.last_undo == 130
    same = parse_schedule({"faults": [s.model_dump() for s in plan.faults], "steady_state": {"settle": 30}})
    assert same.faults == plan.faults and same.steady_state.settle == 30
    assert parse_schedule(None).faults == [] and parse_schedule(plan) is plan


@pytest.mark.parametrize("raw, words", [
    ([{"at": 1, "target": "redis", "action": "nuke", "duration": 1}],
     r"faults\.0\.action: No fault named 'nuke'; known: cpu-throttle, kill, memory-squeeze"),
    ([{"at": 1, "target": "pretix-web-9", "action": "kill", "duration": 1}],
     r"faults\.0\.target: 'pretix-web-9' is not a target of 'kill'; allowed: proxy, pretix-web-1"),
    ([{"at": 1, "target": "redis", "action": "pg-failover", "duration": 1}],
     r"'redis' is not a target of 'pg-failover'; allowed: postgres-primary, postgres-replica"),
    ([{"at": -1, "target": "redis", "action": "pause", "duration": 1}], r"faults\.0\.at: must be >= 0"),
    ([{"at": 1, "target": "redis", "action": "pause"}], r"faults\.0\.duration: required"),
    ([{"at": 1, "target": "redis", "action": "pause", "duration": 1, "when": 3}],
     r"faults\.0\.when: unknown parameter; allowed: at, target, action, duration, options, id"),
    ([{"at": 1, "target": "redis", "action": "cpu-throttle", "duration": 1, "options": {"cpus": 0}}],
     r"faults\.0\.options\.cpus: must be > 0\.01"),
    ([{"at": 1, "target": "redis", "action": "pause", "duration": 1, "options": {"x": 1}}],
     r"faults\.0\.options\.x: unknown parameter; allowed: none$"),
    ([{"at": 1, "target": "pretix-web-1", "action": "partition", "duration": 1, "options": {"network": "dmz"}}],
     r"faults\.0\.options\.network: no network 'dmz' in stack/compose.yaml; known: edge, backend"),
    ([{"at": 1, "target": "pretix-worker", "action": "kill", "duration": 10},
      {"at": 5, "target": "pretix-worker-2", "action": "pause", "duration": 1}],
     r"faults\.1: overlaps faults\.0 \(f1-kill, 1-11 s\) on pretix-worker-2"),
    ([{"at": 1, "target": "postgres-primary", "action": "pg-failover", "duration": 10},
      {"at": 5, "target": "postgres-replica", "action": "pause", "duration": 1}],
     r"overlaps faults\.0 .* on postgres-replica"),
    ([{"at": 1, "target": "redis", "action": "pause", "duration": 1, "id": "x"},
      {"at": 5, "target": "proxy", "action": "pause", "duration": 1, "id": "x"}], r"the id 'x' is used more than once"),
    ({"faults": [], "steady_state": {"tolerance": 1.5}}, r"steady_state\.tolerance: must be > 0 and < 1"),
    ({"faults": [], "hypothesis": {}}, r"hypothesis: unknown parameter; allowed: faults, steady_state"),
    ("kill web", r"a schedule is a list of faults"),
])
def test_a_bad_schedule_is_refused_naming_the_field_and_the_allowed_values(raw, words):
    with pytest.raises(FaultScheduleError, match=words):
        parse_schedule(raw)


def test_every_mistake_is_reported_at_once():
    with pytest.raises(FaultScheduleError) as caught:
        parse_schedule([
            {"at": 1, "target": "redis", "action": "nuke", "duration": 1},
            {"at": -5, "target": "redis", "action": "pause", "duration": 1},
            {"at": 1, "target": "nowhere", "action": "pause", "duration": 1},
        ])
    text = str(caught.value)
    assert "faults.0.action" in text and "faults.1.at" in text and "faults.2.target" in text


def test_an_unknown_fault_is_refused_before_anything_runs(tmp_path):
    class Exploding:  # a docker client that must never be touched
        def __getattr__(self, name):
            raise AssertionError("the docker client was used before the schedule was validated")

    with pytest.raises(FaultScheduleError, match="No fault named 'x'"):
        asyncio.run(run_schedule([{"at": 0, "target": "redis", "action": "x", "duration": 1}], Exploding(),
                                 tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_schedule_must_be_undone_while_the_load_runs():
    plan = parse_schedule([{"at": 50, "target": "redis", "action": "pause", "duration": 5}])
    assert check_fits(plan, 120) == []
    assert "only 2 s of load after its undo" in check_fits(plan, 57)[0]
    with pytest.raises(FaultScheduleError, match=r"faults\.0: f1-pause is undone at 55 s, after the load's 40 s"):
        check_fits(plan, 40)


# --- the base class: undo once, always, and recorded ------------------------------------------------------------


class _FakeContainer:
    def __init__(self, name):
        self.name = name
        self.changed = False


class _FlakyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    break_second: bool = False


class _Flaky(Fault):
    """A fault whose revert fails once (the undo retries) and which counts its calls."""

    Options = _FlakyOptions
    fails = 1

    def containers(self):
        return [("svc-1", _FakeContainer("c1")), ("svc-2", _FakeContainer("c2"))]

    def apply(self, container):
        if container.name == "c2" and self.options.break_second:
            raise RuntimeError("second container refused")
        container.changed = True
        return {"was": "fine"}

    def revert(self, container, state):
        if self.fails:
            self.fails -= 1
            raise ConnectionError("engine busy")
        container.changed = False
        return {"restored": True}


def test_undo_runs_once_retries_and_records_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr("lab.faults.catalogue.UNDO_RETRY_PAUSE", 0.0)
    recorder = fault_recorder(tmp_path, "run-x")
    fault = _Flaky(FaultInstance("f1", "flaky", "svc"), FaultContext(docker=None, record=recorder.record))
    fault.inject()
    assert fault.active and all(a.container.changed for a in fault.applied)
    fault.undo("scheduled")
    fault.undo("cleanup")  # a second call does nothing
    recorder.close()
    rows = read_faults(tmp_path)
    assert list(rows["phase"]) == ["inject", "inject", "undo", "undo"]
    assert rows["ok"].all() and (rows["run_id"] == "run-x").all()
    assert '"tries": 2' in rows.iloc[2]["detail"] and '"tries": 1' in rows.iloc[3]["detail"]
    assert (rows["end"] >= rows["start"]).all() and abs(rows["start"].iloc[0] - time.time()) < 60


def test_a_failed_inject_is_recorded_and_what_was_applied_is_undone(tmp_path):
    recorder = fault_recorder(tmp_path, "run-y")
    fault = _Flaky(FaultInstance("f1", "flaky", "svc", {"break_second": True}),
                   FaultContext(docker=None, record=recorder.record))
    fault.fails = 0
    with pytest.raises(FaultActionError, match="second container refused"):
        fault.inject()
    fault.undo("inject failed")
    recorder.close()
    rows = read_faults(tmp_path)
    assert list(zip(rows["phase"], rows["container"], rows["outcome"], strict=True)) == [
        ("inject", "c1", "ok"), ("inject", "c2", "error"), ("undo", "c1", "ok")]
    assert "RuntimeError: second container refused" in rows.iloc[1]["error"]
    assert not fault.applied[0].container.changed


def test_a_fault_undone_before_it_was_injected_is_never_injected(tmp_path):
    recorder = fault_recorder(tmp_path, "run-z")
    fault = _Flaky(FaultInstance("f1", "flaky", "svc"), FaultContext(docker=None, record=recorder.record))
    fault.undo("cancelled")
    fault.inject()
    recorder.close()
    rows = read_faults(tmp_path)
    assert list(rows["outcome"]) == ["skipped"] and rows["ok"].isna().all()
    assert not fault.applied


def test_faults_parquet_refuses_a_wrong_outcome(tmp_path):
    recorder = fault_recorder(tmp_path, "r")
    with pytest.raises(ValueError, match="outcome 'maybe'"):
        recorder.record(FaultRecord(fault_id="f", action="a", target="t", container=None, phase="probe",
                                    start=0.0, end=1.0, outcome="maybe"))


# --- the steady-state throughput check on a recorded history ----------------------------------------------------


def _attempts(t0, seconds, rate, latency=0.2, outcome="purchased", gap=None):
    scheduled = t0 + np.arange(int(seconds * rate)) / rate
    frame = pd.DataFrame({"attempt_id": [f"a{t0}-{i}" for i in range(len(scheduled))], "scheduled": scheduled,
                          "start": scheduled, "end": scheduled + latency, "outcome": outcome})
    if gap is not None:  # nothing answered within the gap; those attempts fail at its end
        inside = (frame["scheduled"] >= gap[0]) & (frame["scheduled"] < gap[1])
        frame.loc[inside, "outcome"] = "failed"
        frame.loc[inside, "end"] = gap[1]
    return frame


def test_throughput_check_against_the_baseline(monkeypatch):
    t0 = 1_000.0
    history = _attempts(t0, 60, 4.0, gap=(1_030.0, 1_040.0))
    probe = SteadyStateProbe(SteadyState(window=5, flush_lag=1, tolerance=0.2), t0=t0, run_dir=".")
    monkeypatch.setattr(probe, "_attempts", lambda: history)
    assert probe.throughput(t0 + 4)["outcome"] == "skipped"  # not enough history for a baseline yet
    before = probe.throughput(t0 + 29)
    assert before["outcome"] == "pass" and before["baseline"] == pytest.approx(4.0, rel=0.05)
    assert probe.throughput(t0 + 38)["outcome"] == "fail"  # inside the outage
    assert probe.throughput(t0 + 44, since=t0 + 40)["outcome"] == "skipped"  # window not yet after the undo
    assert probe.throughput(t0 + 47, since=t0 + 40)["outcome"] == "pass"
    assert answered_rate(history, t0 + 10, t0 + 20) == (4.0, 40)


# --- the per-fault analysis on synthetic frames with known answers -------------------------------------------------


def _fault_rows(fault_id, action, inject, undo):
    base = {"run_id": "r", "fault_id": fault_id, "action": action, "target": "pretix-web-1",
            "container": "pretix-lab-pretix-web-1-1", "error": None}
    return [
        {**base, "phase": "probe", "probe": "before", "start": inject - 0.5, "end": inject - 0.1, "outcome": "pass",
         "ok": True, "detail": None},
        {**base, "phase": "inject", "probe": None, "start": inject, "end": inject + 0.3, "outcome": "ok", "ok": True,
         "detail": '{"service": "pretix-web-1"}'},
        {**base, "phase": "undo", "probe": None, "start": undo - 0.4, "end": undo, "outcome": "ok", "ok": True,
         "detail": None},
        {**base, "phase": "probe", "probe": "after", "start": undo, "end": undo + 9, "outcome": "pass", "ok": True,
         "detail": None},
    ]


def test_error_window_spans_the_failed_attempts_around_the_fault():
    t0 = 1_000.0
    attempts = _attempts(t0, 120, 4.0, gap=(1_040.0, 1_048.0))
    window = error_window(attempts, 1_040.0, 1_100.0)
    assert window.count == 32 and window.first == window.last == 1_048.0
    requests = pd.DataFrame({"step": "order", "outcome": ["ok", "error", "error", "error", "ok"],
                             "scheduled": [1_000.0] * 5, "end": [1_039.0, 1_040.5, 1_043.0, 1_047.5, 1_049.0]})
    request_window = error_window(requests, 1_040.0, 1_100.0)
    assert (request_window.first, request_window.last, request_window.count) == (1_040.5, 1_047.5, 3)
    assert request_window.duration == pytest.approx(7.0)
    assert error_window(attempts, 1_000.0, 1_030.0).count == 0


def test_time_to_recover_is_when_throughput_is_back_within_ten_percent():
    t0 = 1_000.0
    # 4/s; nothing answered from 1040 to 1050 (the fault lasts 1040-1045: recovery takes 5 s after the undo)
    attempts = _attempts(t0, 120, 4.0, gap=(1_040.0, 1_050.0))
    attempts = attempts[attempts["outcome"] == "purchased"]  # the failed ones are not answered anyway
    recovery = time_to_recover(attempts, 1_040.0, 1_045.0, 1_100.0, smooth=1)
    assert recovery.pre_rate == pytest.approx(4.0)
    assert recovery.deviated and recovery.recovered and recovery.min_rate == 0.0
    assert recovery.time_to_recover == pytest.approx(10.0, abs=1.0)
    assert recovery.after_undo == pytest.approx(5.0, abs=1.0)
    early = time_to_recover(attempts, 1_040.0, 1_045.0, 1_100.0, smooth=1, baseline_seconds=300)
    assert early.pre_rate == pytest.approx(4.0)  # the baseline starts with the load, not before it
    steady = time_to_recover(_attempts(t0, 120, 4.0), 1_040.0, 1_045.0, 1_100.0)
    assert not steady.deviated and steady.time_to_recover == 0.0
    never = time_to_recover(attempts[attempts["end"] < 1_040.0], 1_040.0, 1_045.0, 1_100.0)
    assert never.deviated and not never.recovered and np.isnan(never.time_to_recover)


def test_a_catch_up_burst_is_not_yet_recovered():
    t0 = 1_000.0
    attempts = _attempts(t0, 120, 4.0)
    burst = _attempts(1_050.0, 5, 4.0)  # 5 s of retried attempts answered on top of the steady ones
    burst["attempt_id"] += "-retry"
    recovery = time_to_recover(pd.concat([attempts, burst]), 1_045.0, 1_046.0, 1_100.0, smooth=1)
    assert recovery.deviated and recovery.recovered_at == pytest.approx(1_055.0, abs=1.0)


def test_latency_during_the_fault_vs_before():
    t0 = 1_000.0
    before = _attempts(t0, 40, 4.0, latency=0.2)
    during = _attempts(1_040.0, 10, 4.0, latency=3.0)
    table = latency_during_vs_before(pd.concat([before, during]), 1_040.0, 1_050.0, baseline_seconds=30)
    assert table.loc["before", "count"] == 120 and table.loc["during", "count"] == 40
    assert table.loc["before", "p95"] == pytest.approx(0.2) and table.loc["during", "p50"] == pytest.approx(3.0)


def test_analyse_faults_gives_one_row_per_fault():
    t0 = 1_000.0
    attempts = _attempts(t0, 180, 4.0, gap=(1_040.0, 1_046.0))
    slow = (attempts["scheduled"] >= 1_100.0) & (attempts["scheduled"] < 1_110.0)
    attempts.loc[slow, "end"] = attempts.loc[slow, "scheduled"] + 2.0
    faults_frame = pd.DataFrame(_fault_rows("f1-kill", "kill", 1_040.0, 1_045.0)
                                + _fault_rows("f2-pause", "pause", 1_100.0, 1_110.0))
    spans = fault_spans(faults_frame)
    assert list(spans["fault_id"]) == ["f1-kill", "f2-pause"] and spans["undo_ok"].all()
    table = analyse_faults(faults_frame, attempts).set_index("fault_id")
    kill, pause = table.loc["f1-kill"], table.loc["f2-pause"]
    assert kill["failed_attempts"] == 24 and kill["attempt_errors_from"] == pytest.approx(6.0)
    assert kill["horizon"] == 1_100.0  # the next fault's injection ends the first one's horizon
    assert kill["recovery_recovered"] and 5 <= kill["recovery_time_to_recover"] <= 10
    assert pause["failed_attempts"] == 0
    assert pause["latency_during_p50"] == pytest.approx(2.0) and pause["latency_before_p50"] == pytest.approx(0.2)
    assert kill["steady_before"] == "pass" and kill["steady_after"] == "pass"


# --- run_schedule's own guarantees, with a plugin fault that touches no docker ----------------------------------

class _Memo(Fault):
    """A plugin fault on a pretend container: records what it was asked to do."""

    calls: list[tuple[str, str, float]] = []

    def containers(self):
        return [(self.instance.target, _FakeContainer(f"fake-{self.instance.target}"))]

    def apply(self, container):
        if self.instance.action == "test-fail":
            raise RuntimeError("refused on purpose")
        _Memo.calls.append(("apply", container.name, time.time()))

    def revert(self, container, state):
        _Memo.calls.append(("revert", container.name, time.time()))
        return {}


QUIET = {"health": False, "containers": False, "throughput": False}


@pytest.fixture
def memo_faults():
    _Memo.calls = []
    faults.register("test-memo", _Memo)
    faults.register("test-fail", _Memo)
    yield _Memo.calls
    faults.unregister("test-memo")
    faults.unregister("test-fail")


def test_faults_act_at_their_time_and_are_undone_after_their_duration(memo_faults, tmp_path):
    t0 = time.time()
    result = asyncio.run(run_schedule({"faults": [
        {"at": 0.3, "target": "redis", "action": "test-memo", "duration": 0.4},
        {"at": 0.1, "target": "proxy", "action": "test-memo", "duration": 0.1}], "steady_state": QUIET},
        None, tmp_path, t0, log=lambda line: None))
    assert result.ok
    when = {(kind, name): at - t0 for kind, name, at in memo_faults}
    assert when[("apply", "fake-proxy")] == pytest.approx(0.1, abs=0.1)
    assert when[("revert", "fake-proxy")] == pytest.approx(0.2, abs=0.1)
    assert when[("apply", "fake-redis")] == pytest.approx(0.3, abs=0.1)
    assert when[("revert", "fake-redis")] == pytest.approx(0.7, abs=0.15)
    rows = read_faults(tmp_path)
    assert set(rows["phase"]) == {"inject", "undo", "probe"}
    assert (rows[rows["phase"] == "probe"]["outcome"] == "skipped").all()  # every check switched off


def test_cancelling_the_schedule_undoes_what_is_active(memo_faults, tmp_path):
    async def main():
        task = asyncio.create_task(run_schedule(
            {"faults": [{"at": 0, "target": "redis", "action": "test-memo", "duration": 300},
                        {"at": 200, "target": "proxy", "action": "test-memo", "duration": 1}],
             "steady_state": QUIET}, None, tmp_path, log=lambda line: None))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    began = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - began < 5
    assert [c[:2] for c in memo_faults] == [("apply", "fake-redis"), ("revert", "fake-redis")]
    undo = read_faults(tmp_path).query("phase == 'undo'").iloc[0]
    assert '"reason": "cancelled"' in undo["detail"]


def test_a_failing_fault_stops_the_schedule_and_everything_is_undone(memo_faults, tmp_path):
    with pytest.raises(FaultActionError, match="refused on purpose"):
        asyncio.run(run_schedule({"faults": [
            {"at": 0, "target": "redis", "action": "test-memo", "duration": 300},
            {"at": 0.2, "target": "proxy", "action": "test-fail", "duration": 1}], "steady_state": QUIET},
            None, tmp_path, log=lambda line: None))
    assert [c[:2] for c in memo_faults] == [("apply", "fake-redis"), ("revert", "fake-redis")]
    rows = read_faults(tmp_path)
    failed = rows[(rows["phase"] == "inject") & (rows["outcome"] == "error")]
    assert len(failed) == 1 and "refused on purpose" in failed.iloc[0]["error"]


# --- the wait after an undo ends at the next fault -------------------------------------------------------------------

def _probe_answering(outcomes: list[str]):
    """A steady-state probe whose checks answer `outcomes` in turn (then the last one forever): the decision under
    test is when the wait after an undo ends and what it is called, not the checks themselves."""
    from lab.faults.probes import SteadyStateProbe, Verdict
    from lab.faults.schedule import SteadyState

    probe = SteadyStateProbe(SteadyState(settle=3, throughput=False, health=False, containers=False, shop=False),
                             t0=time.time())
    answers = iter(outcomes)
    last = {"outcome": outcomes[-1]}

    async def check(services, since=None):
        last["outcome"] = next(answers, last["outcome"])
        return Verdict(last["outcome"], {"throughput": {"outcome": last["outcome"]}})

    probe.check = check  # type: ignore[method-assign]
    return probe


@pytest.mark.parametrize(("outcomes", "next_in", "expect", "cut_by"), [
    (["fail"], 1.5, "cut", "f4-kill"),  # the next fault came first: not known to have failed
    (["fail"], None, "fail", None),  # no next fault: the whole settle time, then a failure
    (["fail"], 30.0, "fail", None),  # the next fault comes after the settle time: a real failure
    (["fail", "pass"], 1.5, "pass", None),  # held before the next fault
])
def test_the_wait_after_an_undo_ends_when_the_next_fault_is_injected(outcomes, next_in, expect, cut_by):
    probe = _probe_answering(outcomes)
    now = time.time()

    def injected_since():  # what the runner answers: a fault injected after this undo, by its injection time
        return "f4-kill" if next_in is not None and time.time() >= now + next_in else None

    began = time.monotonic()
    verdict = asyncio.run(probe.after([], now, injected_since))
    assert (verdict.outcome, verdict.cut_by) == (expect, cut_by)
    assert verdict.ok is {"pass": True, "fail": False}.get(expect)
    waited = time.monotonic() - began
    if expect == "cut":
        assert waited < 3 and verdict.detail()["cut_by"] == "f4-kill"  # it stopped at the next fault, not at settle
    elif expect == "fail":
        assert waited >= 3


def test_a_fault_injected_after_an_undo_cuts_that_undos_wait(memo_faults, tmp_path, monkeypatch):
    """The runner tells each after-undo wait which fault was injected since: f1's check, failing, is cut by f2's
    injection (not waited out to `settle`); f2, with nothing after it, fails after `settle`."""
    from lab.faults.probes import SteadyStateProbe, Verdict

    async def failing_after_an_undo(self, services, since=None):
        return Verdict("pass" if since is None else "fail", {"throughput": {"outcome": "fail"}})

    monkeypatch.setattr(SteadyStateProbe, "check", failing_after_an_undo)
    t0 = time.time()
    result = asyncio.run(run_schedule({"faults": [
        {"at": 0.1, "target": "proxy", "action": "test-memo", "duration": 0.1},
        {"at": 0.8, "target": "redis", "action": "test-memo", "duration": 0.1}],
        "steady_state": {**QUIET, "settle": 2.5}}, None, tmp_path, t0, log=lambda line: None))
    first, second = result.faults
    assert (first.after.outcome, first.after.cut_by) == ("cut", second.fault_id)
    assert 0.5 <= first.after.waited < 2.0  # f2's injection (0.6 s after f1's undo), seen at the next 1 s poll
    assert (second.after.outcome, second.after.cut_by) == ("fail", None) and second.after.waited >= 2.5
    rows = read_faults(tmp_path)
    after = rows[(rows["phase"] == "probe") & (rows["probe"] == "after")].set_index("fault_id")["outcome"]
    assert after.to_dict() == {first.fault_id: "cut", second.fault_id: "fail"}
