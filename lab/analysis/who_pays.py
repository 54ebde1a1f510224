"""Who pays for an order: pretix's own CPU (pretix alone, same run, same rate) against the deployment's, per module.

Read from <study>/efficiency.json (lab.experiments.who_pays). The deployment's cost is split into what pretix alone
also spends (its web, celery, PostgreSQL and redis) and what the HA parts and the lab add on top (the proxy, the
replicas, the sentinels, cron, and the extra work of pretix's own modules behind them). The load generator is the
lab's tool, not part of either deployment: it is shown, never counted.

The plan per module is written as a multiple of pretix's own cost per order, a ratio measured inside one run: on a
faster or slower machine, measure pretix alone there (`lab bench efficiency`) and the same multiples hold, while
CPU-seconds from another day would not.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from lab.analysis.efficiency import MODULES

EFFICIENCY_FILE = "efficiency.json"
NOT_COUNTED = ("generator",)  # the lab's load generator: the same process on both sides, no part of a deployment


def read(folder: Path) -> dict[str, Any] | None:
    """The study's comparison record, None when the study has none (disabled, or an older study)."""
    path = Path(folder) / EFFICIENCY_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if isinstance(record, dict) else None


def _median(record: dict[str, Any], side: str, module: str) -> tuple[float, float, float]:
    found = record["summary"][side]["cpu_per_order"].get(module) or {}
    return tuple(float(found.get(k, math.nan)) for k in ("median", "low", "high"))  # type: ignore[return-value]


def cost_split(record: dict[str, Any]) -> pd.DataFrame:
    """Per module: CPU milliseconds per order on the deployment and on pretix alone (median, min, max over the
    repeats) and what the deployment adds (median difference). Modules neither side used are left out; the
    generator's row is shown, never summed."""
    rows = []
    for module in MODULES:
        stack, alone = _median(record, "stack", module), _median(record, "alone", module)
        if all((math.isnan(v) or v == 0) for v in (*stack, *alone)):
            continue
        alone_ms = [0.0 if math.isnan(v) else 1000 * v for v in alone]
        stack_ms = [1000 * v for v in stack]
        rows.append({"module": module, "deployment (ms)": stack_ms[0], "deployment min": stack_ms[1],
                     "deployment max": stack_ms[2], "pretix alone (ms)": alone_ms[0], "alone min": alone_ms[1],
                     "alone max": alone_ms[2], "added (ms)": stack_ms[0] - alone_ms[0],
                     "counted": module not in NOT_COUNTED})
    return pd.DataFrame(rows)


def totals(split: pd.DataFrame) -> dict[str, float]:
    """CPU ms per order in all, over the counted modules: the deployment's, pretix's own, and their ratio."""
    counted = split[split["counted"]] if len(split) else split
    stack = float(counted["deployment (ms)"].sum()) if len(counted) else math.nan
    alone = float(counted["pretix alone (ms)"].sum()) if len(counted) else math.nan
    return {"deployment": stack, "alone": alone, "added": stack - alone,
            "ratio": stack / alone if alone > 0 else math.nan}


def plan(split: pd.DataFrame, per_min: float, utilisation: float) -> pd.DataFrame:
    """Cores per module for a purchase rate at a utilisation, from this run's costs; and each module's cost as a
    multiple of pretix's own cost per order (the part of the plan that travels to another machine)."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1]; got {utilisation}")
    counted = split[split["counted"]]
    own = float(counted["pretix alone (ms)"].sum())
    rows = []
    for _, row in counted.iterrows():
        rows.append({"module": row["module"],
                     "x pretix's own cost": row["deployment (ms)"] / own if own > 0 else math.nan,
                     "cores": cores_for(row["deployment (ms)"], per_min, utilisation)})
    out = pd.DataFrame(rows)
    if len(out):
        out = pd.concat([out, pd.DataFrame([{"module": "in all", "x pretix's own cost": out["x pretix's own cost"]
                                             .sum(), "cores": out["cores"].sum()}])], ignore_index=True)
    return out


def latest_profile(bench_dir: Path, journey: str = "api") -> tuple[Path, pd.DataFrame] | None:
    """The newest profiled `lab bench efficiency` on this machine (data/bench/<stamp>-efficiency-<journey>.json
    with a profile) and its top costs per order (lab.analysis.costs); None when there is none. A study does not
    profile (py-spy and pg_stat_statements cost CPU), so its report shows the bench's, dated."""
    from lab.analysis import costs

    for path in sorted(Path(bench_dir).glob(f"*-efficiency-{journey}.json"), reverse=True):
        try:
            table = costs.from_file(path)
        except (ValueError, KeyError, TypeError):  # an older or cut file: look further back
            continue
        if len(table):
            return path, table
    return None


def cores_for(ms_per_order: float, per_min: float, utilisation: float) -> float:
    """Cores that serve `per_min` orders at `ms_per_order` of CPU each, running at `utilisation`."""
    return ms_per_order / 1000 * per_min / 60 / utilisation


__all__ = ["EFFICIENCY_FILE", "cores_for", "cost_split", "latest_profile", "plan", "read", "totals"]
