"""pretix tuning knobs without Docker: validation, the env they become, the commands the image's entrypoint builds
from it (run for real with stand-ins for gunicorn and celery that print their arguments), the Django settings block,
the report's table, and the bench's arithmetic."""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path

import pytest

from lab.analysis import environment as env
from lab.analysis import tuning as tun
from lab.common.paths import IMAGES_DIR
from lab.stack import alone, params, tuning
from lab.stack.params import StackParams

ENTRYPOINT = IMAGES_DIR / "pretix" / "pretix-lab-entrypoint"
SETTINGS = IMAGES_DIR / "pretix" / "pretix_lab_settings.py"
LEAN = Path(__file__).resolve().parents[1] / "studies" / "tuning-lean.yaml"


def test_every_knob_is_a_described_stack_parameter_with_a_stock_default():
    for knob in tuning.KNOBS:
        field = StackParams.model_fields[knob]
        assert field.description, knob
    assert tuning.changed(tuning.knobs(StackParams())) == {}
    assert tuning.describe(tuning.knobs(StackParams())) == "stock settings"


def test_stock_env_is_the_images_own_defaults_and_adds_nothing_else():
    out = tuning.pretix_env(StackParams())
    assert out == {"WEB_WORKER_CLASS": "sync", "WEB_THREADS": "1", "WEB_MAX_REQUESTS": "1200", "WEB_ACCESS_LOG": "on",
                   "PRETIX_PRETIX_LOGLEVEL": "INFO", "WORKER_LOGLEVEL": "info", "WORKER_PREFETCH_MULTIPLIER": "4",
                   "PRETIX_LAB_DB_CONN_HEALTH_CHECKS": "on", "PRETIX_LAB_DB_CONN_MAX_AGE": "120"}
    assert "loglevel=INFO" in (IMAGES_DIR / "pretix" / "pretix.cfg").read_text()  # the cfg's stock level


def test_tuned_env_sets_each_knob():
    p = params.validate({"web_worker_class": "gthread", "web_threads": 4, "web_access_log": False,
                         "pretix_metrics": False, "postgres_jit": False, "python_optimize": True,
                         "db_conn_health_checks": False, "worker_prefetch_multiplier": 1})
    out = tuning.pretix_env(p)
    assert out["WEB_WORKER_CLASS"] == "gthread" and out["WEB_THREADS"] == "4" and out["WEB_ACCESS_LOG"] == "off"
    assert out["PRETIX_METRICS_ENABLED"] == "false" and out["PGOPTIONS"] == "-c jit=off"
    assert out["PYTHONOPTIMIZE"] == "1" and out["PRETIX_LAB_DB_CONN_HEALTH_CHECKS"] == "off"
    assert out["WORKER_PREFETCH_MULTIPLIER"] == "1"
    text = tuning.env_file_text(p)
    assert "WEB_THREADS=4\n" in text and text.endswith("\n")
    assert set(tuning.changed(tuning.knobs(p))) == {"web_worker_class", "web_threads", "web_access_log",
                                                    "pretix_metrics", "postgres_jit", "python_optimize",
                                                    "db_conn_health_checks", "worker_prefetch_multiplier"}


def test_the_studys_lean_tuning_file_is_valid_and_changes_only_knobs():
    p = params.load(LEAN)
    assert tuning.changed(p.model_dump()) and set(tuning.changed(p.model_dump())) <= set(tuning.KNOBS)


