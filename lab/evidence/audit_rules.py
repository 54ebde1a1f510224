"""Consistency rules over frames, Jepsen-style: the client's history is the evidence the database is held to.

Pure functions: each rule takes DataFrames and returns the offending rows, so a test can break one thing on
purpose and see exactly that rule fire. Reading the database and the run folder is the caller's job.

Inputs (extra columns are kept and shown):
- attempts: attempt_id, outcome (purchased | sold_out | failed | dropped | cancelled), order_code; for the content
  checks optionally item and count (what the journey asked for), buyer (the customer identifier), guest (True: a
  guest order, no customer; False: the order carries `buyer`; null: not recorded, then an api order is expected to
  carry `buyer` and a shop order's customer is not checked), journey, confirmed_by (response | lookup)
- db_orders: code, status (n pending, p paid, e expired, c canceled), attempt_id (may be null; link_orders
  fills it from `comment` or `email` when the lab put the attempt id there), optionally customer (identifier)
  and created (epoch seconds, for `run_orders`' window)
- db_positions: order_code, item_id (optional `canceled` bool: canceled positions hold no quota and are not
  part of what the buyer holds)
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

from lab.evidence.runfolder import RunFolder

HOLDING = ("n", "p")  # pending and paid orders hold quota; expired and canceled ones do not
ROW_CAP = 100
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


WINDOW_BEFORE = 5.0  # seconds before the run's first scheduled attempt that its window opens


def run_orders(all_orders: pd.DataFrame, attempts: pd.DataFrame, start: float | None = None,
               end: float | None = None) -> pd.DataFrame:
    """The run's own orders out of all of the event's: those linked to its attempts (by their tag, or by an order
    code an attempt recorded) whenever they were created, plus untagged orders created in [start, end].

    The window is the run's own (from its first scheduled attempt to the end of its drain), so auditing the run
    again later sees the same orders unless the run's own orders changed: an order made after the window closed
    belongs to somebody else, while a late order that names one of this run's attempts is still this run's.
    Orders tagged by another run that fall inside the window are kept (`foreign_orders` marks them).
    Needs `created` when a bound is given; the result is linked (`link_orders`)."""
    _require(all_orders, "all_orders", ["code"])
    linked = link_orders(all_orders, attempts["attempt_id"]) if len(attempts) else all_orders.copy()
    if "attempt_id" not in linked.columns:
        linked["attempt_id"] = pd.Series(pd.NA, index=linked.index, dtype="object")
    inside = pd.Series(True, index=linked.index)
    if start is not None or end is not None:
        _require(linked, "all_orders", ["created"])
        created = pd.to_numeric(linked["created"], errors="coerce")
        if start is not None:
            inside &= created >= start
        if end is not None:
            inside &= created <= end
    codes = set(attempts["order_code"].dropna()) if "order_code" in attempts.columns else set()
    mine = linked["attempt_id"].notna() | linked["code"].isin(codes) | inside
    return linked[mine].reset_index(drop=True)


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


ALTERED_COLUMNS = ["attempt_id", "order_code", "reason", "status", "expected_item", "items", "expected_count",
                   "positions", "expected_customer", "customer"]


def _known(value: object) -> bool:
    return value is not None and bool(pd.notna(value))


def _expected_customer(pair: dict) -> str | None | bool:
    """The customer identifier the attempt's order must carry: None for a guest order, False when not known (the
    check is skipped: a run recorded before `guest`, or a shop attempt of such a run)."""
    buyer = str(pair["buyer"]) if _known(pair.get("buyer")) else None
    guest = pair.get("guest")
    if _known(guest):
        if bool(guest):
            return None
        return buyer if buyer is not None else False
    if pair.get("journey") == "api" and buyer is not None:  # the api journey always names the buyer's account
        return buyer
    return False


def find_altered(attempts: pd.DataFrame, db_orders: pd.DataFrame, db_positions: pd.DataFrame) -> pd.DataFrame:
    """Acknowledged purchases whose order exists but is not what the client was told: one row per order, with
    every difference in `reason` ('; '-joined):

    - `status c` / `status e`: canceled or expired (only pending and paid are what a purchase leaves);
    - `positions N not M`: a different number of live (not canceled) positions than the journey asked for;
    - `item X not Y`: a live position of another item than the one asked for;
    - `customer X not Y`: the order is not linked to the customer it was placed for: the buyer's account, or none
      for a guest order (a shop buyer who did not log in); see `guest` in the module's inputs.

    The order is the one whose code the client recorded, or (no code) the orders linked to the attempt. An order
    that is gone is `find_lost`'s, not this rule's; a second order for the attempt is `find_duplicates`'.
    Checks need their columns: without item/count in the attempts (older runs) or `customer` in the orders, those
    checks are skipped."""
    _require(attempts, "attempts", ["attempt_id", "outcome", "order_code"])
    _require(db_orders, "db_orders", ["code", "status"])
    _require(db_positions, "db_positions", ["order_code", "item_id"])
    purchased = attempts[attempts["outcome"] == "purchased"]
    wanted = [c for c in ("item", "count", "journey", "buyer", "guest") if c in purchased.columns]
    purchased = purchased[["attempt_id", "order_code", *wanted]]
    orders = db_orders.assign(attempt_id=_attempt_ids(db_orders))
    check_customer = "customer" in orders.columns
    orders = orders[["code", "status", "attempt_id", *(["customer"] if check_customer else [])]]
    by_code = purchased[purchased["order_code"].notna()].merge(
        orders.drop(columns="attempt_id").rename(columns={"code": "order_code"}), on="order_code", how="inner")
    by_link = purchased[purchased["order_code"].isna()].drop(columns="order_code").merge(
        orders[orders["attempt_id"].notna()].rename(columns={"code": "order_code"}), on="attempt_id", how="inner")
    pairs = pd.concat([by_code, by_link], ignore_index=True)
    if pairs.empty:
        return pd.DataFrame(columns=ALTERED_COLUMNS)
    positions = db_positions[db_positions["order_code"].isin(set(pairs["order_code"]))]
    if "canceled" in positions.columns:
        positions = positions[~positions["canceled"].fillna(False).astype(bool)]
    held = positions.groupby("order_code")["item_id"].agg(lambda s: sorted(int(i) for i in s))
    rows = []
    for pair in pairs.to_dict("records"):
        items = held.get(pair["order_code"], [])
        status = pair["status"]
        item = int(pair["item"]) if _known(pair.get("item")) else None
        count = int(pair["count"]) if _known(pair.get("count")) else None
        expected_customer = _expected_customer(pair) if check_customer else False
        customer = str(pair["customer"]) if _known(pair.get("customer")) else None
        reasons = []
        if status not in HOLDING:
            reasons.append(f"status {status}")
        if count is not None and len(items) != count:
            reasons.append(f"positions {len(items)} not {count}")
        others = sorted({i for i in items if i != item})
        if item is not None and others:
            reasons.append(f"item {','.join(map(str, others))} not {item}")
        if expected_customer is not False and customer != expected_customer:
            reasons.append(f"customer {customer or 'none'} not {expected_customer or 'none (guest)'}")
        if reasons:
            rows.append({"attempt_id": pair["attempt_id"], "order_code": pair["order_code"],
                         "reason": "; ".join(reasons), "status": status, "expected_item": item, "items": items,
                         "expected_count": count, "positions": len(items),
                         "expected_customer": None if expected_customer is False else expected_customer,
                         "customer": customer})
    return pd.DataFrame(rows, columns=ALTERED_COLUMNS)


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


# audit.json files written before the content rule existed load with this (they did not check it)
NOT_CHECKED = RuleResult(count=0, unit="not checked", rows=[], truncated=False)


class AuditWindow(BaseModel):
    """The span of creation times (epoch seconds) whose untagged orders the audit counted as the run's; recorded
    so that auditing the run again reads the same window. `end_from` says where the end came from: `drain` (the
    end of pretix's drain after the run), `run end + tail` (an audit long after the run: its end plus the longest
    drain), `given` (the caller's). An audit again re-uses the recorded window as it is."""

    model_config = ConfigDict(frozen=True)
    start: float | None
    end: float | None
    end_from: str = "given"


class AuditResult(BaseModel):
    """The audit of one run. Ghosts are shown but do not make a run unclean; the other rules do.

    `incomplete` says why a rule could not be checked (a read that kept failing, or attempts missing): such a run
    is never called clean, and what could be checked is still reported. `notes` are caveats that do not stop a rule
    (e.g. pretix had not drained when the database was read). Fields added later (`altered`, `window`) come last and
    have defaults, so older audit.json files still load."""

    model_config = ConfigDict(frozen=True)
    lost: RuleResult
    ghost: RuleResult
    duplicate: RuleResult
    oversold: RuleResult
    false_availability: RuleResult
    totals: dict[str, int]
    incomplete: str | None = None
    notes: list[str] = []
    altered: RuleResult = NOT_CHECKED
    window: AuditWindow | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def clean(self) -> bool:
        return self.incomplete is None and not (self.lost.count or self.altered.count or self.duplicate.count
                                                or self.oversold.count or self.false_availability.count)

    @property
    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name).count for name in
                ("lost", "altered", "ghost", "duplicate", "oversold", "false_availability")}

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def describe(self) -> str:
        verdict = "clean" if self.clean else "NOT clean"
        text = f"audit {verdict}: " + ", ".join(f"{k} {v}" for k, v in self.counts.items())
        if self.totals.get("purchased_by_lookup"):
            text += f"; {self.totals['purchased_by_lookup']} purchase(s) confirmed only by a lookup"
        if self.incomplete:
            text += f"; audit incomplete: {self.incomplete}"
        return text + "".join(f"; {note}" for note in self.notes)

    @classmethod
    def unreadable(cls, why: str, notes: list[str] | None = None, window: AuditWindow | None = None
                   ) -> AuditResult:
        """The record of an audit that could not read what it needs: nothing checked, and it says why."""
        empty = _rule(pd.DataFrame(), "not checked")
        return cls(lost=empty, ghost=empty, duplicate=empty, oversold=empty, false_availability=empty, totals={},
                   incomplete=why, notes=notes or [], altered=empty, window=window)


