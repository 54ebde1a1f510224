"""Capacity planning from measured CPU: CPU-seconds per purchase per module and journey, and the cores a target needs.

Each usable run (no faults, no overload, no sold-out answers: a sell-out's refusals cost CPU too; purchases and
monitor data) gives, per module, the cores it used on average over the run (the monitor's cumulative CPU counters
over the run's span) and its purchase rate. A module is a service without its instance number (pretix-web-1 +
pretix-web-2 -> pretix-web).
Per journey, over its runs at one login share: when two or more runs span purchase rates at least 1.5x apart, a
straight line per module, cores = idle + cost x purchases/s, separates the cost of a purchase (the slope, CPU-s per
purchase) from what the module burns anyway (the intercept, idle cores: periodic jobs, health checks, the
monitor's probes). With a single run, cost = CPU-seconds / purchases and idle = 0 (an upper bound on the cost).

Mixes: a share of buyers take the web shop (about ten times the CPU of an API order) and a share of those log
in (an Argon2 password hash). The login cost is measured from shop runs at another login share (what they used
beyond the fitted line, per extra login), else it is `login_cpu_seconds` on pretix-web (an assumption the
report states).
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
MIN_RATE_SPREAD = 1.5  # a line through purchase rates closer than this says more about noise than about cost
RUN_COLUMNS = ("run_id", "journey", "login_share", "purchases", "seconds", "rate")


def module_of(service: str) -> str:
    """pretix-web-2 -> pretix-web; postgres-primary stays."""
    return re.sub(r"-\d+$", "", service)


def _span(study_run: StudyRun) -> tuple[float, float]:
    run = study_run.run
    start = float(run.meta.get("started", run.attempts["scheduled"].min()))
    end = float(run.meta.get("ended", run.attempts["end"].max()))
    return start, end


def cost_table(runs: list[StudyRun]) -> pd.DataFrame:
    """One row per usable run: journey, login share, purchases, span (s), purchase rate (/s) and the cores each
    module used on average over the span."""
    rows = []
    for r in runs:
        if r.kind in STEADY_EXCLUDED or r.has_faults:
            continue
        purchases = int((r.run.attempts["outcome"] == "purchased").sum())
        if purchases == 0 or (r.run.attempts["outcome"] == "sold_out").any() or r.run.metrics.empty:
            continue
        start, end = _span(r)
        seconds = end - start
        if seconds <= 0:
            continue
        used = cpu_seconds_by_service(r.run.metrics, start, end).groupby(module_of).sum()
        rows.append({"run_id": r.run_id, "journey": r.journey, "login_share": r.login_share,
                     "purchases": purchases, "seconds": seconds, "rate": purchases / seconds,
                     **(used / seconds).to_dict()})
    return pd.DataFrame(rows)


def _modules(costs: pd.DataFrame) -> list[str]:
    return [c for c in costs.columns if c not in RUN_COLUMNS]


def _fit_group(costs: pd.DataFrame, journey: str) -> pd.DataFrame:
    """The journey's runs at its most used login share (ties: the share of the run with most purchases)."""
    mine = costs[costs["journey"] == journey]
    shares = mine["login_share"].fillna(-1.0)
    counts = shares.value_counts()
    top = counts[counts == counts.max()].index
    share = shares[mine["purchases"].idxmax()] if shares[mine["purchases"].idxmax()] in top else top[0]
    return mine[shares == share]


def fit_journey(costs: pd.DataFrame, journey: str) -> tuple[pd.Series, pd.Series, str]:
    """(CPU-s per purchase, idle cores, how) by module for one journey (see the module docstring)."""
    group = _fit_group(costs, journey)
    modules = _modules(costs)
    cores = group[modules].fillna(0.0)
    if len(group) >= 2 and group["rate"].max() >= MIN_RATE_SPREAD * group["rate"].min():
        slope, idle = {}, {}
        for module in modules:
            b, a = np.polyfit(group["rate"], cores[module], 1)
            slope[module], idle[module] = max(float(b), 0.0), max(float(a), 0.0)
        how = f"fitted over {len(group)} runs ({group['rate'].min() * 60:.0f}-{group['rate'].max() * 60:.0f} " \
              "purchases/min)"
        return pd.Series(slope), pd.Series(idle), how
    best = group.loc[group["purchases"].idxmax()]
    return (cores.loc[best.name] / best["rate"], pd.Series(0.0, index=modules),
            f"one run ({best['run_id']}), idle included")


Fit = tuple[pd.Series, pd.Series, str]  # fit_journey's answer: (CPU-s per purchase, idle cores, how)


