"""The on-sale sells out: per run, a product offered to more buyers than its quota holds, and what became of it.

Pure pandas over a run folder (attempts, params.yaml, audit.json) and its study's seed.json / study.yaml.

- The product's buyers in a run: its attempts whose `item` is the product's item id; every attempt when the run buys
  only that product (runs recorded before attempts carried `item` included).
- A sell-out run: it sent a product more buyers than the product's quota holds, or pretix refused one of them as
  sold out.
- sold: the positions holding the quota, from the audit when audit.json carries them per quota (a `quotas` list of
  {quota_id, name, size, used}, or the quota's row in its oversold or false-availability rule); else the purchases
  the run's buyers were told about (`sold_from` says which).
- oversold: positions beyond the quota: the audit's, for this quota when its id is known (seed.json) and for the
  whole event otherwise, or the client's purchases beyond the quota, whichever is larger.
- false availability, both ways: `available_while_full` (the audit: pretix called the quota available while its
  positions filled it; the whole event's count when the quota id is unknown) and `refused_while_free` (the client's
  history: a buyer told 'sold out' before as many of the run's buyers as the quota holds had even started, so the
  quota could not be full; conservative, since any started buyer who was not refused may hold a place: a failed
  attempt can still have made an order, a shop buyer holds a cart). Places sold before the run began (a stack kept
  from an earlier study) would make refusals right that this rule calls false: the note says so when every buyer
  was refused.
- quota_reached_s: seconds from the run's first scheduled attempt to the end of the purchase that filled the quota
  (the quota-th of its buyers' purchases to end); NaN when their purchases never filled it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lab.analysis.study import StudyRun
from lab.evidence.runfolder import RunFolder

SEED_FILE = "seed.json"
STUDY_PARAMS = "study.yaml"
HOLDERS = ("purchased", "failed", "cancelled")  # outcomes of buyers who reached pretix and may hold a place
CATALOGUE_COLUMNS = ["product", "item", "quota_id", "size"]
COLUMNS = ["run_id", "kind", "journey", "product", "quota", "buyers", "sold", "sold_from", "refused_sold_out",
           "oversold", "available_while_full", "refused_while_free", "false_availability", "quota_reached_s",
           "note"]


def read_catalogue(folder: Path) -> pd.DataFrame:
    """product, item, quota_id, size of every product the study seeded: seed.json (what pretix holds, written by
    01-seed) first, study.yaml's seed.catalogue for the rest (sizes only). Looked for in `folder` and the two folders
    above it (a run folder lives in <study>/runs/)."""
    folder = Path(folder)
    rows: dict[str, dict[str, Any]] = {}
    for place in (folder, folder.parent, folder.parent.parent):
        seed = place / SEED_FILE
        if seed.is_file():
            for name, ids in (json.loads(seed.read_text()).get("products") or {}).items():
                rows.setdefault(name, {"product": name, "item": ids.get("item"), "quota_id": ids.get("quota"),
                                       "size": ids.get("size")})
        study = place / STUDY_PARAMS
        if study.is_file():
            doc = yaml.safe_load(study.read_text()) or {}
            for product in ((doc.get("seed") or {}).get("catalogue") or {}).get("products") or []:
                rows.setdefault(product["name"], {"product": product["name"], "item": None, "quota_id": None,
                                                  "size": product.get("quota")})
        if rows:
            break
    return pd.DataFrame(list(rows.values()), columns=CATALOGUE_COLUMNS)


def product_mix(study_run: StudyRun) -> dict[str, float]:
    """The products the run bought, with a positive share (its params.yaml)."""
    mix = (study_run.params.get("load") or {}).get("product_mix") or {}
    return {str(name): float(share) for name, share in mix.items() if share and float(share) > 0}


def buyers_of(study_run: StudyRun, product: str, item: int | None = None) -> pd.DataFrame | None:
    """The run's attempts that wanted `product`; None when the run bought several products and its attempts do not
    say which (no `item` recorded, or the item id unknown)."""
    attempts = study_run.run.attempts
    if set(product_mix(study_run)) == {product}:
        return attempts
    if item is not None and "item" in attempts.columns and attempts["item"].notna().any():
        return attempts[attempts["item"] == item]
    return None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _read_audit(path: Path) -> dict | None:
    path = RunFolder(path).audit_path
    return json.loads(path.read_text()) if path.is_file() else None


def _audit_figures(doc: dict | None, product: str, quota: int, quota_id: int | None) -> dict[str, Any]:
    """(used, oversold, available_while_full) as far as audit.json tells them; NaN for what it could not check."""
    nan = math.nan
    if doc is None or not doc.get("totals"):  # not audited, or the database could not be read
        return {"used": None, "oversold": nan, "available_while_full": nan}
    mine = (lambda row: row.get("quota_id") == quota_id) if quota_id is not None else (
        lambda row: row.get("name") == product)
    used = next((_number(q.get("used")) for q in doc.get("quotas") or [] if mine(q) or q.get("name") == product),
                None)
    over_rows = (doc.get("oversold") or {}).get("rows") or []
    wrong_rows = (doc.get("false_availability") or {}).get("rows") or []
    if used is None:
        used = next((_number(r.get("used")) for r in over_rows + wrong_rows if mine(r)), None)
    if used is not None:
        oversold = max(0.0, used - quota)
    elif quota_id is not None:  # the rule's rows name the quota, and every oversold quota has a row
        oversold = float(sum(_number(r.get("over_by")) or 0.0 for r in over_rows if mine(r)))
    else:
        oversold = float(doc["totals"].get("oversold_positions", 0))  # the whole event's
    checked = not doc.get("incomplete")  # with the database read, only pretix's availability answer can be missing
    if quota_id is not None:
        wrong = float(sum(1 for r in wrong_rows if mine(r)))
    else:
        wrong = float((doc.get("false_availability") or {}).get("count", 0))
    return {"used": used, "oversold": oversold,
            "available_while_full": wrong if checked or wrong else nan}


def sellout_row(study_run: StudyRun, product: str, quota: int, item: int | None = None,
                quota_id: int | None = None) -> dict[str, Any]:
    """One sell-out: what the run's buyers of `product` (a quota of `quota` tickets) got; see the module docstring."""
    buyers = buyers_of(study_run, product, item)
    audit = _read_audit(study_run.run.path)
    figures = _audit_figures(audit, product, quota, quota_id)
    notes = []
    row: dict[str, Any] = {"run_id": study_run.run_id, "kind": study_run.kind, "journey": study_run.journey,
                           "product": product, "quota": int(quota)}
    if buyers is None:
        notes.append("its attempts do not say which product each buyer wanted")
        purchased = refused_n = buyers_n = refused_free = math.nan
        reached = math.nan
    else:
        outcome = buyers["outcome"]
        purchased, refused_n, buyers_n = int((outcome == "purchased").sum()), int((outcome == "sold_out").sum()), \
            len(buyers)
        starts = buyers.loc[outcome.isin(HOLDERS), "start"].dropna().sort_values().to_numpy()
        full_from = float(starts[quota - 1]) if len(starts) >= quota else math.inf  # not full before this
        refused_free = int((buyers.loc[outcome == "sold_out", "end"] < full_from).sum())
        ends = buyers.loc[outcome == "purchased", "end"].dropna().sort_values().to_numpy()
        reached = float(ends[quota - 1]) - study_run.run.t0 if len(ends) >= quota else math.nan
        if purchased == 0 and refused_n:
            notes.append("every buyer was refused: was the quota full before the run began (a stack kept from an "
                         "earlier study)?")
    used = figures["used"]
    client_over = max(0.0, purchased - quota) if not math.isnan(purchased) else math.nan
    oversold = max((x for x in (figures["oversold"], client_over) if not math.isnan(x)), default=math.nan)
    wrong = figures["available_while_full"]
    row.update({
        "buyers": buyers_n, "sold": used if used is not None else purchased,
        "sold_from": "database" if used is not None else "client",
        "refused_sold_out": refused_n, "oversold": oversold, "available_while_full": wrong,
        "refused_while_free": refused_free,
        "false_availability": sum(known) if (known := [x for x in (wrong, refused_free) if not math.isnan(x)])
        else math.nan,  # what could be checked of either way
        "quota_reached_s": reached,
    })
    if audit is None:
        notes.append("not audited")
    elif audit.get("incomplete"):
        notes.append(f"audit incomplete: {audit['incomplete']}")
    ghosts = int((audit or {}).get("ghost", {}).get("count", 0) or 0)
    if used is None and ghosts and not math.isnan(purchased) and purchased < quota:
        notes.append(f"{ghosts} order(s) its buyers were not told about (ghosts) may hold the rest")
    row["note"] = "; ".join(notes)
    return row


