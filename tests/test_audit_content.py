"""The audit checks content, not only existence: each acknowledged purchase's order must hold the status, item,
count and customer the client was told. Synthetic frames: break one thing on purpose and exactly that rule fires;
the run's window decides which untagged orders are its own; re-auditing gives the same answer; a run whose
attempts are missing is refused. No stack: every test here is a unit test."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lab.evidence.audit import LATE_TAIL, audit_run, database_state, run_window
from lab.evidence.audit_rules import (
    WINDOW_BEFORE,
    AuditResult,
    AuditWindow,
    audit,
    audit_state,
    find_altered,
    missing_attempts,
    read_audit,
    run_orders,
    write_audit,
)
from lab.load.recorder import ATTEMPT_SCHEMA, AttemptRecord, Recorder, read_attempts

T0 = 1_800_000_000.0  # the run's first scheduled attempt (epoch seconds)
RUN_END = T0 + 10.0
DRAIN_END = T0 + 40.0
WINDOW = AuditWindow(start=T0 - WINDOW_BEFORE, end=DRAIN_END, end_from="drain")
ITEM, OTHER_ITEM = 1, 2
IDS = [str(uuid.UUID(hex=c * 32)) for c in "abcd"]  # linked by the `lab-attempt <id>` comment or a shop tag


def _attempts() -> pd.DataFrame:
    """Three api purchases (two told by the response, one by a lookup) and a shop guest's; one failed attempt."""
    rows = [
        {"attempt_id": IDS[0], "journey": "api", "buyer": "C1", "guest": False, "outcome": "purchased",
         "order_code": "O1", "confirmed_by": "response"},
        {"attempt_id": IDS[1], "journey": "api", "buyer": "C2", "guest": False, "outcome": "purchased",
         "order_code": "O2", "confirmed_by": "lookup"},
        {"attempt_id": IDS[2], "journey": "shop", "buyer": "C3", "guest": True, "outcome": "purchased",
         "order_code": "O3", "confirmed_by": "response"},
        {"attempt_id": IDS[3], "journey": "api", "buyer": "C4", "guest": False, "outcome": "failed",
         "order_code": None, "confirmed_by": None},
    ]
    frame = pd.DataFrame(rows)
    frame["guest"] = frame["guest"].astype(object)  # as read back from parquet: a nullable bool
    frame["item"], frame["count"] = float(ITEM), 1.0  # as read back from parquet: nullable ints become floats
    frame["scheduled"] = [T0 + i for i in range(len(frame))]
    frame["end"] = frame["scheduled"] + 0.5
    frame["error_kind"] = [None, None, None, "timeout"]
    return frame


def _orders() -> pd.DataFrame:
    return pd.DataFrame([
        {"code": "O1", "status": "n", "comment": f"lab-attempt {IDS[0]}", "email": "c1@x.invalid",
         "customer": "C1", "created": T0 + 0.2},
        {"code": "O2", "status": "p", "comment": f"lab-attempt {IDS[1]}", "email": "c2@x.invalid",
         "customer": "C2", "created": T0 + 1.2},
        {"code": "O3", "status": "n", "comment": None, "email": f"c3+{IDS[2].replace('-', '')[:12]}@x.invalid",
         "customer": None, "created": T0 + 2.2},
        # made before the run (a previous run's, tagged or not): not this run's
        {"code": "OLD1", "status": "p", "comment": None, "email": "old@x.invalid", "customer": None,
         "created": T0 - 3600.0},
    ])


def _positions() -> pd.DataFrame:
    return pd.DataFrame([
        {"order_code": "O1", "item_id": ITEM, "canceled": False},
        {"order_code": "O2", "item_id": ITEM, "canceled": False},
        {"order_code": "O3", "item_id": ITEM, "canceled": False},
        {"order_code": "OLD1", "item_id": OTHER_ITEM, "canceled": False},
    ])


def _quotas() -> pd.DataFrame:
    return pd.DataFrame([{"quota_id": 10, "size": 100, "items": [ITEM]},
                         {"quota_id": 11, "size": 2, "items": [OTHER_ITEM]}])


def _availability() -> pd.DataFrame:
    return pd.DataFrame([{"quota_id": 10, "available": True}, {"quota_id": 11, "available": False}])


def _audit(attempts=None, orders=None, positions=None, window=WINDOW) -> AuditResult:
    return audit_state(_attempts() if attempts is None else attempts, _orders() if orders is None else orders,
                       _positions() if positions is None else positions, _quotas(), _availability(), window)


