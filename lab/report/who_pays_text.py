"""The report's words for "who pays for an order": pretix's own CPU against what the HA parts and the lab add."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lab.analysis import who_pays
from lab.analysis.summary import StudySummary

NO_COMPARISON = ("This study did not measure pretix alone (`efficiency.enabled: false`, or a study made before the "
                 "lab could): the plan above charges every module's CPU to the deployment as measured, and holds only "
                 "on a machine as fast as this one was that day.")
SPLIT_TITLE = "CPU per order: this deployment against pretix alone (ms)"
PLAN_TITLE = "Cores per module, as multiples of pretix's own cost"
ALONE_IS = ("pretix alone is the same image and pretix.cfg without the HA parts: one gunicorn with the same workers, "
            "one celery worker, one PostgreSQL without a replica, one redis without sentinels, no proxy, no limits, "
            "reached directly on the host's loopback")


def _range(row: pd.Series, key: str, low: str, high: str) -> str:
    return f"{row[key]:.0f} ({row[low]:.0f}-{row[high]:.0f})"


NO_PROFILE = ("Where pretix's CPU goes inside a module is not measured by a study (profilers cost CPU): no profiled "
              "bench on this machine yet (`lab up --pg-stat-statements`, then `lab bench efficiency --profile`).")


def profile_note(path: Path) -> str:
    """Where the top-costs table comes from: a bench of another day, whose shape (not its milliseconds) applies."""
    stamp = path.name.split("-", 1)[0]
    when = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]} UTC" if len(stamp) >= 13 else stamp
    return (f"Where pretix's CPU goes inside its modules, from the newest profiled `lab bench efficiency` on this "
            f"machine ({when}, `{path.name}`; not this study's run, so its milliseconds do not compare with the "
            "figures above, only its shape does): the top Python frames of gunicorn and celery (py-spy, with the "
            "containers' measured CPU split by their shares) and PostgreSQL's top statements (pg_stat_statements).")


PROFILE_TITLE = "Top costs per order (the newest profiled bench)"
PROFILE_FORMAT = {"ms/order": "{:.1f}", "CPU ms/order": "{:.1f}", "calls/order": "{:.1f}", "mean ms": "{:.2f}",
                  "share": "{:.0%}"}


def profile_view(table: pd.DataFrame, width: int = 70) -> pd.DataFrame:
    """lab.analysis.costs' table with the report's column names and long frames or statements cut."""
    out = table.rename(columns={"ms_per_order": "ms/order", "cpu_ms_per_order": "CPU ms/order",
                                "calls_per_order": "calls/order", "mean_ms": "mean ms"})
    return out.assign(what=out["what"].map(lambda w: w if len(w) <= width else w[:width - 3] + "..."))


def split_view(split: pd.DataFrame) -> pd.DataFrame:
    """The split as the report shows it: median (min-max) per side, what the deployment adds."""
    rows = []
    for _, row in split.iterrows():
        rows.append({"module": row["module"] + ("" if row["counted"] else " (not counted)"),
                     "this deployment": _range(row, "deployment (ms)", "deployment min", "deployment max"),
                     "pretix alone": _range(row, "pretix alone (ms)", "alone min", "alone max"),
                     "added": f"{row['added (ms)']:+.0f}"})
    return pd.DataFrame(rows)


def sentences(s: StudySummary) -> list[str]:
    """What the comparison says, in the report's order: the setting, pretix's own cost, the deployment's ratio and
    where the difference goes, then the cores at the target. Empty record -> why there is none."""
    record = s.efficiency
    if record is None:
        return [NO_COMPARISON]
    if record.get("error"):
        return [f"The comparison with pretix alone failed ({record['error']}): the plan above charges every "
                "module's CPU to the deployment as measured."]
    split = who_pays.cost_split(record)
    total = who_pays.totals(split)
    if math.isnan(total["alone"]) or total["alone"] <= 0:
        return ["The comparison with pretix alone measured no orders on one side: no split of the cost."]
    when = str(record.get("measured_at", ""))[:16].replace("T", " ")
    added = split[split["counted"]].sort_values("added (ms)", ascending=False)
    top = ", ".join(f"{r['module']} {r['added (ms)']:+.0f} ms" for _, r in added.head(3).iterrows()
                    if r["added (ms)"] > 0)
    target, util = s.targets.target_per_min, s.utilisation
    return [
        f"Who pays for an order, measured in this study's own run ({when} UTC): {ALONE_IS}. Both took "
        f"{record['rate']:g} api orders/s ({record.get('rate_source', 'the study rate')}) for "
        f"{record['seconds']:g} s, {record['repeats']} times, alternating which went first; figures are medians with "
        "their min-max. Each module's CPU over a step is charged to that step's orders, idle use included: what "
        "costs the same at any rate (sentinels, health checks, cron) weighs less per order at a higher rate.",
        f"**pretix's own cost: {total['alone']:.0f} ms of CPU per order. This deployment: "
        f"{total['deployment']:.0f} ms, {total['ratio']:.2f}x pretix's own.** The HA parts and the lab add "
        f"{total['added']:.0f} ms per order"
        + (f", the most in {top}." if top else "."),
        f"At {target:.0f} purchases/min and {util:.0%} utilisation, pretix's own cost needs "
        f"{who_pays.cores_for(total['alone'], target, util):.1f} cores and this deployment "
        f"{who_pays.cores_for(total['deployment'], target, util):.1f}. The multiples below travel to another "
        "machine, the milliseconds do not: measure pretix alone there (`lab bench efficiency`) and multiply.",
    ]


__all__ = ["NO_COMPARISON", "NO_PROFILE", "PLAN_TITLE", "PROFILE_FORMAT", "PROFILE_TITLE", "SPLIT_TITLE",
           "profile_note", "profile_view", "sentences", "split_view"]
