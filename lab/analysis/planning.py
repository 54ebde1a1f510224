"""Capacity planning from measured CPU: CPU-seconds per purchase per module and journey, and the cores a target needs.

CPU per purchase of a run = CPU-seconds each container used while the load ran (the monitor's cumulative
counters) / purchases. It includes the idle cost of the run's span, so it is an upper bound (conservative).
Per journey the run with the most purchases (no faults, no overload) is the measurement. A module is a service
without its instance number (pretix-web-1 + pretix-web-2 -> pretix-web).

Mixes: a share of buyers take the web shop (about ten times the CPU of an API order) and a share of those log
in (an Argon2 password hash). The login cost is measured when shop runs at two or more login shares exist
(a straight line per module through their costs), else it is `login_cpu_seconds` on pretix-web (an assumption
the report states).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from lab.analysis.frames import cpu_seconds_by_service
from lab.analysis.study import StudyRun
from lab.analysis.verdicts import STEADY_EXCLUDED

WEB_MODULE = "pretix-web"
DEFAULT_MIXES = ((0.0, 0.0), (0.5, 0.2), (1.0, 0.0), (1.0, 0.2), (1.0, 1.0))  # (shop share, login share of shop)


def module_of(service: str) -> str:
    """pretix-web-2 -> pretix-web; postgres-primary stays."""
    return re.sub(r"-\d+$", "", service)


def run_cpu_per_purchase(study_run: StudyRun) -> pd.Series:
    """CPU-seconds per purchase by module over the run's load span (empty without purchases or monitor data)."""
    run = study_run.run
    purchased = int((run.attempts["outcome"] == "purchased").sum())
    if purchased == 0 or run.metrics.empty:
        return pd.Series(dtype=float)
    start = float(run.meta.get("started", run.attempts["scheduled"].min()))
    end = float(run.meta.get("ended", run.attempts["end"].max()))
    used = cpu_seconds_by_service(run.metrics, start, end)
    return (used.groupby(module_of).sum() / purchased).sort_values(ascending=False)


def cost_table(runs: list[StudyRun]) -> pd.DataFrame:
    """One row per usable run: journey, login share, purchases and CPU-s per purchase of each module."""
    rows = []
    for r in runs:
        if r.kind in STEADY_EXCLUDED or r.has_faults:
            continue
        per = run_cpu_per_purchase(r)
        if per.empty:
            continue
        rows.append({"run_id": r.run_id, "journey": r.journey, "login_share": r.login_share,
                     "purchases": int((r.run.attempts["outcome"] == "purchased").sum()), **per.to_dict()})
    return pd.DataFrame(rows)


def journey_costs(costs: pd.DataFrame) -> pd.DataFrame:
    """CPU-s per purchase by module (columns) for each journey (index): its run with the most purchases."""
    if costs.empty:
        return pd.DataFrame()
    best = costs.loc[costs.groupby("journey")["purchases"].idxmax()].set_index("journey")
    modules = [c for c in costs.columns if c not in ("run_id", "journey", "login_share", "purchases")]
    return best[modules].fillna(0.0)


def recorded_login_share(costs: pd.DataFrame) -> float:
    """The login share of the shop run journey_costs measured the shop with (NaN without one)."""
    shop = costs[costs["journey"] == "shop"] if len(costs) else costs
    return float(shop.loc[shop["purchases"].idxmax(), "login_share"]) if len(shop) else math.nan


def login_cost(costs: pd.DataFrame, login_cpu_seconds: float) -> tuple[pd.Series, str]:
    """Extra CPU-s per login by module, and how it was obtained ("measured" or "assumed")."""
    modules = [c for c in costs.columns if c not in ("run_id", "journey", "login_share", "purchases")]
    shop = costs[costs["journey"] == "shop"] if len(costs) else costs
    if len(shop) and shop["login_share"].nunique() >= 2:
        slopes = {m: float(np.polyfit(shop["login_share"], shop[m].fillna(0.0), 1)[0]) for m in modules}
        return pd.Series(slopes).clip(lower=0.0), "measured"
    return pd.Series({WEB_MODULE: login_cpu_seconds}), "assumed"


def cores_for(per_purchase: pd.Series, purchases_per_minute: float, utilisation: float) -> pd.Series:
    """Cores each module needs to serve a purchase rate while running at `utilisation` of its cores."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1]; got {utilisation}")
    return per_purchase * purchases_per_minute / 60.0 / utilisation


def mix_cost(journeys: pd.DataFrame, login: pd.Series, shop_share: float, login_share: float,
             recorded_login_share: float) -> pd.Series:
    """CPU-s per purchase by module for a mix of journeys (shop_share of buyers in the shop, login_share of them
    logging in), from the measured journeys and the login cost."""
    api = journeys.loc["api"] if "api" in journeys.index else None
    shop = journeys.loc["shop"] if "shop" in journeys.index else None
    if shop_share > 0 and shop is None or shop_share < 1 and api is None:
        return pd.Series(dtype=float)
    total = pd.Series(0.0, index=journeys.columns)
    if api is not None:
        total = total + (1 - shop_share) * api
    if shop is not None and shop_share > 0:
        base = 0.0 if math.isnan(recorded_login_share) else recorded_login_share
        shift = login.reindex(journeys.columns, fill_value=0.0) * (login_share - base)
        total = total + shop_share * (shop + shift).clip(lower=0.0)
    return total


def mix_table(journeys: pd.DataFrame, login: pd.Series, recorded_login_share: float, target_per_min: float,
              utilisation: float, mixes=DEFAULT_MIXES) -> pd.DataFrame:
    """For each (shop share, login share) mix: CPU-s per purchase and cores per module at the target rate."""
    rows = []
    for shop_share, login_share in mixes:
        cost = mix_cost(journeys, login, shop_share, login_share, recorded_login_share)
        if cost.empty:
            continue
        cores = cores_for(cost, target_per_min, utilisation)
        rows.append({"web shop share": f"{shop_share:.0%}", "logins among shop buyers": f"{login_share:.0%}",
                     "CPU-s per purchase": round(float(cost.sum()), 3),
                     **{f"{m} cores": round(float(c), 2) for m, c in cores.items()},
                     "total cores": round(float(cores.sum()), 2)})
    return pd.DataFrame(rows)


__all__ = ["DEFAULT_MIXES", "cores_for", "cost_table", "journey_costs", "login_cost", "mix_cost", "mix_table",
           "module_of", "recorded_login_share", "run_cpu_per_purchase"]