def fit_journeys(costs: pd.DataFrame) -> dict[str, Fit]:
    """fit_journey for each journey (sorted), each fitted once: journey_costs, journey_idle, fit_methods and
    login_cost each read one part of the same fit."""
    return {j: fit_journey(costs, j) for j in sorted(costs["journey"].unique())} if len(costs) else {}


def journey_costs(fits: dict[str, Fit]) -> pd.DataFrame:
    """CPU-s per purchase by module (columns) for each journey (index)."""
    if not fits:
        return pd.DataFrame()
    table = pd.DataFrame({j: fit[0] for j, fit in fits.items()}).T.fillna(0.0)
    return table[table.sum(axis=0).sort_values(ascending=False).index]  # the costliest module first


def journey_idle(fits: dict[str, Fit]) -> pd.DataFrame:
    """Idle cores by module (columns) for each journey (index): what the modules used without purchases."""
    if not fits:
        return pd.DataFrame()
    return pd.DataFrame({j: fit[1] for j, fit in fits.items()}).T.fillna(0.0)


def fit_methods(fits: dict[str, Fit]) -> dict[str, str]:
    """How each journey's cost was obtained, in words."""
    return {j: fit[2] for j, fit in fits.items()}


def recorded_login_share(costs: pd.DataFrame) -> float:
    """The login share of the shop runs the shop's cost was fitted on (NaN without any)."""
    if costs.empty or "shop" not in set(costs["journey"]):
        return math.nan
    return float(_fit_group(costs, "shop")["login_share"].iloc[0])


def login_cost(costs: pd.DataFrame, login_cpu_seconds: float,
               fits: dict[str, Fit] | None = None) -> tuple[pd.Series, str]:
    """Extra CPU-s per login by module, and how it was obtained ("measured" or "assumed"): what shop runs at
    another login share used beyond the fitted line, per extra login. `fits`: fit_journeys(costs), if made."""
    if costs.empty or "shop" not in set(costs["journey"]):
        return pd.Series({WEB_MODULE: login_cpu_seconds}), "assumed"
    fitted = _fit_group(costs, "shop")
    others = costs[(costs["journey"] == "shop") & ~costs.index.isin(fitted.index)]
    base = float(fitted["login_share"].iloc[0])
    others = others[(others["login_share"] - base).abs() > 0.05]
    if others.empty:
        return pd.Series({WEB_MODULE: login_cpu_seconds}), "assumed"
    slope, idle, _how = fits["shop"] if fits is not None else fit_journey(costs, "shop")
    modules = _modules(costs)
    extra = []
    for _, run in others.iterrows():
        beyond = run[modules].fillna(0.0).astype(float) - idle - slope * run["rate"]
        extra.append(beyond / (run["rate"] * (run["login_share"] - base)))
    return pd.concat(extra, axis=1).mean(axis=1).clip(lower=0.0), "measured"


def cores_for(per_purchase: pd.Series, purchases_per_minute: float, utilisation: float,
              idle: pd.Series | None = None) -> pd.Series:
    """Cores each module needs to serve a purchase rate (plus its idle use) while running at `utilisation`."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1]; got {utilisation}")
    busy = per_purchase * purchases_per_minute / 60.0
    if idle is not None:
        busy = busy + idle.reindex(busy.index, fill_value=0.0)
    return busy / utilisation


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
              utilisation: float, mixes=DEFAULT_MIXES, idle: pd.DataFrame | None = None) -> pd.DataFrame:
    """For each (shop share, login share) mix: CPU-s per purchase and cores per module at the target rate."""
    rows = []
    for shop_share, login_share in mixes:
        cost = mix_cost(journeys, login, shop_share, login_share, recorded_login_share)
        if cost.empty:
            continue
        idle_cores = idle.max(axis=0) if idle is not None and len(idle) else None  # one deployment's idle
        cores = cores_for(cost, target_per_min, utilisation, idle_cores)
        rows.append({"web shop share": f"{shop_share:.0%}", "logins among shop buyers": f"{login_share:.0%}",
                     "CPU-s per purchase": round(float(cost.sum()), 3),
                     **{f"{m} cores": round(float(c), 2) for m, c in cores.items()},
                     "total cores": round(float(cores.sum()), 2)})
    return pd.DataFrame(rows)


__all__ = ["DEFAULT_MIXES", "Fit", "cores_for", "cost_table", "fit_journey", "fit_journeys", "fit_methods",
           "journey_costs", "journey_idle", "login_cost", "mix_cost", "mix_table", "module_of", "recorded_login_share"]
