"""pretix tuning an operator can do without patching pretix: StackParams' knobs -> the pretix containers' env.

The knobs are fields of StackParams (gunicorn's worker class, threads, recycling and access log; pretix's log level
and metrics; celery's log level and prefetch; Django's database connection reuse; PostgreSQL's JIT for pretix's
sessions; PYTHONOPTIMIZE; the Python build the image runs, which selects the pretix image instead of setting env:
lab/stack/pybuild.py). Their defaults are the stock settings, and the env below leaves a knob at its stock
value exactly as the image and pretix set it, so a stack deployed with defaults runs the stock command. The same
env goes to the deployed stack (an env file compose.yaml reads after pretix.env) and to pretix alone, so a bench can
set both sides alike and a study's report can say which knobs were on.
"""

from __future__ import annotations

from typing import Any

from lab.stack.params import StackParams

KNOBS = ("web_worker_class", "web_threads", "web_max_requests", "web_access_log", "pretix_loglevel", "pretix_metrics",
         "worker_loglevel", "worker_prefetch_multiplier", "db_conn_health_checks", "db_conn_max_age", "postgres_jit",
         "python_optimize", "python")


def _onoff(value: bool) -> str:
    return "on" if value else "off"


def stock() -> dict[str, Any]:
    """Every knob at its stock value (StackParams' defaults)."""
    return {k: StackParams.model_fields[k].default for k in KNOBS}


def knobs(params: StackParams) -> dict[str, Any]:
    return {k: getattr(params, k) for k in KNOBS}


def changed(values: dict[str, Any]) -> dict[str, Any]:
    """The knobs set away from stock ("which were on"); a knob a record does not hold counts as stock."""
    base = stock()
    return {k: values[k] for k in KNOBS if k in values and values[k] != base[k]}


def pretix_env(params: StackParams) -> dict[str, str]:
    """The env that applies the knobs in a pretix container (web, worker and cron alike; each reads its own).

    pretix_metrics is only ever switched off here: whether metrics are on at all is the deployment's choice
    (secrets.write_env_files turns them on with their credentials; pretix alone runs without them).
    """
    env = {"WEB_WORKER_CLASS": params.web_worker_class, "WEB_THREADS": str(params.web_threads),
           "WEB_MAX_REQUESTS": str(params.web_max_requests), "WEB_ACCESS_LOG": _onoff(params.web_access_log),
           "PRETIX_PRETIX_LOGLEVEL": params.pretix_loglevel, "WORKER_LOGLEVEL": params.worker_loglevel,
           "WORKER_PREFETCH_MULTIPLIER": str(params.worker_prefetch_multiplier),
           "PRETIX_LAB_DB_CONN_HEALTH_CHECKS": _onoff(params.db_conn_health_checks),
           "PRETIX_LAB_DB_CONN_MAX_AGE": str(params.db_conn_max_age)}
    if not params.pretix_metrics:
        env["PRETIX_METRICS_ENABLED"] = "false"
    if not params.postgres_jit:
        env["PGOPTIONS"] = "-c jit=off"
    if params.python_optimize:
        env["PYTHONOPTIMIZE"] = "1"
    return env


def env_file_text(params: StackParams) -> str:
    """pretix-tuning.env for compose (KEY=value lines; no value holds a secret)."""
    return "".join(f"{k}={v}\n" for k, v in sorted(pretix_env(params).items()))


def describe(values: dict[str, Any]) -> str:
    """One line: 'stock settings' or the knobs that were on, as name=value."""
    on = changed(values)
    if not on:
        return "stock settings"
    return ", ".join(f"{k}={v}" for k, v in on.items())


__all__ = ["KNOBS", "changed", "describe", "env_file_text", "knobs", "pretix_env", "stock"]
