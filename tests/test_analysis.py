"""Analysis frames and verdicts on synthetic histories with known answers."""

import numpy as np
import pandas as pd
import pytest

from lab.analysis.frames import (
    attempt_latency,
    cores_needed,
    cpu_seconds_by_service,
    errors_by_kind,
    latency_over_time,
    slo_verdicts,
    throughput,
)


def _attempts(n=60, rate=2.0, latency=0.5, outcome="purchased", t0=1000.0):
    scheduled = t0 + np.arange(n) / rate
    return pd.DataFrame({"attempt_id": [f"a{i}" for i in range(n)], "scheduled": scheduled,
                         "start": scheduled, "end": scheduled + latency, "outcome": outcome})


def test_latency_counts_from_the_scheduled_start():
    frame = _attempts(latency=0.5)
    frame["start"] += 0.4  # a late generator must not shorten the latency
    assert attempt_latency(frame).round(6).eq(0.5).all()


def test_throughput_per_second_matches_the_rate():
    frame = _attempts(n=60, rate=2.0)
    table = throughput(frame, t0=1000.0)
    steady = table[(table["t"] >= 1) & (table["t"] < 29)]
    assert (steady["purchased"] == 2.0).all() and (steady["failed"] == 0).all()


def test_latency_percentiles_per_bin():
    frame = pd.concat([_attempts(n=10, latency=0.1), _attempts(n=10, latency=2.0, t0=1010.0)])
    frame["attempt_id"] = [f"x{i}" for i in range(len(frame))]
    table = latency_over_time(frame, t0=1000.0, bin_seconds=5.0).set_index("t")
    assert table.loc[0.0, "p95"] == pytest.approx(0.1)
    assert table.loc[10.0, "p50"] == pytest.approx(2.0)


def test_errors_are_counted_by_step_and_kind():
    requests = pd.DataFrame({"step": ["order", "order", "confirm", "order"],
                             "outcome": ["error", "error", "error", "ok"],
                             "error_kind": ["timeout", "timeout", "http_5xx", None]})
    table = errors_by_kind(requests).set_index(["step", "error_kind"])["count"]
    assert table[("order", "timeout")] == 2 and table[("confirm", "http_5xx")] == 1


def test_cpu_seconds_from_cumulative_counters_within_the_window():
    metrics = pd.DataFrame({
        "time": [0, 10, 20, 0, 10, 20, 5],
        "service": ["pretix-web-1"] * 3 + ["postgres-primary"] * 3 + ["monitor"],
        "container": ["w1"] * 3 + ["pg"] * 3 + ["m"],
        "metric": ["cpu_seconds"] * 7,
        "value": [100.0, 104.0, 110.0, 50.0, 51.0, 53.0, 9.0],
    })
    used = cpu_seconds_by_service(metrics, 0, 20)
    assert used["pretix-web-1"] == 10.0 and used["postgres-primary"] == 3.0 and "monitor" not in used
    need = cores_needed(used / 100, purchases_per_minute=800, headroom=1.0)
    assert need["pretix-web-1"] == pytest.approx(0.1 * 800 / 60)


def test_slo_verdicts_pass_and_fail_on_the_numbers():
    good = _attempts(n=900, rate=15.0, latency=0.3)
    verdicts = {v.name: v for v in slo_verdicts(good, duration=60.0)}
    assert all(v.passed for v in verdicts.values()), verdicts
    slow = _attempts(n=300, rate=5.0, latency=3.0)
    slow.loc[:10, "outcome"] = "failed"
    verdicts = {v.name: v for v in slo_verdicts(slow, duration=60.0)}
    assert not verdicts["purchases per minute"].passed
    assert not verdicts["p95 latency from scheduled start"].passed
    assert not verdicts["failed attempts"].passed and verdicts["failed attempts"].measured == "3.67%"
