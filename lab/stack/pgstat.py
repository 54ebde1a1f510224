"""pg_stat_statements on one PostgreSQL container: is it loaded, reset it, read what pretix's database ran.

The module must be in shared_preload_libraries when the server starts, which costs a little on every statement,
so it is off unless asked for: the stack parameter `pg_stat_statements` (compose passes `-c
shared_preload_libraries=...` to both nodes) and, on pretix alone, the profiled bench's own choice. The extension
is created in the `postgres` database, not pretix's: its view there shows every database's statements, and
pretix's database (copied to pretix alone with pg_dump) stays exactly the stack's.
"""

from __future__ import annotations

import json
from typing import Any

from lab.errors import LabError
from lab.stack.sql import psql

PG_STAT_STATEMENTS = "pg_stat_statements"
PRELOAD_ARGS = ["-c", f"shared_preload_libraries={PG_STAT_STATEMENTS}"]  # postgres options (the entrypoint passes
# arguments that start with '-' to postgres)
TOP = 40  # statements kept per read, by total execution time: the tail of a profile says nothing per order

# One JSON document: the top statements of pretix's database and the sums over all of them (for shares).
# queryid is text: it is a 64-bit integer that JSON readers would round.
READ_SQL = f"""
WITH s AS (
  SELECT s.queryid::text AS queryid, s.calls, s.total_exec_time, s.mean_exec_time, s.rows, s.total_plan_time,
         s.query
  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
  WHERE d.datname = 'pretix')
SELECT json_build_object(
  'top', (SELECT coalesce(json_agg(t), '[]'::json) FROM
          (SELECT * FROM s ORDER BY total_exec_time DESC LIMIT {TOP}) t),
  'all', (SELECT json_build_object('statements', count(*), 'calls', coalesce(sum(calls), 0),
                                   'total_exec_time', coalesce(sum(total_exec_time), 0)) FROM s))
"""


class StatementsError(LabError):
    """pg_stat_statements is not loaded on the server, or could not be read."""


def loaded(container: Any) -> bool:
    """Whether the running server was started with pg_stat_statements preloaded."""
    libraries = psql(container, "SHOW shared_preload_libraries")
    return PG_STAT_STATEMENTS in [part.strip() for part in libraries.split(",")]


def require(container: Any, how: str) -> None:
    """Stop early when the server lacks the module; `how` says how to start it with the module."""
    try:
        ok = loaded(container)
    except RuntimeError as error:
        raise StatementsError(f"could not ask {container.name} for its preloaded libraries: {error}") from None
    if not ok:
        raise StatementsError(f"{container.name} was started without pg_stat_statements: {how}")


def prepare(container: Any) -> None:
    """Create the extension (once; in the `postgres` database) and clear what it counted so far."""
    try:
        psql(container, f"CREATE EXTENSION IF NOT EXISTS {PG_STAT_STATEMENTS}")
    except RuntimeError as error:
        raise StatementsError(str(error)) from None
    reset(container)


def reset(container: Any) -> None:
    """Forget every statement counted so far, so a read covers only what ran after it."""
    try:
        psql(container, "SELECT pg_stat_statements_reset()")
    except RuntimeError as error:
        raise StatementsError(f"resetting pg_stat_statements on {container.name} failed: {error}") from None


def read(container: Any) -> dict:
    """{'top': rows by total execution time, 'all': sums over pretix's statements}; see READ_SQL."""
    try:
        return json.loads(psql(container, READ_SQL))
    except (RuntimeError, json.JSONDecodeError) as error:
        raise StatementsError(f"reading pg_stat_statements on {container.name} failed: {error}") from None


__all__ = ["PG_STAT_STATEMENTS", "PRELOAD_ARGS", "READ_SQL", "StatementsError", "TOP", "loaded", "prepare", "read",
           "require", "reset"]