def _with(frame: pd.DataFrame, where: tuple[str, str], **values) -> pd.DataFrame:
    frame = frame.copy()
    column, value = where
    for name, new in values.items():
        frame.loc[frame[column] == value, name] = new
    return frame


def _fired(result: AuditResult) -> dict[str, int]:
    return {name: count for name, count in result.counts.items() if count}


# ---------------------------------------------------------------------------------------------- content rules
def test_a_faithful_history_is_clean_and_checks_every_purchase():
    result = _audit()
    assert result.clean and _fired(result) == {}, result.describe()
    assert result.totals["purchased"] == 3 and result.totals["db_orders"] == 3  # OLD1 is not the run's
    assert result.window == WINDOW


@pytest.mark.parametrize("status", ["c", "e"])
def test_a_cancelled_or_expired_order_is_altered(status):
    result = _audit(orders=_with(_orders(), ("code", "O2"), status=status))
    assert _fired(result) == {"altered": 1} and not result.clean
    (row,) = result.altered.rows
    assert (row["order_code"], row["attempt_id"], row["reason"]) == ("O2", IDS[1], f"status {status}")


def test_a_paid_order_is_what_a_purchase_leaves():
    assert _audit(orders=_with(_orders(), ("code", "O1"), status="p")).clean


def test_another_item_is_altered():
    result = _audit(positions=_with(_positions(), ("order_code", "O1"), item_id=OTHER_ITEM))
    assert _fired(result) == {"altered": 1}
    (row,) = result.altered.rows
    assert row["order_code"] == "O1" and row["reason"] == f"item {OTHER_ITEM} not {ITEM}"
    assert row["items"] == [OTHER_ITEM] and row["expected_item"] == ITEM


def test_another_customer_is_altered():
    result = _audit(orders=_with(_orders(), ("code", "O2"), customer="C9"))
    assert _fired(result) == {"altered": 1}
    (row,) = result.altered.rows
    assert row["order_code"] == "O2" and row["reason"] == "customer C9 not C2"


def test_an_api_order_without_its_customer_is_altered():
    (row,) = _audit(orders=_with(_orders(), ("code", "O1"), customer=None)).altered.rows
    assert row["reason"] == "customer none not C1"


def test_a_second_position_is_altered():
    positions = pd.concat([_positions(), pd.DataFrame([{"order_code": "O3", "item_id": ITEM, "canceled": False}])],
                          ignore_index=True)
    result = _audit(positions=positions)
    assert _fired(result) == {"altered": 1}
    (row,) = result.altered.rows
    assert row["order_code"] == "O3" and row["reason"] == "positions 2 not 1"


def test_a_canceled_position_is_not_held():
    (row,) = _audit(positions=_with(_positions(), ("order_code", "O1"), canceled=True)).altered.rows
    assert row["order_code"] == "O1" and row["reason"] == "positions 0 not 1"


def test_every_difference_of_one_order_is_one_row():
    orders = _with(_orders(), ("code", "O1"), status="c", customer="C7")
    result = _audit(orders=orders, positions=_with(_positions(), ("order_code", "O1"), item_id=OTHER_ITEM))
    assert result.altered.count == 1
    assert result.altered.rows[0]["reason"] == f"status c; item {OTHER_ITEM} not {ITEM}; customer C7 not C1"


def test_a_shop_guest_order_carries_no_customer():
    """A guest (the shop buyer who did not log in) is told nothing about an account: the order must have none,
    although the attempt names the buyer it played."""
    result = _audit(orders=_with(_orders(), ("code", "O3"), customer="C3"))
    (row,) = result.altered.rows
    assert row["order_code"] == "O3" and row["reason"] == "customer C3 not none (guest)"


def test_a_logged_in_shop_order_carries_the_buyers_account():
    attempts = _with(_attempts(), ("attempt_id", IDS[2]), guest=False)
    assert _audit(attempts=attempts, orders=_with(_orders(), ("code", "O3"), customer="C3")).clean
    (row,) = _audit(attempts=attempts).altered.rows
    assert row["order_code"] == "O3" and row["reason"] == "customer none not C3"