def sellout_products(study_run: StudyRun, catalogue: pd.DataFrame) -> list[dict[str, Any]]:
    """The products this run sold out (see the module docstring), each with its catalogue row."""
    mix = product_mix(study_run)
    known = catalogue.dropna(subset=["size"]).set_index("product") if len(catalogue) else catalogue
    found = []
    for product, share in mix.items():
        if product not in known.index:
            continue
        entry = known.loc[product]
        item = None if pd.isna(entry["item"]) else int(entry["item"])
        buyers = buyers_of(study_run, product, item)
        if buyers is not None:
            crowd, refused = float(len(buyers)), int((buyers["outcome"] == "sold_out").sum())
        else:  # what its share of the run's attempts would be
            crowd, refused = len(study_run.run.attempts) * share / sum(mix.values()), 0
        if crowd > float(entry["size"]) or refused:
            found.append({"product": product, "quota": int(entry["size"]), "item": item,
                          "quota_id": None if pd.isna(entry["quota_id"]) else int(entry["quota_id"])})
    return found


def sellout_table(runs: list[StudyRun], catalogue: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, product) that sold out, in the study's order (see sellout_row)."""
    rows = [sellout_row(r, **found) for r in runs for found in sellout_products(r, catalogue)]
    return pd.DataFrame(rows, columns=COLUMNS)


