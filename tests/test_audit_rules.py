"""Each audit rule can fail: break one thing on purpose and exactly that rule fires; a consistent run is clean."""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest

from lab.evidence.audit_rules import (
    audit,
    find_duplicates,
    find_ghosts,
    find_lost,
    find_oversold,
    foreign_orders,
    link_orders,
    quota_usage,
    read_audit,
    write_audit,
)
from lab.load.recorder import AttemptRecord, Recorder, read_attempts


def _attempts() -> pd.DataFrame:
    return pd.DataFrame([
        {"attempt_id": "a1", "outcome": "purchased", "order_code": "O1", "error_kind": None},
        {"attempt_id": "a2", "outcome": "purchased", "order_code": "O2", "error_kind": None},
        {"attempt_id": "a3", "outcome": "sold_out", "order_code": None, "error_kind": "http_400"},
        {"attempt_id": "a4", "outcome": "failed", "order_code": None, "error_kind": "timeout"},
        {"attempt_id": "a5", "outcome": "dropped", "order_code": None, "error_kind": None},
        {"attempt_id": "a6", "outcome": "purchased", "order_code": "O3", "error_kind": None},
    ])


def _orders() -> pd.DataFrame:
    return pd.DataFrame([
        {"code": "O1", "status": "p", "attempt_id": "a1"},
        {"code": "O2", "status": "n", "attempt_id": "a2"},
        {"code": "O3", "status": "p", "attempt_id": "a6"},
    ])


def _positions() -> pd.DataFrame:
    return pd.DataFrame([
        {"order_code": "O1", "item_id": 1},
        {"order_code": "O2", "item_id": 1},
        {"order_code": "O3", "item_id": 2},
        {"order_code": "O3", "item_id": 2},
    ])


def _quotas() -> pd.DataFrame:
    return pd.DataFrame([
        {"quota_id": 10, "size": 2, "items": [1]},
        {"quota_id": 11, "size": 4, "items": [1, 2]},
        {"quota_id": 12, "size": None, "items": [2]},
    ])


def _availability() -> pd.DataFrame:
    return pd.DataFrame([{"quota_id": 10, "available": False}, {"quota_id": 11, "available": False}])


def _audit(**changes):
    frames = {"attempts": _attempts(), "db_orders": _orders(), "db_positions": _positions(), "quotas": _quotas(),
              "availability": _availability()}
    frames.update(changes)
    return audit(**frames)


def test_a_consistent_history_is_clean():
    result = _audit()
    assert result.clean
    assert result.counts == {"lost": 0, "altered": 0, "ghost": 0, "duplicate": 0, "oversold": 0,
                             "false_availability": 0}
    assert result.totals["purchased"] == 3 and result.totals["db_orders_holding"] == 3


def test_a_deleted_order_is_reported_lost():
    result = _audit(db_orders=_orders()[lambda o: o["code"] != "O2"])
    assert not result.clean and result.lost.count == 1
    assert result.lost.rows[0]["attempt_id"] == "a2" and result.lost.rows[0]["order_code"] == "O2"


def test_purchased_without_a_code_is_lost_only_when_no_order_is_linked():
    attempts = _attempts()
    attempts.loc[attempts["attempt_id"] == "a6", "order_code"] = None
    assert find_lost(attempts, _orders()).empty  # O3 is linked to a6
    assert list(find_lost(attempts, _orders()[lambda o: o["code"] != "O3"])["attempt_id"]) == ["a6"]


def test_an_added_duplicate_is_reported():
    orders = pd.concat([_orders(), pd.DataFrame([{"code": "O9", "status": "n", "attempt_id": "a1"}])])
    positions = pd.concat([_positions(), pd.DataFrame([{"order_code": "O9", "item_id": 2}])])
    result = _audit(db_orders=orders, db_positions=positions)
    assert not result.clean and result.duplicate.count == 1 and result.totals["duplicate_extra_orders"] == 1
    assert sorted(r["code"] for r in result.duplicate.rows) == ["O1", "O9"]
    assert result.ghost.count == 0  # a1 did see success; the extra order is a duplicate, not a ghost
    assert find_duplicates(orders)["orders_for_attempt"].tolist() == [2, 2]


def test_a_shrunk_quota_is_reported_oversold_and_a_false_available_too():
    quotas = _quotas()
    quotas.loc[quotas["quota_id"] == 10, "size"] = 1
    availability = pd.DataFrame([{"quota_id": 10, "available": True, "available_number": 1}])
    result = _audit(quotas=quotas, availability=availability)
    assert not result.clean
    assert result.oversold.count == 1 and result.oversold.rows[0] == {"quota_id": 10, "size": 1.0, "used": 2,
                                                                        "over_by": 1.0}
    assert result.false_availability.count == 1 and result.false_availability.rows[0]["available_number"] == 1
    assert result.totals["oversold_positions"] == 1


def test_a_timeout_then_created_order_is_a_ghost_but_not_unclean():
    orders = pd.concat([_orders(), pd.DataFrame([{"code": "O7", "status": "n", "attempt_id": "a4"},
                                                 {"code": "O8", "status": "e", "attempt_id": None}])])
    result = _audit(db_orders=orders)
    assert result.clean and result.ghost.count == 2
    ghosts = {r["code"]: r for r in result.ghost.rows}
    assert ghosts["O7"]["client_outcome"] == "failed" and ghosts["O7"]["client_error_kind"] == "timeout"
    assert ghosts["O8"]["client_outcome"] == "unlinked"