def test_a_run_recorded_before_the_content_columns_checks_what_it_can():
    """Older attempts files have no item, count or guest: status is checked, the api's customer too (the api
    journey always named the buyer's account), a shop order's customer is not."""
    old = _attempts().drop(columns=["item", "count", "guest", "confirmed_by"])
    assert _audit(attempts=old, positions=_with(_positions(), ("order_code", "O1"), item_id=OTHER_ITEM)).clean
    assert _audit(attempts=old, orders=_with(_orders(), ("code", "O3"), customer="C3")).clean
    assert _audit(attempts=old, orders=_with(_orders(), ("code", "O2"), status="c")).altered.count == 1
    assert _audit(attempts=old, orders=_with(_orders(), ("code", "O2"), customer="C9")).altered.count == 1
    unknown = _with(_attempts(), ("attempt_id", IDS[2]), guest=None)  # null guest, shop: customer not checked
    assert _audit(attempts=unknown, orders=_with(_orders(), ("code", "O3"), customer="C3")).clean


def test_an_order_that_is_gone_is_lost_not_altered():
    orders = _orders()[lambda o: o["code"] != "O2"]
    result = _audit(orders=orders, positions=_positions()[lambda p: p["order_code"] != "O2"])
    assert _fired(result) == {"lost": 1}
    assert result.lost.rows[0]["order_code"] == "O2"
    assert find_altered(_attempts(), run_orders(orders, _attempts()), _positions()).empty


def test_a_second_order_for_one_attempt_is_a_duplicate_not_altered_nor_a_ghost():
    twin = {"code": "O1B", "status": "n", "comment": f"lab-attempt {IDS[0]}", "email": "c1@x.invalid",
            "customer": "C1", "created": T0 + 5.0}
    orders = pd.concat([_orders(), pd.DataFrame([twin])], ignore_index=True)
    positions = pd.concat([_positions(), pd.DataFrame([{"order_code": "O1B", "item_id": OTHER_ITEM,
                                                        "canceled": False}])], ignore_index=True)
    result = _audit(orders=orders, positions=positions)
    assert _fired(result) == {"duplicate": 1}
    assert {r["code"] for r in result.duplicate.rows} == {"O1", "O1B"}


# ------------------------------------------------------------------------------------------------- the window
def _untagged(code: str, created: float) -> dict:
    return {"code": code, "status": "n", "comment": None, "email": "someone@x.invalid", "customer": None,
            "created": created}


def test_the_window_counts_untagged_orders_inside_it_as_ghosts_and_ignores_later_ones():
    inside, later = _untagged("GIN", T0 + 20.0), _untagged("GLATE", DRAIN_END + 3600.0)
    orders = pd.concat([_orders(), pd.DataFrame([inside, later])], ignore_index=True)
    result = _audit(orders=orders)
    assert _fired(result) == {"ghost": 1} and result.clean  # ghosts are shown, they do not fail the run
    assert result.ghost.rows[0]["code"] == "GIN" and result.ghost.rows[0]["client_outcome"] == "unlinked"
    assert set(run_orders(orders, _attempts(), WINDOW.start, WINDOW.end)["code"]) == {"O1", "O2", "O3", "GIN"}


def test_a_tagged_order_is_the_runs_whenever_it_was_made():
    """A late order naming one of the run's attempts (after the drain) is still this run's: here the failed
    attempt's order appeared an hour later: a ghost with what the client saw."""
    late = {"code": "OLATE", "status": "n", "comment": f"lab-attempt {IDS[3]}", "email": "c4@x.invalid",
            "customer": "C4", "created": DRAIN_END + 3600.0}
    result = _audit(orders=pd.concat([_orders(), pd.DataFrame([late])], ignore_index=True))
    assert _fired(result) == {"ghost": 1}
    assert (result.ghost.rows[0]["code"], result.ghost.rows[0]["client_outcome"]) == ("OLATE", "failed")


def test_an_acknowledged_order_made_after_the_window_is_not_lost():
    orders = _with(_orders(), ("code", "O2"), created=DRAIN_END + 600.0)  # the client recorded its code
    assert _audit(orders=orders).clean


def test_another_runs_tagged_order_inside_the_window_is_not_a_ghost():
    foreign = {"code": "OFOR", "status": "n", "comment": f"lab-attempt {uuid.uuid4()}", "email": "z@x.invalid",
               "customer": "C1", "created": T0 + 3.0}
    assert _fired(_audit(orders=pd.concat([_orders(), pd.DataFrame([foreign])], ignore_index=True))) == {}