def audit(attempts: pd.DataFrame, db_orders: pd.DataFrame, db_positions: pd.DataFrame, quotas: pd.DataFrame,
          availability: pd.DataFrame | None = None, cap: int = ROW_CAP,
          quota_orders: pd.DataFrame | None = None, incomplete: str | None = None,
          notes: list[str] | None = None, window: AuditWindow | None = None,
          live_orders: pd.DataFrame | None = None) -> AuditResult:
    """Every rule over one run's client history and the database it left behind.

    `db_orders` are the run's orders (`run_orders`: its window plus its tagged orders); quotas are held by every
    order of the event, so `quota_orders` (all of the event's orders, default: db_orders) is what the oversold
    rule counts, and `live_orders` (default: quota_orders) what pretix's availability answer is held to (it is
    pretix's answer now, so it is checked against every order now).
    """
    holders = db_orders if quota_orders is None else quota_orders
    live = holders if live_orders is None else live_orders
    lost = find_lost(attempts, db_orders)
    altered = find_altered(attempts, db_orders, db_positions)
    foreign = foreign_orders(db_orders)
    ghosts = find_ghosts(attempts, db_orders, foreign)
    dupes = find_duplicates(db_orders)
    oversold = find_oversold(holders, db_positions, quotas)
    wrong = find_false_availability(live, db_positions, quotas, availability)
    purchased = attempts["outcome"] == "purchased"
    confirmed = attempts["confirmed_by"] if "confirmed_by" in attempts.columns else pd.Series(None, attempts.index)
    totals = {
        "attempts": len(attempts),
        "purchased": int(purchased.sum()),
        "purchased_by_response": int((purchased & (confirmed == "response")).sum()),
        "purchased_by_lookup": int((purchased & (confirmed == "lookup")).sum()),
        "db_orders": len(db_orders),
        "db_orders_holding": int(db_orders["status"].isin(HOLDING).sum()),
        "db_orders_linked": int(_attempt_ids(db_orders).notna().sum()),
        "db_orders_of_other_runs": int(foreign.sum()),
        # the run's orders' positions (db_positions may be the whole event's: that count would change with later runs)
        "db_positions": int(db_positions["order_code"].isin(set(db_orders["code"])).sum()),
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
        totals=totals, incomplete=incomplete, notes=notes or [],
        altered=_rule(altered, "attempts told 'purchased' whose order differs from what they were told", cap=cap),
        window=window,
    )


