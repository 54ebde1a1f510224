"""The idle bench's arithmetic: cores per module and in all, medians over windows, the dated last line."""

import math

import pytest

from lab.analysis import idle
from lab.experiments import bench_idle


def _w(repeat, seconds, cpu, side="stack", host=1.0, throttled=None):
    return idle.IdleWindow(side, repeat, seconds, cpu, host, throttled or {})


def test_cores_are_cpu_seconds_over_wall_seconds():
    w = _w(1, 60.0, {"redis-sentinel-1": 0.6, "redis-sentinel-2": 0.6, "pretix-cron": 1.8, "proxy": 0.0})
    assert w.service_cores()["pretix-cron"] == pytest.approx(0.03)
    assert w.module_cores()["sentinels"] == pytest.approx(0.02)
    assert w.total_cores() == pytest.approx(0.05)
    assert math.isnan(idle.cores({"x": 1.0}, 0.0)["x"])


def test_summary_is_the_median_and_range_over_the_windows():
    windows = [_w(1, 10.0, {"pretix-web-1": 0.1, "postgres-primary": 0.1}, host=2.0, throttled={"pretix-web-1": 2}),
               _w(2, 10.0, {"pretix-web-1": 0.3, "postgres-primary": 0.1}, throttled={"pretix-web-1": 1}),
               _w(3, 10.0, {"pretix-web-1": 0.2, "postgres-primary": 0.1}),
               _w(1, 10.0, {"pretix-web-1": 9.0}, side="other")]
    s = idle.summarise(windows)
    assert s.windows == 3 and s.seconds == 10.0
    assert (s.modules["web"].median, s.modules["web"].low, s.modules["web"].high) == pytest.approx((0.02, 0.01, 0.03))
    assert s.total.median == pytest.approx(0.03) and s.total.n == 3
    assert s.services["postgres-primary"].median == pytest.approx(0.01)
    assert s.host.high == pytest.approx(0.2)
    assert s.throttled == {"pretix-web-1": 3}
    assert "generator" not in s.modules


def test_last_line_is_dated_and_says_the_goal():
    s = idle.summarise([_w(r, 60.0, {"proxy": 60.0 * c}) for r, c in ((1, 0.05), (2, 0.07), (3, 0.2))])
    line = idle.idle_line(s, "2026-12-04 12:00:00 UTC")
    assert line == ("idle (2026-12-04 12:00:00 UTC): stack = 0.070 cores (0.050-0.200) over 3 windows of 60s, "
                    "time average 0.107; goal <= 0.1 core: met")
    assert idle.idle_line(idle.summarise([]), "d").endswith("no window measured")
    assert "not met" in idle.idle_line(idle.summarise([_w(1, 1.0, {"proxy": 0.5})]), "d")


def test_the_time_average_weighs_a_rare_burst_in():
    quiet, burst = _w(1, 100.0, {"pretix-cron": 0.2, "redis": 5.0}), _w(2, 50.0, {"pretix-cron": 3.5, "redis": 2.5})
    s = idle.summarise([quiet, burst, _w(3, 100.0, {"pretix-cron": 0.2, "redis": 5.0})])
    assert s.pooled == pytest.approx((5.2 + 6.0 + 5.2) / 250.0)
    assert s.total.median == pytest.approx(0.052)
    assert math.isnan(idle.pooled([]))


def test_table_leaves_out_modules_that_used_nothing():
    s = idle.summarise([_w(1, 10.0, {"proxy": 0.1, "pretix-cron": 0.0})])
    text = "\n".join(idle.table([s]))
    assert "proxy" in text and "cron" not in text and "in all" in text
    assert idle.service_lines(s)[0].split()[0] == "proxy"


def test_a_window_counts_only_containers_present_at_both_ends(monkeypatch):
    readings = iter([{"redis": 1.0, "proxy": 2.0}, {"redis": 1.5, "proxy": 2.1, "pretix-migrate": 9.0}])
    throttles = iter([{"redis": 4}, {"redis": 6, "proxy": 1}])
    hosts = iter([100.0, 103.0])
    monkeypatch.setattr(bench_idle, "stack_seconds", lambda _d: next(readings))
    monkeypatch.setattr(bench_idle, "stack_throttled", lambda _d: next(throttles))
    monkeypatch.setattr(bench_idle, "host_busy_seconds", lambda: next(hosts))
    w = bench_idle.window(None, "stack", 1, 30.0, sleep=lambda _s: None)
    assert w.service_cpu == pytest.approx({"redis": 0.5, "proxy": 0.1})
    assert w.throttled == {"redis": 2} and w.host_busy == pytest.approx(3.0)