def headline_key(row: pd.Series | dict) -> str:
    """The on-sale of a journey is that journey's sell-out; another run's is named by its kind and journey."""
    return str(row["journey"]) if row["kind"] == "spike" else f"{row['kind']}-{row['journey']}"


def sellout_headline(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """headline.json's `sellout`: per on-sale journey (and e.g. `faults-api`), quota, sold, refused, oversold, false
    availability and the second the quota was reached (null: not measured, or never reached)."""

    def number(value: Any, digits: int | None = None) -> int | float | None:
        value = _number(value)
        if value is None:
            return None
        return round(value, digits) if digits is not None else int(value)

    out: dict[str, dict[str, Any]] = {}
    for row in table.to_dict("records"):
        key = headline_key(row)
        if key in out:
            key = f"{key}-{row['run_id']}"
        out[key] = {"run": row["run_id"], "product": row["product"], "quota": number(row["quota"]),
                    "sold": number(row["sold"]), "refused_sold_out": number(row["refused_sold_out"]),
                    "oversold": number(row["oversold"]), "false_availability": number(row["false_availability"]),
                    "quota_reached_s": number(row["quota_reached_s"], 3)}
    return out


def describe(row: pd.Series | dict) -> str:
    """One sentence for the report."""

    def count(value: Any) -> str:
        return "-" if _number(value) is None else f"{_number(value):.0f}"

    reached = _number(row["quota_reached_s"])
    when = (f"the quota was reached {reached:.1f} s after the first buyer was due" if reached is not None else
            "the run's purchases never filled the quota")
    text = (f"**{row['run_id']}** ({row['journey']}): {count(row['sold'])} of {row['quota']} '{row['product']}' "
            f"tickets sold ({row['sold_from']}) to {count(row['buyers'])} buyers, {count(row['refused_sold_out'])} "
            f"refused as sold out; {when}; oversold {count(row['oversold'])}, false availability "
            f"{count(row['false_availability'])} (available while full {count(row['available_while_full'])}, "
            f"refused while free {count(row['refused_while_free'])}).")
    return text + (f" Note: {row['note']}." if row.get("note") else "")


__all__ = ["COLUMNS", "buyers_of", "describe", "headline_key", "product_mix", "read_catalogue", "sellout_headline",
           "sellout_products", "sellout_row", "sellout_table"]