def _entrypoint(role: str, tmp_path: Path, **extra: str) -> list[str]:
    """Run the image's entrypoint with gunicorn and celery replaced by stand-ins printing their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("gunicorn", "celery"):
        stub = bin_dir / tool
        stub.write_text('#!/bin/bash\nprintf "%s\\n" "$@"\n')
        stub.chmod(0o755)
    environ = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PRETIX_DJANGO_SECRET": "x", "HOSTNAME": "h", **extra}
    done = subprocess.run(["bash", str(ENTRYPOINT), role], env=environ, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def test_entrypoint_stock_web_command_is_unchanged(tmp_path):
    args = _entrypoint("web", tmp_path)
    assert _value(args, "--worker-class") == "sync" and _value(args, "--threads") == "1"
    assert _value(args, "--max-requests") == "1200" and _value(args, "--max-requests-jitter") == "50"
    assert _value(args, "--access-logfile") == "-" and _value(args, "--workers") == "2"


def test_entrypoint_applies_the_web_knobs(tmp_path):
    p = params.validate({"web_worker_class": "gthread", "web_threads": 3, "web_max_requests": 0,
                         "web_access_log": False})
    args = _entrypoint("web", tmp_path, **tuning.pretix_env(p))
    assert _value(args, "--worker-class") == "gthread" and _value(args, "--threads") == "3"
    assert "--max-requests" not in args and "--access-logfile" not in args
    assert _value(args, "--error-logfile") == "-"


def test_entrypoint_applies_the_worker_knobs(tmp_path):
    assert _value(_entrypoint("worker", tmp_path), "--prefetch-multiplier") == "4"
    p = params.validate({"worker_loglevel": "warning", "worker_prefetch_multiplier": 1})
    args = _entrypoint("worker", tmp_path, **tuning.pretix_env(p))
    assert _value(args, "-l") == "warning" and _value(args, "--prefetch-multiplier") == "1"


def _settings_block(environ: dict[str, str]) -> dict:
    """The lab settings' database-connection block, run on pretix's own database settings."""
    text = SETTINGS.read_text()
    block = text[text.index("# The lab's tuning knobs for Django's database connections"):]
    block = block.split("\n\n")[0]
    databases = {"default": {"CONN_MAX_AGE": 120, "CONN_HEALTH_CHECKS": True},
                 "dbreadonly": {"CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": True}}
    fake_os = type("os", (), {"environ": environ})
    exec(compile(block, str(SETTINGS), "exec"), {"DATABASES": databases, "os": fake_os})  # noqa: S102
    return databases


def test_settings_block_keeps_pretix_values_when_stock_and_applies_the_knobs():
    stock = _settings_block(dict(tuning.pretix_env(StackParams())))
    assert stock["default"] == {"CONN_MAX_AGE": 120, "CONN_HEALTH_CHECKS": True}
    assert _settings_block({}) == stock
    tuned = _settings_block(tuning.pretix_env(params.validate({"db_conn_health_checks": False,
                                                               "db_conn_max_age": 600})))
    assert tuned["default"] == {"CONN_MAX_AGE": 600, "CONN_HEALTH_CHECKS": False}
    assert tuned["dbreadonly"]["CONN_MAX_AGE"] == 0  # pretix's one-per-request read-only connection stays so


def test_report_settings_table_lists_every_knob_and_says_which_were_on():
    recorded = {"stack_params": {**StackParams().model_dump(mode="json"), "web_access_log": False,
                                 "pretix_loglevel": "WARNING"}}
    table = env.tuning_table(recorded)
    assert list(table.index) == list(tuning.KNOBS)
    assert table.loc["web_access_log", "on"] == "yes" and table.loc["web_access_log", "stock"] == "True"
    assert table.loc["web_threads", "on"] == "no"
    assert "web_access_log=False" in env.tuning_sentence(recorded) and "pretix_loglevel=WARNING" in \
        env.tuning_sentence(recorded)
    assert "stock settings" in env.tuning_sentence({"stack_params": {"web_workers": 2}})  # recorded before knobs
    assert set(tuning.KNOBS) <= set(env.stack_params_table(recorded).index)


def test_the_report_notebook_shows_the_tuning():
    text = (Path(__file__).resolve().parents[1] / "notebooks" / "04-analysis.ipynb").read_text()
    assert "env.tuning_table(environment)" in text and "env.tuning_sentence(environment)" in text


def test_two_alone_sides_have_their_own_names_and_labels():
    assert alone.name("net", "tuned") != alone.name("net", "stock") != alone.name("net")
    assert alone.labels("redis", "tuned")[alone.VARIANT_LABEL] == "tuned"
    assert alone.VARIANT_LABEL not in alone.labels("redis")  # the plain side carries no variant


def _point(side: str, repeat: int, rate: float, web: float, celery: float = 0.05) -> tun.TuningPoint:
    return tun.TuningPoint(side, repeat, rate, 60, 180.0, 0.5, True,
                           {"web": web, "celery": celery, "pg primary": 0.04, "redis": 0.01, "generator": 0.3})


def test_pretix_cpu_per_order_leaves_the_generator_out():
    assert _point("stock", 1, 3.0, 0.2).pretix_per_order() == pytest.approx(0.30)
    assert math.isnan(tun.TuningPoint("stock", 1, 3.0, 0, 0.0, math.nan, False).pretix_per_order())


def test_ratios_are_paired_per_repeat_and_summarised_per_rate():
    points = [_point("stock", 1, 3.0, 0.2), _point("tuned", 1, 3.0, 0.05),  # 0.30 vs 0.15
              _point("tuned", 2, 3.0, 0.11), _point("stock", 2, 3.0, 0.26),  # 0.21 vs 0.36
              _point("stock", 1, 5.0, 0.2), _point("tuned", 1, 5.0, 0.2),
              _point("stock", 3, 3.0, 0.2)]  # its pair is missing: no ratio
    assert tun.paired_ratios(points, 3.0) == pytest.approx([0.5, 0.21 / 0.36])
    rows = tun.summarise(points)
    assert [r.rate for r in rows] == [3.0, 5.0]
    assert rows[0].ratio.n == 2 and rows[0].pretix["stock"].n == 3
    assert rows[1].ratio.median == pytest.approx(1.0)
    line = tun.verdict_line(rows)
    assert line.startswith("tuning: pretix CPU per order tuned/stock = 3/s 0.54 (cut 46%); 5/s 1.00 (cut 0%)")
    assert line.endswith("goal cut >= 30%: not reached")
    assert tun.verdict_line(rows[:1]).endswith("reached") and "not" not in tun.verdict_line(rows[:1])
    lines = tun.table(rows)
    assert any(re.match(r"\s+pretix CPU s/order\s+0\.30", line) for line in lines)
    assert not any("generator" in line for line in lines)


def test_the_tuned_side_takes_process_counts_only_from_a_file_that_sets_them(tmp_path):
    from lab.experiments.bench_tuning import counts, tuned_params

    deployed = StackParams(web_workers=3, worker_concurrency=2)
    assert counts(tuned_params(str(LEAN)), deployed) == (3, 2)
    single = tuned_params(str(LEAN.with_name("tuning-lean-single.yaml")))
    assert counts(single, deployed) == (1, 1)
    assert counts(tuned_params("stock"), deployed) == (3, 2)


def _met(side: str, repeat: int, rate: float, per_min: float, ok: bool) -> tun.TuningPoint:
    return tun.TuningPoint(side, repeat, rate, int(per_min), per_min, 0.2 if ok else 3.0, ok, {"web": 0.05})


def test_sustained_is_the_highest_rate_within_the_slo_per_repeat_and_a_floor_when_never_saturated():
    points = [_met("stock", 1, 3.0, 180, True), _met("stock", 1, 6.0, 350, True), _met("stock", 1, 9.0, 420, False),
              _met("stock", 2, 3.0, 180, True), _met("stock", 2, 6.0, 340, False), _met("stock", 2, 9.0, 400, False),
              _met("tuned", 1, 3.0, 180, True), _met("tuned", 1, 6.0, 360, True), _met("tuned", 1, 9.0, 530, True),
              _met("tuned", 2, 3.0, 180, True), _met("tuned", 2, 6.0, 355, True), _met("tuned", 2, 9.0, 525, True)]
    found = tun.sustained(points)
    assert (found["stock"].low, found["stock"].high) == (180, 350)  # repeat 2 met the SLO only at 3/s
    assert found["tuned"].median == pytest.approx(527.5)
    line = tun.sustained_line(points)
    assert "offered up to 9/s" in line and "stock 265 (180-350)" in line and "tuned >= 528 (525-530)" in line
