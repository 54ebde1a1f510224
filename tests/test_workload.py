"""Workloads are data: exact schedules from the declared rates, and plain sentences for every mistake."""

from __future__ import annotations

import numpy as np
import pytest

from lab.load.workload import (
    WORKLOADS,
    ClosedWorkload,
    ConstantWorkload,
    OpenWorkload,
    RampWorkload,
    SpikeWorkload,
    WorkloadError,
    parse_workload,
    register_workload,
)


def test_constant_schedule_matches_the_rate_integral():
    w = parse_workload({"model": "constant", "rate": 10, "duration": 3})
    s = w.schedule()
    assert isinstance(w, ConstantWorkload) and len(s) == w.planned == 30
    np.testing.assert_allclose(s, np.arange(30) / 10)  # k6: the first arrival at t=0, then every 1/rate
    assert w.target_rate == pytest.approx(10)


def test_ramp_interpolates_linearly_like_k6():
    w = parse_workload({"model": "ramp", "start_rate": 0, "stages": [{"duration": 10, "target": 10}]})
    s = w.schedule()
    assert len(s) == w.planned == 50
    np.testing.assert_allclose(s, np.sqrt(2 * np.arange(50)))  # the cumulative count t^2/2 reaches i at sqrt(2i)
    assert w.offered_rate_at(5.0) == pytest.approx(5.0)
    counts, _ = np.histogram(s, bins=[0, 5, 10])
    assert counts.tolist() == [13, 37]  # a quarter of the arrivals in the first half


def test_multi_stage_ramp_with_plateau_pause_and_ramp_down():
    stages = [{"duration": 10, "target": 20}, {"duration": 5, "target": 20}, {"duration": 5, "target": 0},
              {"duration": 2, "target": 0}, {"duration": 4, "target": 8}]
    w = parse_workload({"model": "ramp", "start_rate": 4, "stages": stages})
    s = w.schedule()
    assert len(s) == 120 + 100 + 50 + 0 + 16
    assert np.all(np.diff(s) > 0) and s[0] == 0 and s[-1] < 26
    assert not np.any((s > 20.001) & (s < 22))  # nothing is offered while the rate is 0
    assert w.total_duration == 26 and w.peak_rate == 20
    np.testing.assert_allclose(w.offered_rate_at(np.array([-1, 0, 5, 12, 17.5, 21, 24, 26, 27])),
                               [0, 4, 12, 20, 10, 0, 4, 8, 0])


def test_spike_spreads_buyers_evenly_over_the_window():
    w = parse_workload({"model": "spike", "buyers": 1000, "within": 10})
    s = w.schedule()
    assert len(s) == 1000 and s[0] == 0 and s[-1] < 10
    np.testing.assert_allclose(np.diff(s), 0.01)


@pytest.mark.parametrize("raw", [
    {"model": "constant", "rate": 100, "duration": 20},
    {"model": "spike", "buyers": 2000, "within": 5},
    {"model": "ramp", "stages": [{"duration": 30, "target": 200}]},
])
def test_poisson_keeps_the_count_and_is_reproducible(raw):
    w = parse_workload({**raw, "arrivals": "poisson", "seed": 42})
    s = w.schedule()
    assert len(s) == w.planned and np.all(np.diff(s) >= 0) and s[0] >= 0 and s[-1] <= w.total_duration
    np.testing.assert_array_equal(s, w.schedule())
    assert not np.array_equal(s, parse_workload({**raw, "arrivals": "poisson", "seed": 43}).schedule())


def test_poisson_gaps_look_exponential():
    gaps = np.diff(parse_workload({"model": "constant", "rate": 100, "duration": 60, "arrivals": "poisson"})
                   .schedule())
    assert gaps.mean() == pytest.approx(0.01, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.1)  # uniform spacing would give 0


def test_closed_model_exposes_users_and_think_time():
    w = parse_workload({"model": "closed", "users": 20, "think_time": 1.5, "duration": 60, "iterations": 3})
    assert isinstance(w, ClosedWorkload) and w.kind == "closed"
    assert (w.users, w.think_time, w.planned) == (20, 1.5, 60)
    assert ClosedWorkload(users=2, duration=1).planned is None
    assert ClosedWorkload(users=2, duration=1).think_sampler(0)() == 0.0


def test_describe_is_one_line():
    for raw in [{"model": "constant", "rate": 10, "duration": 3},
                {"model": "ramp", "stages": [{"duration": 10, "target": 10}], "arrivals": "poisson"},
                {"model": "spike", "buyers": 500, "within": 2},
                {"model": "closed", "users": 5, "duration": 30, "iterations": 2}]:
        text = parse_workload(raw).describe()
        assert "\n" not in text and raw["model"] in text


