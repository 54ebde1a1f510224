"""The scripts the exec'd samplers run inside the containers, shipped as package data (scripts/*.sh, *.sql).

Each bash script gets "$1" = interval (s) and "$2" = maximum duration (s), ends at stdin EOF (the monitor's stop)
and reports its own CPU as `#CPU <clock ticks>` lines. Why each looks the way it does is in its own header.
"""

from __future__ import annotations

from importlib.resources import files

from lab.evidence.monitor.names import CELERY_PRIORITY_SUFFIXES, CELERY_QUEUES


def script_text(name: str) -> str:
    return (files(__package__) / "scripts" / name).read_text(encoding="utf-8")


def one_line_sql(text: str) -> str:
    """The query folded onto one line (psql reads it from a here-string before `\\watch`); `--` lines dropped."""
    return " ".join(" ".join(x for x in text.splitlines() if not x.lstrip().startswith("--")).split())


_LOOP = script_text("loop.sh")
NGINX_SCRIPT = script_text("nginx.sh") + _LOOP
REDIS_SCRIPT = script_text("redis.sh").replace(
    "@QUEUES@", "".join(f"LLEN {q}{s}\\n" for q in CELERY_QUEUES for s in CELERY_PRIORITY_SUFFIXES)) + _LOOP
SENTINEL_SCRIPT = script_text("sentinel.sh") + _LOOP
POSTGRES_SCRIPT = script_text("postgres.sh")
POSTGRES_QUERY = one_line_sql(script_text("postgres.sql"))
PRETIX_EXEC_SCRIPT = script_text("pretix_metrics.sh")

__all__ = ["NGINX_SCRIPT", "POSTGRES_QUERY", "POSTGRES_SCRIPT", "PRETIX_EXEC_SCRIPT", "REDIS_SCRIPT",
           "SENTINEL_SCRIPT", "one_line_sql", "script_text"]
