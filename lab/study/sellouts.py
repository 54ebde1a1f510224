"""The study's sell-outs: which runs sell a product out, with how many tickets for how many buyers.

A sell-out is what proves "0 oversold": a quota smaller than the crowd, met by concurrent buyers. Kept apart from
lab/study/params.py (which plans the runs) so the sizing rules and their checks read in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lab.errors import Problem

if TYPE_CHECKING:
    from lab.study.params import PlannedRun, StudyParams

SELLOUT_PRODUCTS = {"spike-api": "Pré-venda API", "spike-shop": "Pré-venda Loja", "faults-api": "Pré-venda Falhas"}
SELLOUT_PRICE = Decimal("25.00")
SELLOUT_CROWD = 2  # a sell-out run sends at least this many buyers per ticket


@dataclass(frozen=True)
class Sellout:
    """A product the study sells out: the run `run` sends `crowd` buyers for its `quota` tickets."""

    run: str
    field: str  # the study parameter that sizes the quota
    product: str
    quota: int
    crowd: int  # the run's planned arrivals that want this product


def _arrivals(rate: float, seconds: float) -> int:
    """A constant workload's planned attempts (lab.load.workload: the offered total, rounded)."""
    return int(math.floor(rate * seconds + 0.5)) if rate > 0 and seconds > 0 else 0


def sellouts(params: StudyParams) -> list[Sellout]:
    """The study's sell-outs: each spike journey's on-sale, and the fault run's product bought by a share of its
    buyers. A quota left empty is sized from its crowd."""
    spike, faults = params.spike, params.faults
    rate = round(spike.per_min / 60.0, 3)  # as plan_runs offers it
    api, shop = _arrivals(rate, spike.api_seconds), _arrivals(rate, spike.shop_seconds)
    fault_buyers = int(_arrivals(faults.rate, faults.seconds) * faults.sellout_share)

    def sized(quota: int | None, crowd: int, share: float) -> int:
        return quota if quota is not None else max(1, int(crowd * share))

    return [
        Sellout("spike-api", "spike.sellout_quota_api", SELLOUT_PRODUCTS["spike-api"],
                sized(spike.sellout_quota_api, api, 0.45), api),
        Sellout("spike-shop", "spike.sellout_quota_shop", SELLOUT_PRODUCTS["spike-shop"],
                sized(spike.sellout_quota_shop, shop, 0.1), shop),
        Sellout("faults-api", "faults.sellout_quota", SELLOUT_PRODUCTS["faults-api"],
                sized(faults.sellout_quota, fault_buyers, 0.4), fault_buyers),
    ]


def sellout_errors(params: StudyParams, runs: list[PlannedRun]) -> list[Problem]:
    """One line per sell-out that would not surely sell out, and per sell-out product the study's own product_mix
    names (its capacity runs would eat the quota)."""
    planned = {r.name for r in runs}
    lines = []
    for s in sellouts(params):
        if s.run in planned and SELLOUT_CROWD * s.quota > s.crowd:
            sized = "" if _field_value(params, s.field) is not None else " (sized from its crowd)"
            lines.append(Problem(s.field, f"{s.quota} ticket(s){sized} for {s.crowd} buyer(s) of {s.product!r} in "
                                 f"run {s.run}: a sell-out needs at least {SELLOUT_CROWD} buyers per ticket; give "
                                 f"at most {s.crowd // SELLOUT_CROWD} tickets or send more buyers"))
        if s.product in params.product_mix:
            lines.append(Problem("product_mix", f"{s.product!r} is the sell-out product of run {s.run} ({s.field}); "
                                 "the study's mix buys the other products"))
    return lines


def _field_value(params: StudyParams, dotted: str) -> Any:
    section, name = dotted.split(".")
    return getattr(getattr(params, section), name)


__all__ = ["SELLOUT_CROWD", "SELLOUT_PRICE", "SELLOUT_PRODUCTS", "Sellout", "sellout_errors", "sellouts"]
