"""Top costs per order, both sides: where one profiled step's time went, divided by the orders it made.

Three sources, each over the same step: py-spy's samples of the gunicorn workers and of the celery processes
(samples that hold the GIL; one sample stands for 1/rate seconds of one process) and pg_stat_statements' execution
time of pretix's database (time inside the server, waits for locks included, so not CPU alone). A process that holds
the GIL while it waits for a core (a saturated host, a container at its CPU limit) is sampled too, so the sampled
milliseconds overstate CPU under load; the cgroup CPU of the containers over the same step, split by the samples'
shares (cpu_ms_per_order), is the CPU figure. Pure: it reads the bench's JSON record (the `profile` section of
data/bench/<stamp>-efficiency-<journey>.json), so the report's planning section can rebuild the table from the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from lab.analysis.efficiency import by_module

COLUMNS = ["side", "source", "what", "ms_per_order", "cpu_ms_per_order", "calls_per_order", "mean_ms", "share"]
MODULE = {"gunicorn": "web", "celery": "celery", "postgres": "pg primary"}  # whose cgroup CPU a source is
SOURCES = ("gunicorn", "celery", "postgres")
# statements whose text is kept: queries and transaction control. pg_stat_statements replaces a query's constants
# by $1.., but keeps a utility statement's text as it ran (it could hold a literal such as a password).
KEEP_TEXT = ("select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "savepoint", "release")
OTHER = "(other statement, text not kept)"
ALL_PYTHON = "(all Python, GIL held)"
WHILE = {"gunicorn": "(serving requests)", "celery": "(running tasks)"}
ALL_SQL = "(all statements of pretix's database)"


def statement_text(query: str) -> str:
    """A statement on one line, or OTHER for a statement whose text is not kept (see KEEP_TEXT)."""
    words = str(query).split()
    if not words or words[0].lower() not in KEEP_TEXT:
        return OTHER
    return " ".join(words)


def statements(read: Mapping) -> pd.DataFrame:
    """pg_stat_statements' top rows (lab.stack.pgstat.read's 'top') -> one row per statement: query (one line, or
    OTHER), calls, total_ms, mean_ms, rows; by total time, highest first."""
    rows = [{"query": statement_text(r.get("query", "")), "calls": int(r.get("calls") or 0),
             "total_ms": float(r.get("total_exec_time") or 0.0), "rows": int(r.get("rows") or 0)}
            for r in read.get("top", [])]
    frame = pd.DataFrame(rows, columns=["query", "calls", "total_ms", "rows"])
    frame["mean_ms"] = frame["total_ms"] / frame["calls"].where(frame["calls"] > 0)
    return frame.sort_values("total_ms", ascending=False, kind="stable").reset_index(drop=True)


def _per(value: float, orders: int) -> float:
    return value / orders if orders > 0 else math.nan


def queries_per_order(read: Mapping, orders: int, top: int = 5, cpu_ms: float = math.nan) -> pd.DataFrame:
    """The statements' total first (ALL_SQL, with the server's CPU per order `cpu_ms`), then the `top` statements by
    execution time: ms and calls per order, mean ms per call, share of all of pretix's statement time. NaN per order
    when the step made no order."""
    frame = statements(read)
    every = read.get("all") or {}
    total_ms = float(every.get("total_exec_time") or frame["total_ms"].sum())
    calls = int(every.get("calls") or frame["calls"].sum())
    out = [{"what": ALL_SQL, "ms_per_order": _per(total_ms, orders), "calls_per_order": _per(calls, orders),
            "mean_ms": total_ms / calls if calls else math.nan, "share": 1.0 if total_ms else math.nan,
            "cpu_ms_per_order": cpu_ms}]
    for row in frame.head(top).itertuples():
        out.append({"what": row.query, "ms_per_order": _per(row.total_ms, orders),
                    "calls_per_order": _per(row.calls, orders), "mean_ms": row.mean_ms,
                    "share": row.total_ms / total_ms if total_ms else math.nan, "cpu_ms_per_order": math.nan})
    return pd.DataFrame(out)


def frames_per_order(program: str, profile: Mapping, orders: int, sample_rate: float, top: int = 5,
                     cpu_ms: float = math.nan) -> pd.DataFrame:
    """One program's py-spy profile (lab.analysis.pyspy.Profile as a dict) -> ms of GIL-held Python per order: in
    all, while serving an order (requests or tasks), then the `top` inclusive frames; share = of the serving
    samples. `cpu_ms`: the program's containers' CPU per order, split over the rows by their part of all samples."""
    ms = 1000.0 / sample_rate if sample_rate > 0 else math.nan
    serving = int(profile.get("samples") or 0)
    every = int(profile.get("all_samples") or serving)
    out = [{"what": ALL_PYTHON, "ms_per_order": _per(every * ms, orders), "share": math.nan},
           {"what": WHILE.get(program, "(serving)"), "ms_per_order": _per(serving * ms, orders),
            "share": 1.0 if serving else math.nan}]
    for f in list(profile.get("inclusive") or [])[:top]:
        out.append({"what": f["frame"], "ms_per_order": _per(int(f["samples"]) * ms, orders),
                    "share": float(f["share"])})
    frame = pd.DataFrame(out)
    samples = [every, serving] + [int(f["samples"]) for f in list(profile.get("inclusive") or [])[:top]]
    frame["cpu_ms_per_order"] = [cpu_ms * n / every if every else math.nan for n in samples]
    frame["calls_per_order"] = math.nan
    frame["mean_ms"] = math.nan
    return frame


def top_costs(profiled: Mapping[str, Mapping], top: int = 5) -> pd.DataFrame:
    """side -> the bench's record of that side's profiled step ({'orders', 'sample_rate', 'profiles': {program:
    Profile as a dict}, 'statements': lab.stack.pgstat.read's document or None, 'cpu_seconds': per service over
    the step}) -> one table, COLUMNS, sides in the record's order, per side gunicorn, celery, postgres."""
    parts = []
    for side, step in profiled.items():
        orders = int(step.get("orders") or 0)
        profiles = step.get("profiles") or {}
        modules = by_module(step["cpu_seconds"]) if step.get("cpu_seconds") else {}
        cpu_ms = {source: _per(modules[MODULE[source]] * 1000, orders) if modules else math.nan
                  for source in SOURCES}

        for program in SOURCES[:2]:
            if program in profiles:
                part = frames_per_order(program, profiles[program], orders, float(step.get("sample_rate") or 0), top,
                                        cpu_ms[program])
                parts.append(part.assign(side=side, source=program))
        if step.get("statements"):
            parts.append(queries_per_order(step["statements"], orders, top, cpu_ms["postgres"])
                         .assign(side=side, source="postgres"))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def from_file(path: Path, top: int = 5) -> pd.DataFrame:
    """The table from a saved efficiency bench (data/bench/<stamp>-efficiency-<journey>.json); empty when the run
    was not profiled."""
    return top_costs(json.loads(Path(path).read_text()).get("profile") or {}, top)


def lines(table: pd.DataFrame, width: int = 72) -> list[str]:
    """The table as the bench prints it; long frames and statements are cut to `width` characters."""
    def num(v: float, digits: int = 1) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    def share(v: float) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0%}"

    out = [f"{'side':6} {'source':9} {'ms/order':>9} {'CPU ms':>7} {'calls/order':>11} {'mean ms':>8} {'share':>5}  "
           "what"]
    for r in table.itertuples():
        what = r.what if len(r.what) <= width else r.what[:width - 3] + "..."
        out.append(f"{r.side:6} {r.source:9} {num(r.ms_per_order):>9} {num(r.cpu_ms_per_order):>7} "
                   f"{num(r.calls_per_order):>11} "
                   f"{num(r.mean_ms, 2):>8} {share(r.share):>5}  {what}")
    return out


__all__ = ["ALL_PYTHON", "ALL_SQL", "COLUMNS", "OTHER", "frames_per_order", "from_file", "lines",
           "queries_per_order", "statement_text", "statements", "top_costs"]
