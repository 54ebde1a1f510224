"""`lab bench efficiency`'s arithmetic, without Docker: modules, CPU per order, idle cores, medians, the last line."""

from __future__ import annotations

import math

import pytest

from lab.analysis import efficiency as eff
from lab.experiments.bench import Step
from lab.experiments.bench_efficiency import side_repeat
from lab.stack.cpu import parse_proc_stat
from lab.stack.topology import services


@pytest.mark.parametrize("service, module", [
    ("pretix-web-1", "web"), ("pretix-web-2", "web"), ("pretix-web", "web"), ("pretix-worker-1", "celery"),
    ("pretix-worker", "celery"), ("pretix-cron", "cron"), ("postgres-primary", "pg primary"),
    ("postgres-replica", "pg replica"), ("redis", "redis"), ("redis-replica", "redis"),
    ("redis-sentinel-1", "sentinels"), ("redis-sentinel-3", "sentinels"), ("proxy", "proxy"),
    ("monitor", "monitor"), ("generator", "generator"), ("pretix-migrate", "other"), ("pretix-webhook", "other"),
])
def test_each_service_counts_under_one_module(service, module):
    assert eff.module_of(service) == module


def test_every_long_running_service_of_the_topology_has_a_module_of_its_own():
    """compose.yaml is the one topology: a service added there must not land in 'other' unnoticed."""
    for name, spec in services().items():
        if not spec.one_shot:
            assert eff.module_of(name) != "other", name


def test_by_module_sums_services_and_adds_the_generator():
    out = eff.by_module({"pretix-web-1": 2.0, "pretix-web-2": 1.0, "redis-sentinel-1": 0.5,
                         "redis-sentinel-2": 0.25, "pretix-migrate": 0.1}, generator=0.4)
    assert set(out) == set(eff.MODULES)
    assert out["web"] == 3.0 and out["sentinels"] == 0.75 and out["generator"] == 0.4 and out["other"] == 0.1
    assert out["pg replica"] == 0.0


def test_per_order_divides_and_refuses_zero_orders():
    assert eff.per_order({"web": 3.0, "celery": 0.6}, 20) == {"web": 0.15, "celery": 0.03}
    assert all(math.isnan(v) for v in eff.per_order({"web": 3.0}, 0).values())


def test_idle_cores_is_cores_minus_busy_over_the_window():
    assert eff.idle_cores(2, busy_seconds=30.0, wall_seconds=20.0) == pytest.approx(0.5)
    assert eff.idle_cores(2, busy_seconds=50.0, wall_seconds=20.0) == 0.0  # counters are never exact: no negatives
    assert math.isnan(eff.idle_cores(2, 1.0, 0.0))


def test_proc_stat_busy_and_idle_seconds():
    text = "cpu  100 20 30 400 50 6 4 10 0 0\ncpu0 50 10 15 200 25 3 2 5 0 0\nintr 1\n"
    busy, idle = parse_proc_stat(text, ticks_per_second=100)
    assert busy == pytest.approx((100 + 20 + 30 + 6 + 4 + 10) / 100)
    assert idle == pytest.approx((400 + 50) / 100)
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1\n")


def test_spread_is_median_and_range_of_what_was_measured():
    s = eff.spread([300.0, 420.0, 360.0, math.nan])
    assert (s.median, s.low, s.high, s.n) == (360.0, 300.0, 420.0, 3)
    assert s.text() == "360 (300-420)"
    assert eff.spread([0.1, 0.2]).median == pytest.approx(0.15)
    empty = eff.spread([math.nan])
    assert empty.n == 0 and empty.text() == "-"


def _step(rate: float, purchased: int, cpu: dict[str, float], gen: float = 1.0) -> Step:
    return Step(rate=rate, launched=purchased, purchased=purchased, sold_out=0, failed=0, dropped=0, p50=0.2,
                p95=0.5, p99=0.6, achieved_per_min=60 * purchased / 20, generator_cpu=gen, stack_cpu=cpu,
                wall=25.0, host_busy=40.0)


def test_side_repeat_takes_the_top_sustained_step():
    rep = side_repeat("stack", 1, _step(6.0, 120, {"pretix-web-1": 12.0, "postgres-primary": 6.0}), cores=2)
    assert rep.sustained_per_min == 360.0 and rep.rate == 6.0 and rep.orders == 120
    assert rep.cpu_per_order["web"] == pytest.approx(0.1)
    assert rep.cpu_per_order["pg primary"] == pytest.approx(0.05)
    assert rep.cpu_per_order["generator"] == pytest.approx(1 / 120)
    assert rep.idle_cores == pytest.approx(2 - 40 / 25)
    none = side_repeat("alone", 2, None, cores=2)
    assert none.sustained_per_min == 0.0 and none.cpu_per_order == {} and math.isnan(none.idle_cores)