def audit_state(attempts: pd.DataFrame, all_orders: pd.DataFrame, db_positions: pd.DataFrame, quotas: pd.DataFrame,
                availability: pd.DataFrame | None = None, window: AuditWindow | None = None, *,
                incomplete: str | None = None, notes: list[str] | None = None, cap: int = ROW_CAP) -> AuditResult:
    """The audit of one run from its event's whole state (every order, position and quota), as read at any time.

    The run's orders are `run_orders` in `window`; quota usage for the oversold rule counts the event's orders
    created up to the window's end plus the run's own, so orders made after the run (a later run's) change neither
    what is the run's nor whether it oversold: auditing a run again gives the same answer unless its own orders
    changed. pretix's availability answer is compared with every order as it is now."""
    start, end = (window.start, window.end) if window is not None else (None, None)
    orders = run_orders(all_orders, attempts, start, end)
    holders = all_orders
    if end is not None:
        _require(all_orders, "all_orders", ["created"])
        later = pd.to_numeric(all_orders["created"], errors="coerce") > end
        holders = all_orders[~later | all_orders["code"].isin(set(orders["code"]))]
    return audit(attempts, orders, db_positions, quotas, availability, cap=cap, quota_orders=holders,
                 incomplete=incomplete, notes=notes, window=window, live_orders=all_orders)