def test_re_auditing_with_a_later_unrelated_order_gives_the_same_answer():
    """The same run audited again after somebody else bought (untagged, and a later run's tagged order), even
    filling a quota: the run's own orders did not change, so neither does its audit."""
    first = _audit()
    later = pd.DataFrame([_untagged("LATER1", DRAIN_END + 60.0),
                          {**_untagged("LATER2", DRAIN_END + 61.0), "comment": f"lab-attempt {uuid.uuid4()}"}])
    later_positions = pd.DataFrame([{"order_code": c, "item_id": OTHER_ITEM, "canceled": False}
                                    for c in ("LATER1", "LATER2")])
    again = _audit(orders=pd.concat([_orders(), later], ignore_index=True),
                   positions=pd.concat([_positions(), later_positions], ignore_index=True))
    assert again == first
    assert _audit() == first  # the same inputs: the same answer


def test_re_auditing_after_the_runs_own_order_changed_gives_another_answer():
    assert _audit(orders=_with(_orders(), ("code", "O1"), status="c")) != _audit()


def test_run_window_opens_at_the_first_scheduled_attempt_and_closes_at_the_drain():
    meta = {"started": T0 - 1.0, "ended": RUN_END}
    window = run_window(_attempts(), meta, drain_end=DRAIN_END)
    assert window == AuditWindow(start=T0 - WINDOW_BEFORE, end=DRAIN_END, end_from="drain")
    assert run_window(_attempts(), meta, drain_end=DRAIN_END, until=T0 + 99).end == T0 + 99


def test_run_window_of_a_late_audit_is_the_run_end_plus_the_longest_drain_every_time():
    meta = {"started": T0 - 1.0, "ended": RUN_END}
    late = run_window(_attempts(), meta, drain_end=RUN_END + 86_400)
    assert (late.end, late.end_from) == (RUN_END + LATE_TAIL, "run end + tail")
    assert run_window(_attempts(), meta, drain_end=RUN_END + 2 * 86_400) == late


def test_run_window_reuses_the_recorded_one():
    recorded = AuditWindow(start=T0 - 5, end=DRAIN_END, end_from="drain")
    meta = {"started": T0 - 1.0, "ended": RUN_END}
    assert run_window(_attempts(), meta, drain_end=RUN_END + 86_400, previous=recorded) == recorded


def test_run_window_without_attempts_or_run_json_opens_at_since():
    empty = read_attempts(Path("/nonexistent-run"))
    window = run_window(empty, None, drain_end=DRAIN_END, since=T0 - 5)
    assert (window.start, window.end) == (T0 - 5, DRAIN_END)


# ----------------------------------------------------------------------------------------- refusal, records
def _run_folder(path: Path, launched: int | None, attempts_dir: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    summary = None if launched is None else {"launched": launched, "planned": launched}
    (path / "run.json").write_text(json.dumps({"run_id": "r", "started": T0, "ended": RUN_END,
                                               "summary": summary}))
    if attempts_dir:
        (path / "attempts.parquet").mkdir()
    return path


@pytest.mark.parametrize("attempts_dir", [False, True], ids=["no-attempts-file", "empty-attempts-file"])
def test_a_run_whose_attempts_are_missing_is_refused(tmp_path, attempts_dir):
    run = _run_folder(tmp_path / "run", launched=6, attempts_dir=attempts_dir)
    meta = json.loads((run / "run.json").read_text())
    why = missing_attempts(meta, read_attempts(run))
    assert why is not None and "6 launched" in why
    # audit_run decides before it touches docker or pretix: the refusal is written, never a pass
    result = audit_run(run, docker_client=None, access=None, organizer="o", event="e")
    assert not result.clean and result.incomplete == why
    assert read_audit(run) == result and "audit incomplete" in result.describe()


def test_a_run_that_launched_nothing_or_has_its_attempts_is_not_refused(tmp_path):
    assert missing_attempts({"summary": {"launched": 0}}, read_attempts(tmp_path)) is None
    assert missing_attempts({"summary": None, "interrupted": True}, read_attempts(tmp_path)) is None
    assert missing_attempts(None, read_attempts(tmp_path)) is None
    assert missing_attempts({"summary": {"launched": 4}}, _attempts()) is None


def test_confirmed_by_is_counted_in_the_totals_and_said():
    result = _audit()
    assert result.totals["purchased_by_response"] == 2 and result.totals["purchased_by_lookup"] == 1
    assert "1 purchase(s) confirmed only by a lookup" in result.describe()
    older = _audit(attempts=_attempts().drop(columns="confirmed_by"))
    assert older.totals["purchased_by_lookup"] == 0 and "lookup" not in older.describe()


def test_the_recorder_writes_what_the_audit_needs_and_older_files_still_read(tmp_path):
    with Recorder.attempts(tmp_path / "new", "run") as recorder:
        recorder.record(AttemptRecord(attempt_id=IDS[0], buyer="C1", journey="api", scheduled=T0, start=T0,
                                      end=T0 + 0.5, outcome="purchased", order_code="01234", item=ITEM, count=1,
                                      guest=False, confirmed_by="lookup"))
    new = read_attempts(tmp_path / "new")
    assert new.loc[0, ["item", "count", "guest", "confirmed_by", "order_code"]].tolist() == [
        ITEM, 1, False, "lookup", "01234"]
    old_schema = pa.schema([f for f in ATTEMPT_SCHEMA if f.name not in ("item", "count", "guest", "confirmed_by")])
    part = tmp_path / "old" / "attempts.parquet" / "part-000000.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"run_id": "r", "attempt_id": IDS[0], "buyer": "C1", "journey": "api",
                                          "scheduled": T0, "start": T0, "end": T0 + 0.5, "outcome": "purchased",
                                          "order_code": "O1", "retries": 0, "queued": 0, "queue_wait": 0.0}],
                                        schema=old_schema), part)
    old = read_attempts(tmp_path / "old")
    assert list(old.columns) == ATTEMPT_SCHEMA.names
    assert old[["item", "count", "guest", "confirmed_by"]].isna().all().all()
    assert _audit(attempts=old).lost.count == 0


