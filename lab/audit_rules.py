"""Consistency rules over frames, Jepsen-style: the client's history is the evidence the database is held to.

Pure functions: each rule takes DataFrames and returns the offending rows, so a test can break one thing on
purpose and see exactly that rule fire. Reading the database and the run folder is the caller's job.

Inputs (extra columns are kept and shown):
- attempts: attempt_id, outcome (purchased | sold_out | failed | dropped | cancelled), order_code
- db_orders: code, status (n pending, p paid, e expired, c canceled), attempt_id (may be null; link_orders
  fills it from `comment` or `email` when the lab put the attempt id there)
- db_positions: order_code, item_id (optional `canceled` bool: canceled positions hold no quota)
- quotas: quota_id, size (null = unlimited), items (list of item ids the quota covers)
- availability (optional): quota_id, available (bool), optionally available_number: pretix's own answer
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, computed_field

HOLDING = ("n", "p")  # pending and paid orders hold quota; expired and canceled ones do not
ROW_CAP = 100
AUDIT_FILE = "audit.json"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def _require(frame: pd.DataFrame, name: str, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}")


def _attempt_ids(db_orders: pd.DataFrame) -> pd.Series:
    if "attempt_id" in db_orders.columns:
        return db_orders["attempt_id"]
    return pd.Series(pd.NA, index=db_orders.index, dtype="object")


_TAG = re.compile(r"(?:lab-|\+)([0-9a-f]{12})\b", re.IGNORECASE)
# Any lab mark: the api journey's comment `lab-attempt <id>` (case as written) or a shop tag (_TAG, any case).
# Built from _TAG so the tag is spelled once; the outer group lets str.extract find either in one pass.
_MARK = re.compile(rf"(lab-attempt\s|(?i:{_TAG.pattern}))")


def link_orders(db_orders: pd.DataFrame, attempt_ids: Iterable[str],
                sources: tuple[str, ...] = ("comment", "email", "internal_reference")) -> pd.DataFrame:
    """Fill a missing attempt_id from a known attempt id found in `comment`, `email` or `internal_reference`.

    The api journey writes the whole attempt id into the order comment; the web shop has no comment field,
    so the shop journey tags orders with the id's first 12 hex digits (`lab-<12>` in the invoice reference,
    `+<12>` in a guest's email), which this matches as well.
    """
    known = {str(a).lower() for a in attempt_ids}
    by_prefix = {a.replace("-", "")[:12]: a for a in known}
    linked = db_orders.copy()
    ids = _attempt_ids(linked).astype("object")

    def find(text: object) -> object:
        if not isinstance(text, str):
            return pd.NA
        full = next((m for m in (x.lower() for x in _UUID.findall(text)) if m in known), None)
        if full is not None:
            return full
        return next((by_prefix[t.lower()] for t in _TAG.findall(text) if t.lower() in by_prefix), pd.NA)

    for column in sources:
        if column in linked.columns:
            ids = ids.where(ids.notna(), linked[column].map(find))
    linked["attempt_id"] = ids
    return linked


def find_lost(attempts: pd.DataFrame, db_orders: pd.DataFrame) -> pd.DataFrame:
    """The client was told 'purchased' but no such order exists (by its code, or by its attempt link)."""
    _require(attempts, "attempts", ["attempt_id", "outcome", "order_code"])
    _require(db_orders, "db_orders", ["code"])
    purchased = attempts[attempts["outcome"] == "purchased"]
    codes = set(db_orders["code"].dropna())
    linked = set(_attempt_ids(db_orders).dropna())
    has_code = purchased["order_code"].notna()
    missing = (has_code & ~purchased["order_code"].isin(codes)) | (
        ~has_code & ~purchased["attempt_id"].isin(linked))
    return purchased[missing].reset_index(drop=True)


def foreign_orders(db_orders: pd.DataFrame, sources: tuple[str, ...] = ("comment", "email", "internal_reference")
                   ) -> pd.Series:
    """True for orders that carry a lab attempt tag yet are linked to none of this run's attempts.

    The run's window starts a few seconds before its first request, so it can hold the previous run's late
    orders: they belong to that run's audit, not to this one's ghosts. Call after `link_orders`.
    """
    tagged = pd.Series(False, index=db_orders.index)
    for column in sources:
        if column in db_orders.columns:
            text = db_orders[column].astype("string").fillna("")
            tagged |= text.str.extract(_MARK)[0].notna()
    return tagged & _attempt_ids(db_orders).isna()


def find_ghosts(attempts: pd.DataFrame, db_orders: pd.DataFrame, foreign: pd.Series | None = None) -> pd.DataFrame:
    """Orders in the database that no attempt saw succeed (e.g. made after a client timeout).

    Not necessarily a bug (a timeout does not mean no order), but a buyer who was told 'failed' now holds a
    ticket, so every ghost is listed with what the client saw (client_outcome 'unlinked': no attempt known).
    Orders tagged by another run (see `foreign_orders`) are not this run's ghosts; `foreign` passes that mask
    when the caller has it already (`audit` needs it twice and scans the orders once).
    """
    _require(attempts, "attempts", ["attempt_id", "outcome", "order_code"])
    _require(db_orders, "db_orders", ["code", "status"])
    purchased = attempts[attempts["outcome"] == "purchased"]
    seen_codes = set(purchased["order_code"].dropna())
    seen_attempts = set(purchased["attempt_id"])
    ids = _attempt_ids(db_orders)
    ghosts = db_orders[~db_orders["code"].isin(seen_codes) & ~ids.isin(seen_attempts)
                       & ~(foreign_orders(db_orders) if foreign is None else foreign)].copy()
    ghosts["attempt_id"] = _attempt_ids(ghosts)
    client = attempts.drop_duplicates("attempt_id").set_index("attempt_id")
    ghosts["client_outcome"] = ghosts["attempt_id"].map(client["outcome"]).fillna("unlinked")
    if "error_kind" in client.columns:
        ghosts["client_error_kind"] = ghosts["attempt_id"].map(client["error_kind"])
    return ghosts.reset_index(drop=True)


def find_duplicates(db_orders: pd.DataFrame) -> pd.DataFrame:
    """Two or more orders linked to one attempt: the idempotency key did not hold."""
    _require(db_orders, "db_orders", ["code"])
    orders = db_orders.assign(attempt_id=_attempt_ids(db_orders))
    orders = orders[orders["attempt_id"].notna()]
    counts = orders.groupby("attempt_id")["code"].transform("count")
    dupes = orders[counts > 1].assign(orders_for_attempt=counts[counts > 1])
    return dupes.sort_values(["attempt_id", "code"]).reset_index(drop=True)


def quota_usage(db_orders: pd.DataFrame, db_positions: pd.DataFrame, quotas: pd.DataFrame) -> pd.DataFrame:
    """Per quota: size and the positions that hold it (in pending or paid orders, not canceled)."""
    _require(db_orders, "db_orders", ["code", "status"])
    _require(db_positions, "db_positions", ["order_code", "item_id"])
    _require(quotas, "quotas", ["quota_id", "size", "items"])
    holding = set(db_orders.loc[db_orders["status"].isin(HOLDING), "code"])
    positions = db_positions[db_positions["order_code"].isin(holding)]
    if "canceled" in positions.columns:
        positions = positions[~positions["canceled"].fillna(False).astype(bool)]
    per_item = positions.groupby("item_id").size()
    mapping = quotas[["quota_id", "items"]].explode("items").dropna(subset=["items"]).drop_duplicates()
    mapping["used"] = mapping["items"].map(per_item).fillna(0).astype("int64")
    used = mapping.groupby("quota_id")["used"].sum()
    usage = quotas[["quota_id", "size"]].copy()
    usage["used"] = usage["quota_id"].map(used).fillna(0).astype("int64")
    return usage


def find_oversold(db_orders: pd.DataFrame, db_positions: pd.DataFrame, quotas: pd.DataFrame) -> pd.DataFrame:
    """Quotas with more holding positions than their size (unlimited quotas cannot be oversold)."""
    usage = quota_usage(db_orders, db_positions, quotas)
    limited = usage[usage["size"].notna()]
    over = limited[limited["used"] > limited["size"]].copy()
    over["over_by"] = over["used"] - over["size"]
    return over.reset_index(drop=True)


def find_false_availability(db_orders: pd.DataFrame, db_positions: pd.DataFrame, quotas: pd.DataFrame,
                            availability: pd.DataFrame | None) -> pd.DataFrame:
    """pretix said 'available' while the positions already fill the quota (a stale or wrong answer)."""
    if availability is None or availability.empty:
        return pd.DataFrame(columns=["quota_id", "size", "used", "available"])
    _require(availability, "availability", ["quota_id", "available"])
    usage = quota_usage(db_orders, db_positions, quotas)
    both = usage.merge(availability, on="quota_id", how="inner")
    wrong = both["size"].notna() & both["available"].astype(bool) & (both["used"] >= both["size"])
    return both[wrong].reset_index(drop=True)


class RuleResult(BaseModel):
    """One rule's verdict: how many offenders, and the first ROW_CAP of them."""

    model_config = ConfigDict(frozen=True)
    count: int
    unit: str
    rows: list[dict[str, Any]]
    truncated: bool