def test_summaries_are_medians_per_side_and_the_last_line_is_exact():
    reps = [side_repeat("stack", 1, _step(6.0, 120, {"pretix-web-1": 12.0}), 2),
            side_repeat("alone", 1, _step(9.0, 180, {"pretix-web": 9.0}), 2),
            side_repeat("alone", 2, _step(7.5, 150, {"pretix-web": 9.0}), 2),
            side_repeat("stack", 2, _step(4.5, 90, {"pretix-web-1": 12.0}), 2),
            side_repeat("stack", 3, _step(6.0, 120, {"pretix-web-1": 12.0}), 2),
            side_repeat("alone", 3, None, 2)]
    stack, alone = eff.summarise("stack", reps), eff.summarise("alone", reps)
    assert (stack.sustained.median, stack.sustained.low, stack.sustained.high) == (360.0, 270.0, 360.0)
    assert (alone.sustained.median, alone.sustained.low, alone.sustained.high) == (450.0, 0.0, 540.0)
    assert stack.cpu_per_order["web"].median == pytest.approx(0.1)
    assert alone.cpu_per_order["web"].n == 2  # the repeat with no sustained step has no cost to give
    assert stack.total_per_order.median == pytest.approx(0.1 + 1 / 120)
    assert eff.efficiency_line(stack.sustained.median, alone.sustained.median) == \
        "efficiency: stack/alone = 0.80; stack sustained = 360/min; alone sustained = 450/min"
    lines = eff.table(stack, alone)
    assert lines[1].split()[:3] == ["sustained", "purchases/min", "360"]
    assert not any("pg replica" in line for line in lines)  # a module neither side used is left out


def test_last_line_when_pretix_alone_sustained_nothing():
    assert eff.efficiency_line(300.4, 0.0) == \
        "efficiency: stack/alone = nan; stack sustained = 300/min; alone sustained = 0/min"
    assert eff.efficiency_line(599.5, 600.0).startswith("efficiency: stack/alone = 1.00; stack sustained = 600/min")


_ROOT = ('process 7:"gunicorn: worker [pretix-web]";run (gunicorn/arbiter.py);handle (gunicorn/workers/sync.py);'
         "WSGIHandler.__call__ (django/core/handlers/wsgi.py);ApiScopeMiddleware.__call__ (pretix/api/middleware.py)")
RAW = "\n".join([
    f"{_ROOT};create (pretix/api/views/order.py);execute_sql (django/db/models/sql/compiler.py) 30",
    f"{_ROOT};create (pretix/api/views/order.py);compute (pretix/base/services/quotas.py) 10",
    f"{_ROOT};recv (socket.py) 60",
    'process 8:"gunicorn: worker [pretix-web]";run (gunicorn/arbiter.py);wait (gunicorn/workers/sync.py) 500',
    "not a sample line",
])


def test_pyspy_raw_output_gives_inclusive_and_own_shares():
    from lab.analysis.pyspy import lines, parse_raw, profile

    stacks = parse_raw(RAW)
    assert len(stacks) == 4 and stacks[0][0][0] == "run (gunicorn/arbiter.py)"  # py-spy's process frame dropped
    p = profile(RAW, top=3)
    assert p.samples == 100  # the idle worker's 500 samples served no request: left out
    # the middleware is on every request's stack: the way in, left out of the inclusive list
    assert [(f.frame, f.share) for f in p.inclusive] == [
        ("create (pretix/api/views/order.py)", 0.4), ("execute_sql (django/db/models/sql/compiler.py)", 0.3),
        ("compute (pretix/base/services/quotas.py)", 0.1)]  # gunicorn's frames are in every sample: left out
    assert [f.frame for f in p.own] == ["recv (socket.py)", "execute_sql (django/db/models/sql/compiler.py)",
                                        "compute (pretix/base/services/quotas.py)"]
    assert "   40.0%  create (pretix/api/views/order.py)" in lines("stack", p)


def test_py_spy_is_pinned_in_the_bench_extra():
    from lab.experiments.bench_profile import pinned

    assert pinned().startswith("py-spy==")


def test_gunicorn_masters_are_the_gunicorn_processes_without_a_gunicorn_parent():
    from lab.experiments.bench_profile import gunicorn_masters

    class FakeContainer:
        def top(self):
            return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": [
                ["15371", "100", "90", "0", "x", "?", "0", "/usr/bin/tini -- pretix-lab-entrypoint web"],
                ["15371", "101", "100", "0", "x", "?", "0", "/opt/pretix/venv/bin/python3 gunicorn pretix.wsgi"],
                ["15371", "102", "101", "0", "x", "?", "0", "/opt/pretix/venv/bin/python3 gunicorn pretix.wsgi"],
                ["15371", "103", "101", "0", "x", "?", "0", "/opt/pretix/venv/bin/python3 gunicorn pretix.wsgi"]]}

    assert gunicorn_masters(FakeContainer()) == [101]


def test_a_side_that_never_broke_is_named_as_a_floor():
    reps = [side_repeat("alone", 1, _step(12.0, 240, {"pretix-web": 9.0}), 2, capped=True),
            side_repeat("stack", 1, _step(9.0, 180, {"pretix-web-1": 9.0}), 2)]
    assert eff.capped_note(reps) == ("never broke at the highest rate offered: alone (repeat 1); that capacity is a "
                                     "floor: raise --rates")
    assert eff.capped_note(reps[1:]) is None