def test_an_audit_json_from_before_the_content_rule_still_loads(tmp_path):
    from lab.analysis.study import _audit_counts

    rule = {"count": 0, "unit": "x", "rows": [], "truncated": False}
    (tmp_path / "audit.json").write_text(json.dumps({
        "lost": rule, "ghost": {**rule, "count": 2}, "duplicate": rule, "oversold": rule,
        "false_availability": rule, "totals": {"attempts": 3, "purchased": 3}, "clean": True}))
    old = read_audit(tmp_path)
    assert old.clean and old.window is None and old.altered.unit == "not checked" and old.incomplete is None
    counts = _audit_counts(tmp_path)
    assert counts["ghost"] == 2 and math.isnan(counts["altered"]) and math.isnan(counts["confirmed_by_lookup"])
    write_audit(_audit(orders=_with(_orders(), ("code", "O1"), status="c")), tmp_path, overwrite=True)
    counts = _audit_counts(tmp_path)
    assert (counts["altered"], counts["ghost"], counts["confirmed_by_lookup"]) == (1, 0, 1)
    assert math.isnan(_audit_counts(tmp_path / "nothing")["altered"])


def test_the_plain_audit_still_takes_the_runs_orders_directly():
    """`audit` (the frames already the run's) keeps working for callers that pick the orders themselves."""
    orders = run_orders(_orders(), _attempts(), WINDOW.start, WINDOW.end)
    assert audit(_attempts(), orders, _positions(), _quotas(), _availability(), quota_orders=_orders()).clean


# ------------------------------------------------------------------------------- reading the database as text
def test_codes_and_customer_ids_that_look_like_numbers_are_read_as_text(monkeypatch):
    """pretix's order codes and customer identifiers may be all digits ('01234'): read as numbers they would
    lose a leading zero and never match the client's text."""
    import lab.evidence.audit
    import lab.stack.containers

    answers = {
        "orderposition": "order_code,item_id,canceled,status\n01234,1,f,n\n",
        "quota": "quota_id,size,name,items\n10,100,Geral,1\n",
        "order": (f"code,status,comment,email,internal_reference,customer,created\n"
                  f"01234,n,lab-attempt {IDS[0]},c1@x.invalid,,00777,{T0 + 0.2}\n"),
    }

    def run(args, **_kwargs):
        sql = args[-1]
        key = next(k for k in answers if f"pretixbase_{k} " in sql)
        return SimpleNamespace(stdout=answers[key])

    monkeypatch.setattr(lab.stack.containers, "container", lambda _client, _service: SimpleNamespace(id="db"))
    monkeypatch.setattr(lab.evidence.audit.subprocess, "run", run)
    state = database_state(None, "org", "event")
    assert state["all_orders"].loc[0, "code"] == "01234" and state["all_orders"].loc[0, "customer"] == "00777"
    assert state["positions"].loc[0, "order_code"] == "01234"
    attempts = _attempts().iloc[:1].assign(order_code="01234", buyer="00777")
    result = audit_state(attempts, state["all_orders"], lab.evidence.audit._positions_holding(state), state["quotas"],
                         None, WINDOW)
    assert result.clean and _fired(result) == {}, result.describe()