def _rule(frame: pd.DataFrame, unit: str, count: int | None = None, cap: int = ROW_CAP) -> RuleResult:
    rows = json.loads(frame.head(cap).to_json(orient="records", date_format="iso")) if len(frame) else []
    return RuleResult(count=len(frame) if count is None else count, unit=unit, rows=rows, truncated=len(frame) > cap)


class AuditResult(BaseModel):
    """The audit of one run. Ghosts are shown but do not make a run unclean; the other rules do."""

    model_config = ConfigDict(frozen=True)
    lost: RuleResult
    ghost: RuleResult
    duplicate: RuleResult
    oversold: RuleResult
    false_availability: RuleResult
    totals: dict[str, int]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def clean(self) -> bool:
        return not (self.lost.count or self.duplicate.count or self.oversold.count or self.false_availability.count)

    @property
    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name).count for name in
                ("lost", "ghost", "duplicate", "oversold", "false_availability")}

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def describe(self) -> str:
        verdict = "clean" if self.clean else "NOT clean"
        return f"audit {verdict}: " + ", ".join(f"{k} {v}" for k, v in self.counts.items())


def audit(attempts: pd.DataFrame, db_orders: pd.DataFrame, db_positions: pd.DataFrame, quotas: pd.DataFrame,
          availability: pd.DataFrame | None = None, cap: int = ROW_CAP,
          quota_orders: pd.DataFrame | None = None) -> AuditResult:
    """Every rule over one run's client history and the database it left behind.

    `db_orders` are the run's orders (its time window); quotas are held by every order of the event, so
    `quota_orders` (all of the event's orders, default: db_orders) is what quota usage counts.
    """
    holders = db_orders if quota_orders is None else quota_orders
    lost = find_lost(attempts, db_orders)
    foreign = foreign_orders(db_orders)
    ghosts = find_ghosts(attempts, db_orders, foreign)
    dupes = find_duplicates(db_orders)
    oversold = find_oversold(holders, db_positions, quotas)
    wrong = find_false_availability(holders, db_positions, quotas, availability)
    totals = {
        "attempts": len(attempts),
        "purchased": int((attempts["outcome"] == "purchased").sum()),
        "db_orders": len(db_orders),
        "db_orders_holding": int(db_orders["status"].isin(HOLDING).sum()),
        "db_orders_linked": int(_attempt_ids(db_orders).notna().sum()),
        "db_orders_of_other_runs": int(foreign.sum()),
        "db_positions": len(db_positions),
        "quotas": len(quotas),
        "oversold_positions": int(oversold["over_by"].sum()) if len(oversold) else 0,
        "duplicate_extra_orders": int(len(dupes) - dupes["attempt_id"].nunique()) if len(dupes) else 0,
    }
    return AuditResult(
        lost=_rule(lost, "attempts told 'purchased' whose order is not in the database", cap=cap),
        ghost=_rule(ghosts, "orders no attempt saw succeed", cap=cap),
        duplicate=_rule(dupes, "attempts with more than one order", dupes["attempt_id"].nunique() if len(dupes)
                        else 0, cap=cap),
        oversold=_rule(oversold, "quotas holding more positions than their size", cap=cap),
        false_availability=_rule(wrong, "quotas pretix called available while full", cap=cap),
        totals=totals,
    )


def write_audit(result: AuditResult, run_dir: Path, overwrite: bool = False) -> Path:
    """Write audit.json into the run folder; an existing one is kept unless overwrite (runs are written once)."""
    path = Path(run_dir) / AUDIT_FILE
    with path.open("w" if overwrite else "x") as handle:
        handle.write(result.to_json())
    return path


def read_audit(run_dir: Path) -> AuditResult:
    return AuditResult.model_validate_json((Path(run_dir) / AUDIT_FILE).read_text())


__all__ = [
    "AuditResult", "RuleResult", "audit", "find_duplicates", "find_false_availability", "find_ghosts",
    "find_lost", "find_oversold", "foreign_orders", "link_orders", "quota_usage", "read_audit", "write_audit",
]