def missing_attempts(meta: dict | None, attempts: pd.DataFrame) -> str | None:
    """Why a run must be refused rather than audited: run.json says attempts were launched yet the attempts file
    is missing or empty, so there is no client history to hold the database to (an audit would pass vacuously).
    None when the run can be audited (attempts present, or run.json does not say any were launched)."""
    summary = (meta or {}).get("summary") or {}
    try:
        launched = int(summary.get("launched") or 0)
    except (TypeError, ValueError):
        launched = 0
    if launched > 0 and attempts.empty:
        return f"attempts missing: run.json says {launched} launched, the attempts file holds none"
    return None


def write_audit(result: AuditResult, run_dir: Path, overwrite: bool = False) -> Path:
    """Write audit.json into the run folder; an existing one is kept unless overwrite (runs are written once)."""
    path = RunFolder(run_dir).audit_path
    with path.open("w" if overwrite else "x") as handle:
        handle.write(result.to_json())
    return path


def read_audit(run_dir: Path) -> AuditResult:
    return AuditResult.model_validate_json(RunFolder(run_dir).audit_path.read_text())


__all__ = [
    "AuditResult", "AuditWindow", "RuleResult", "WINDOW_BEFORE", "audit", "audit_state", "find_altered",
    "find_duplicates", "find_false_availability", "find_ghosts", "find_lost", "find_oversold", "foreign_orders",
    "link_orders", "missing_attempts", "quota_usage", "read_audit", "run_orders", "write_audit",
]