def test_only_pending_and_paid_orders_and_live_positions_hold_quota():
    orders = pd.concat([_orders(), pd.DataFrame([{"code": "O5", "status": "c", "attempt_id": None},
                                                 {"code": "O6", "status": "e", "attempt_id": None}])])
    positions = pd.concat([_positions(), pd.DataFrame([{"order_code": c, "item_id": 1} for c in ("O5", "O6")])])
    assert find_oversold(orders, positions, _quotas()).empty
    positions["canceled"] = False
    positions.loc[positions["order_code"] == "O1", "canceled"] = True
    usage = quota_usage(orders, positions, _quotas()).set_index("quota_id")["used"].to_dict()
    assert usage == {10: 1, 11: 3, 12: 2}


def test_unlimited_quota_is_never_oversold():
    positions = pd.DataFrame([{"order_code": "O3", "item_id": 2}] * 50)
    assert 12 not in set(find_oversold(_orders(), positions, _quotas())["quota_id"])


def test_orders_are_linked_from_comment_or_email():
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    orders = pd.DataFrame([
        {"code": "X1", "status": "p", "comment": f"pretix-lab attempt {a}", "email": "x@example.org"},
        {"code": "X2", "status": "p", "comment": None, "email": f"buyer+{b.upper()}@example.org"},
        {"code": "X3", "status": "p", "comment": f"someone else {uuid.uuid4()}", "email": None},
    ])
    linked = link_orders(orders, [a, b])
    assert linked["attempt_id"].tolist()[:2] == [a, b] and pd.isna(linked["attempt_id"].iloc[2])
    attempts = pd.DataFrame([{"attempt_id": a, "outcome": "purchased", "order_code": None},
                             {"attempt_id": b, "outcome": "failed", "order_code": None}])
    assert find_lost(attempts, linked).empty
    assert set(find_ghosts(attempts, linked)["code"]) == {"X2", "X3"}


def test_rows_are_capped_but_counted():
    attempts = pd.DataFrame([{"attempt_id": f"a{i}", "outcome": "purchased", "order_code": f"Z{i}"}
                             for i in range(150)])
    result = _audit(attempts=attempts)
    assert result.lost.count == 150 and len(result.lost.rows) == 100 and result.lost.truncated


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="db_positions is missing column.*item_id"):
        _audit(db_positions=pd.DataFrame({"order_code": ["O1"]}))


def test_audit_json_round_trip(tmp_path):
    result = _audit(db_orders=_orders()[lambda o: o["code"] != "O2"])
    path = write_audit(result, tmp_path)
    doc = json.loads(path.read_text())
    assert doc["clean"] is False and doc["lost"]["count"] == 1
    assert read_audit(tmp_path) == result
    with pytest.raises(FileExistsError):
        write_audit(result, tmp_path)
    write_audit(_audit(), tmp_path, overwrite=True)
    assert read_audit(tmp_path).clean


def test_audits_the_recorders_own_attempts_file(tmp_path):
    with Recorder.attempts(tmp_path, "run") as recorder:
        for row in _attempts().to_dict("records"):
            recorder.record(AttemptRecord(attempt_id=row["attempt_id"], buyer="b", journey="api", scheduled=1.0,
                                          start=1.0, end=2.0, outcome=row["outcome"], order_code=row["order_code"],
                                          error_kind=row["error_kind"]))
    attempts = read_attempts(tmp_path)
    assert _audit(attempts=attempts).clean
    assert _audit(attempts=attempts, db_orders=_orders().iloc[1:]).lost.rows[0]["attempt_id"] == "a1"


def test_shop_orders_link_by_their_12_digit_tag():
    from lab.evidence.audit_rules import link_orders

    attempt = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    orders = pd.DataFrame({"code": ["A1", "B2", "C3"], "status": ["n", "n", "n"],
                           "comment": [None, None, None],
                           "email": ["x@pretix-lab.invalid", "ana+0a1b2c3d4e5f@pretix-lab.invalid", None],
                           "internal_reference": ["lab-0a1b2c3d4e5f", None, "lab-ffffffffffff"]})
    linked = link_orders(orders, [attempt])
    assert list(linked["attempt_id"].fillna("-")) == [attempt, attempt, "-"]


def test_orders_tagged_by_another_run_are_not_this_runs_ghosts():
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    orders = pd.DataFrame([
        {"code": "M1", "status": "p", "comment": f"lab-attempt {mine}", "email": None, "internal_reference": None},
        {"code": "F1", "status": "p", "comment": f"lab-attempt {other}", "email": None, "internal_reference": None},
        {"code": "F2", "status": "n", "comment": None, "email": None,
         "internal_reference": "lab-" + other.replace("-", "")[:12]},
        {"code": "U1", "status": "p", "comment": None, "email": "walk-in@example.org", "internal_reference": None},
    ])
    attempts = pd.DataFrame([{"attempt_id": mine, "outcome": "failed", "order_code": None}])
    linked = link_orders(orders, [mine])
    assert foreign_orders(linked).tolist() == [False, True, True, False]
    assert set(find_ghosts(attempts, linked)["code"]) == {"M1", "U1"}
    result = audit(attempts, linked, pd.DataFrame(columns=["order_code", "item_id"]),
                   _quotas())
    assert result.totals["db_orders_of_other_runs"] == 2 and result.ghost.count == 2