def test_registry_lists_the_builtins_and_accepts_plugins():
    assert list(WORKLOADS)[:4] == ["constant", "ramp", "spike", "closed"]
    with pytest.raises(WorkloadError) as err:
        parse_workload({"model": "x"})
    assert str(err.value) == ("invalid workload: model: No workload model named 'x'; known: constant, ramp, spike, "
                              "closed")
    assert err.value.field == "model" and err.value.allowed == ("constant", "ramp", "spike", "closed")

    from typing import Literal

    import lab.load.workload as module

    @register_workload
    class Steps(OpenWorkload):
        model: Literal["steps"] = "steps"

        def breakpoints(self):
            return np.array([0.0, 1.0]), np.array([5.0, 5.0])

        def describe(self) -> str:
            return "steps"

    try:
        assert len(parse_workload({"model": "steps"}).schedule()) == 5
    finally:
        module.WORKLOADS.pop("steps")


@pytest.mark.parametrize("raw,expected", [
    ({"rate": 1}, ["needs a 'model' field", "constant, ramp, spike, closed"]),
    ({"model": "constant", "rate": 0, "duration": 1}, ["rate: must be > 0 and <= 5000 (got 0)"]),
    ({"model": "constant", "rate": 1, "duration": 4000}, ["duration: must be > 0 and <= 3600 (got 4000)"]),
    ({"model": "constant", "rate": 1}, ["duration: required (must be > 0 and <= 3600)"]),
    ({"model": "constant", "rate": 1, "duration": 1, "users": 3}, ["users: unknown parameter; allowed:", "rate"]),
    ({"model": "constant", "rate": 1, "duration": 1, "arrivals": "pareto"},
     ["arrivals: must be one of 'uniform', 'poisson' (got 'pareto')"]),
    ({"model": "ramp", "stages": [{"duration": 1, "target": 1}, {"duration": 1, "target": 9000}]},
     ["stages.1.target: must be >= 0 and <= 5000 (got 9000)"]),
    ({"model": "ramp", "stages": [{"duration": 1, "target": 1, "hold": 2}]},
     ["stages.0.hold: unknown parameter; allowed: duration, target"]),
    ({"model": "ramp", "stages": []}, ["stages: needs at least 1 item"]),
    ({"model": "ramp", "stages": [{"duration": 5, "target": 0}]}, ["stages: the schedule offers no arrivals"]),
    ({"model": "ramp", "stages": [{"duration": 3000, "target": 1}, {"duration": 3000, "target": 1}]},
     ["stages: the total duration 6000 s is above the 3600 s limit"]),
    ({"model": "spike", "buyers": 50000, "within": 1}, ["within: the peak rate 50000/s is above the 5000/s"]),
    ({"model": "constant", "rate": 1000, "duration": 60, "max_attempts": 1000},
     ["max_attempts: the schedule makes 60000 arrivals, above max_attempts=1000"]),
    ({"model": "closed", "users": 0, "duration": 1}, ["users: must be >= 1 and <= 10000 (got 0)"]),
    ({"model": "closed", "users": 5, "duration": 1, "think_time": -1}, ["think_time: must be >= 0 and <= 600"]),
    ({"model": "closed", "users": 50, "duration": 1, "max_in_flight": 10}, ["users: 50 users exceed max_in_flight"]),
    ({"model": "constant", "rate": 1, "duration": 1, "grace": -1}, ["grace: must be >= 0 and <= 600 (got -1)"]),
])
def test_mistakes_name_the_field_and_what_is_allowed(raw, expected):
    with pytest.raises(WorkloadError) as err:
        parse_workload(raw)
    assert isinstance(err.value, ValueError)
    for text in expected:
        assert text in str(err.value)


def test_every_bad_field_is_named_in_one_line_and_carried_as_an_attribute():
    with pytest.raises(WorkloadError) as err:
        parse_workload({"model": "constant", "rate": -1, "duration": 0, "seed": "x"})
    assert len(str(err.value).splitlines()) == 1 and str(err.value).startswith("invalid 'constant' workload: ")
    assert err.value.fields == ["seed", "rate", "duration"]
    assert err.value.problems[1].allowed == ("> 0", "<= 5000")


def test_models_are_frozen_and_round_trip_as_parameters():
    w = parse_workload({"model": "spike", "buyers": 100, "within": 2, "arrivals": "poisson", "seed": 3})
    assert isinstance(w, SpikeWorkload)
    assert parse_workload(w.model_dump()) == w
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is an implementation detail
        w.buyers = 5  # type: ignore[misc]
    assert isinstance(parse_workload(RampWorkload(stages=[{"duration": 1, "target": 2}])), RampWorkload)
