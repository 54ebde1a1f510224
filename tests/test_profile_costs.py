"""`lab bench efficiency --profile`'s top costs per order, without Docker: py-spy's raw output of celery, what
pg_stat_statements returns, the table per order, and the stack parameter that switches pg_stat_statements on."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest

from lab.analysis import costs
from lab.analysis.pyspy import TASK, lines, profile

_POOL = ('process 212:"/opt/pretix/venv/bin/python3 /opt/pretix/venv/bin/celery -A pretix.celery_app worker -l info";'
         "_bootstrap (multiprocessing/process.py);run (multiprocessing/process.py);workloop (billiard/pool.py);"
         "fast_trace_task (celery/app/trace.py);trace_task (celery/app/trace.py);__protected_call__ "
         "(celery/app/trace.py)")
CELERY_RAW = "\n".join([
    f"{_POOL};__call__ (pretix/celery_app.py);notify (pretix/base/services/notifications.py);"
    "execute_sql (django/db/models/sql/compiler.py) 12",
    f"{_POOL};__call__ (pretix/celery_app.py);perform_order (pretix/base/services/orders.py);"
    "_check_positions (pretix/base/services/orders.py) 20",
    f"{_POOL};__call__ (pretix/celery_app.py);perform_order (pretix/base/services/orders.py);"
    "recv_into (ssl.py) 8",
    'process 200:"/opt/pretix/venv/bin/python3 /opt/pretix/venv/bin/celery -A pretix.celery_app worker -l info";'
    "main (celery/__main__.py);start (celery/worker/worker.py);asynloop (celery/worker/loops.py);"
    "on_readable (kombu/transport/redis.py) 10",
])

# what lab.stack.pgstat.read returns (pg_stat_statements of PostgreSQL 15, pretix's database), trimmed to 3 rows
PG_READ = {
    "top": [
        {"queryid": "-3142608425431004421", "calls": 120, "total_exec_time": 1800.5, "mean_exec_time": 15.004,
         "rows": 120, "total_plan_time": 0.0,
         "query": "SELECT pg_advisory_xact_lock($1)"},
        {"queryid": "8532279163498207331", "calls": 2400, "total_exec_time": 960.0, "mean_exec_time": 0.4,
         "rows": 2400, "total_plan_time": 0.0,
         "query": 'SELECT "pretixbase_quota"."id", "pretixbase_quota"."event_id"\n  FROM "pretixbase_quota"\n'
                  ' WHERE "pretixbase_quota"."id" = $1 LIMIT $2'},
        {"queryid": "112", "calls": 1, "total_exec_time": 3.0, "mean_exec_time": 3.0, "rows": 0,
         "total_plan_time": 0.0, "query": "ALTER ROLE pretix PASSWORD 'not-to-be-printed'"},
    ],
    "all": {"statements": 180, "calls": 9000, "total_exec_time": 4000.0},
}


def test_a_celery_profile_counts_the_task_samples_and_keeps_the_consumer_in_the_total():
    p = profile(CELERY_RAW, top=4, within=TASK)
    assert p.samples == 40 and p.all_samples == 50  # the consumer's 10 samples ran no task
    assert [(f.frame, f.share) for f in p.inclusive][:2] == [
        ("perform_order (pretix/base/services/orders.py)", 0.7),
        ("_check_positions (pretix/base/services/orders.py)", 0.5)]
    assert p.own[0].frame == "_check_positions (pretix/base/services/orders.py)"
    assert lines("alone celery", p, "celery processes running a task")[0].startswith(
        "alone celery: 40 samples of celery processes running a task and holding the GIL")


def test_celery_masters_are_the_celery_processes_without_a_celery_parent():
    from lab.experiments.bench_profile import masters

    class Top:  # what `docker top` answers for the worker container (host PIDs)
        def top(self):
            cmd = "/opt/pretix/venv/bin/python3 /opt/pretix/venv/bin/celery -A pretix.celery_app worker -l info"
            return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": [
                ["15371", "100", "90", "0", "x", "?", "0", "/usr/bin/tini -- pretix-lab-entrypoint worker"],
                ["15371", "200", "100", "0", "x", "?", "0", cmd],
                ["15371", "211", "200", "0", "x", "?", "0", cmd],
                ["15371", "212", "200", "0", "x", "?", "0", cmd]]}

    assert masters(Top(), "celery") == [200]
    assert masters(Top(), "gunicorn") == []


def test_pg_stat_statements_rows_become_one_line_statements_and_a_utility_statement_keeps_no_text():
    frame = costs.statements(PG_READ)
    assert list(frame["query"])[1] == ('SELECT "pretixbase_quota"."id", "pretixbase_quota"."event_id" FROM '
                                       '"pretixbase_quota" WHERE "pretixbase_quota"."id" = $1 LIMIT $2')
    assert list(frame["query"])[2] == costs.OTHER
    assert "not-to-be-printed" not in frame.to_string()
    assert frame["mean_ms"].tolist() == pytest.approx([1800.5 / 120, 0.4, 3.0])


def test_queries_per_order_divide_by_the_steps_orders():
    table = costs.queries_per_order(PG_READ, orders=120, top=2)
    first, lock, quota = table.to_dict("records")
    assert first["what"] == costs.ALL_SQL and first["ms_per_order"] == pytest.approx(4000 / 120)
    assert first["calls_per_order"] == pytest.approx(75.0) and first["mean_ms"] == pytest.approx(4000 / 9000)
    assert lock["ms_per_order"] == pytest.approx(1800.5 / 120) and lock["calls_per_order"] == 1.0
    assert lock["share"] == pytest.approx(1800.5 / 4000)
    assert quota["calls_per_order"] == 20.0 and quota["mean_ms"] == pytest.approx(0.4)
    assert math.isnan(costs.queries_per_order(PG_READ, orders=0)["ms_per_order"][0])  # no order: no cost per order


def test_top_costs_joins_both_sides_sources_in_one_table_from_the_bench_record():
    """The record as the bench writes it into data/bench/...json (dataclasses as dicts) and reads it back."""
    from dataclasses import asdict

    from lab.experiments.bench_profile import ProfiledStep

    step = ProfiledStep(rate=6.0, seconds=20.0, orders=40, sample_rate=50,
                        profiles={"celery": profile(CELERY_RAW, within=TASK)}, statements=PG_READ,
                        cpu_seconds={"pretix-worker-1": 0.6, "pretix-worker-2": 0.4, "postgres-primary": 1.2,
                                     "pretix-web-1": 3.0})
    record = json.loads(json.dumps({"stack": asdict(step), "alone": asdict(step)}))
    table = costs.top_costs(record, top=2)
    assert list(table.columns) == costs.COLUMNS
    sources = table.drop_duplicates(["side", "source"])[["side", "source"]]
    assert list(sources.itertuples(index=False, name=None)) == [
        ("stack", "celery"), ("stack", "postgres"), ("alone", "celery"), ("alone", "postgres")]
    celery = table[(table.side == "stack") & (table.source == "celery")].set_index("what")
    assert celery.loc[costs.ALL_PYTHON, "ms_per_order"] == pytest.approx(50 * 20 / 40)  # 50 samples of 20 ms
    assert celery.loc["(running tasks)", "ms_per_order"] == pytest.approx(40 * 20 / 40)
    assert celery.loc["perform_order (pretix/base/services/orders.py)", "ms_per_order"] == pytest.approx(28 * 20 / 40)
    # the workers' 1.0 CPU-s over 40 orders is 25 ms per order, split by the samples: 28 of 50 for perform_order
    assert celery.loc[costs.ALL_PYTHON, "cpu_ms_per_order"] == pytest.approx(25.0)
    assert celery.loc["perform_order (pretix/base/services/orders.py)", "cpu_ms_per_order"] == pytest.approx(14.0)
    pg = table[(table.side == "alone") & (table.source == "postgres")].set_index("what")
    assert pg.loc[costs.ALL_SQL, "cpu_ms_per_order"] == pytest.approx(30.0)
    # 40 orders: the advisory lock's 1800.5 ms in 120 calls is 45 ms and 3 calls per order
    printed = costs.lines(table)
    assert printed[0].split() == ["side", "source", "ms/order", "CPU", "ms", "calls/order", "mean", "ms", "share",
                                  "what"]
    assert any(line.split()[:6] == ["stack", "postgres", "45.0", "-", "3.0", "15.00"] for line in printed)
    assert costs.top_costs({}).empty


def test_top_costs_reads_a_saved_bench_and_an_unprofiled_one_is_empty(tmp_path):
    from dataclasses import asdict

    from lab.experiments.bench_profile import ProfiledStep

    saved = tmp_path / "efficiency-api.json"
    saved.write_text(json.dumps({"profile": {"alone": asdict(ProfiledStep(6.0, 20.0, 40, statements=PG_READ))}}))
    assert set(costs.from_file(saved)["source"]) == {"postgres"}
    saved.write_text(json.dumps({"journey": "api"}))
    assert costs.from_file(saved).empty


def test_pg_stat_statements_is_off_by_default_and_compose_preloads_it_on_both_nodes_only_when_asked(tmp_path):
    """The real compose binary renders compose.yaml with the lab's environment (no engine needed)."""
    from lab.stack.deploy import compose_for
    from lab.stack.params import StackParams, validate

    assert StackParams().pg_stat_statements is False
    assert validate({"pg_stat_statements": True}).pg_stat_statements is True
    for name in ("pretix.env", "postgres.env", "redis.env"):
        (tmp_path / name).write_text("")
    for on, preload in ((False, ""), (True, "pg_stat_statements")):
        compose = compose_for(StackParams(pg_stat_statements=on), tmp_path)
        rendered = subprocess.run(compose.command("config", "--format", "json"), env={**os.environ, **compose.env},
                                  capture_output=True, text=True, timeout=60, check=True)
        services = json.loads(rendered.stdout)["services"]
        for node in ("postgres-primary", "postgres-replica"):
            assert services[node]["command"] == ["-c", f"shared_preload_libraries={preload}"]


def test_a_stack_without_pg_stat_statements_is_refused_naming_the_parameter():
    from lab.experiments.bench_efficiency import PG_HOW
    from lab.stack import pgstat

    class Node:  # a PostgreSQL container answering `SHOW shared_preload_libraries` with nothing preloaded
        name = "pretix-lab-prof-postgres-primary-1"

        def exec_run(self, command):
            return type("Result", (), {"exit_code": 0, "output": b"\n"})()

    with pytest.raises(pgstat.StatementsError, match="pg_stat_statements=true"):
        pgstat.require(Node(), PG_HOW)
