"""The content audit against the real database: one tiny api run, then the database is broken on purpose, one
thing at a time, and the run re-audited (audit_run with overwrite): exactly the rule for that thing fires.

Each case restores what it changed (or works on an order of its own), so the cases do not interfere; the one that
deletes an acknowledged order runs last. The orders are changed behind pretix's back with SQL, except deletions:
pretix's own (test-mode) order deletion removes an order with everything that refers to it (positions, payments,
fees, transactions, invoice address, ...), which plain SQL would have to list table by table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.evidence.audit import audit_run
from lab.evidence.audit_rules import AuditResult, read_audit
from lab.experiments.run import execute, validate_load
from lab.load.recorder import read_attempts
from lab.pretix.client import PretixClient
from lab.pretix.seed import Catalogue
from lab.stack.sql import pretix_sql

pytestmark = pytest.mark.stack

EVENT = "techpt26"


def _sql(ctx, query: str) -> str:
    return pretix_sql(ctx.docker, query)


def _order(ctx, code: str) -> str:
    """The SQL condition for one order of the event (an order code is unique per event only)."""
    return (f"code = '{code}' and event_id = (select e.id from pretixbase_event e join pretixbase_organizer g "
            f"on g.id = e.organizer_id where e.slug = '{EVENT}' and g.slug = '{ctx.access.organizer}')")


def _reaudit(ctx, run_dir: Path) -> AuditResult:
    return audit_run(run_dir, ctx.docker, ctx.access, ctx.access.organizer, EVENT, overwrite=True,
                     drain_timeout=60.0)


def _fired(result: AuditResult) -> dict[str, int]:
    return {name: count for name, count in result.counts.items() if count}


def _delete_order(ctx, code: str) -> None:
    """Delete an order the way pretix does (test-mode orders only): mark it test mode, then DELETE it."""
    _sql(ctx, f"update pretixbase_order set testmode = true where {_order(ctx, code)}")
    with PretixClient(ctx.access) as api:
        api.request("DELETE", api.event(EVENT, f"orders/{code}/"))


@pytest.fixture(scope="module")
def run(ctx, buyers, tmp_path_factory):
    """A tiny api run, audited clean: (run folder, its purchased order codes, the catalogue's ids, first audit)."""
    params = validate_load({"name": "audit-db", "journey": "api",
                            "workload": {"model": "constant", "rate": 2, "duration": 3}})
    run_ctx = ctx.for_run(Catalogue(), buyers=buyers)
    ids = run_ctx.catalogue_ids
    run_dir = execute(params, run_ctx, root=tmp_path_factory.mktemp("audit-db"))
    attempts = read_attempts(run_dir)
    purchased = attempts[attempts["outcome"] == "purchased"]
    assert len(purchased) >= 4, attempts[["outcome", "error_kind"]]
    # what the audit holds the database to was recorded with every purchase
    assert purchased["item"].notna().all() and (purchased["count"] == 1).all()
    assert (purchased["guest"] == False).all()  # noqa: E712 - a nullable bool column
    assert (purchased["confirmed_by"] == "response").all()  # a calm run: every order came with its answer
    first = read_audit(run_dir)
    assert first.clean and _fired(first) == {}, first.describe()
    assert first.window is not None and first.window.start is not None and first.window.end is not None
    assert first.totals["purchased_by_response"] == len(purchased) and first.totals["purchased_by_lookup"] == 0
    return run_dir, list(purchased["order_code"]), ids, first


def test_a_cancelled_order_is_altered(ctx, run):
    run_dir, codes, _ids, first = run
    code = codes[1]
    status = _sql(ctx, f"select status from pretixbase_order where {_order(ctx, code)}")
    _sql(ctx, f"update pretixbase_order set status = 'c' where {_order(ctx, code)}")
    try:
        result = _reaudit(ctx, run_dir)
    finally:
        _sql(ctx, f"update pretixbase_order set status = '{status}' where {_order(ctx, code)}")
    assert _fired(result) == {"altered": 1} and not result.clean, result.describe()
    (row,) = result.altered.rows
    assert row["order_code"] == code and row["reason"] == "status c"
    restored = _reaudit(ctx, run_dir)
    assert restored.clean and restored.counts == first.counts and restored.totals == first.totals
    assert restored.window == first.window  # the recorded window is re-used


def test_another_item_is_altered(ctx, run):
    run_dir, codes, ids, _first = run
    code = codes[2]
    position = (f"order_id = (select id from pretixbase_order where {_order(ctx, code)})")
    item = int(_sql(ctx, f"select item_id from pretixbase_orderposition where {position}"))
    other = next(v["item"] for name, v in ids.items() if v["item"] != item and name in ("Estudante", "Bilhete Geral"))
    _sql(ctx, f"update pretixbase_orderposition set item_id = {other} where {position}")
    try:
        result = _reaudit(ctx, run_dir)
    finally:
        _sql(ctx, f"update pretixbase_orderposition set item_id = {item} where {position}")
    assert _fired(result) == {"altered": 1} and not result.clean, result.describe()
    (row,) = result.altered.rows
    assert row["order_code"] == code and row["reason"] == f"item {other} not {item}"
    assert _reaudit(ctx, run_dir).clean


def test_an_untagged_order_in_the_window_is_a_ghost_and_outside_it_is_not(ctx, run):
    run_dir, _codes, ids, first = run
    window = first.window
    with PretixClient(ctx.access) as api:  # an order of nobody's attempt: no comment, no tag, a test-mode order
        code = api.post(api.event(EVENT, "orders/"), {
            "email": "audit-ghost@pretix-lab.invalid", "locale": "pt-pt", "payment_provider": "manual",
            "testmode": True, "positions": [{"item": ids["Bilhete Geral"]["item"]}]})["code"]
    try:
        middle = (window.start + window.end) / 2
        _sql(ctx, f"update pretixbase_order set datetime = to_timestamp({middle}) where {_order(ctx, code)}")
        inside = _reaudit(ctx, run_dir)
        assert _fired(inside) == {"ghost": 1}, inside.describe()
        assert inside.clean  # a ghost is shown, it does not fail the run
        (row,) = inside.ghost.rows
        assert row["code"] == code and row["client_outcome"] == "unlinked"
        _sql(ctx, f"update pretixbase_order set datetime = to_timestamp({window.end + 3600}) "
                  f"where {_order(ctx, code)}")
        outside = _reaudit(ctx, run_dir)
        assert _fired(outside) == {} and outside.clean, outside.describe()
        assert outside.totals == first.totals  # somebody else's order changes nothing of this run's audit
    finally:
        _delete_order(ctx, code)


def test_a_deleted_order_is_lost_not_altered(ctx, run):
    """Last: the order cannot be put back."""
    run_dir, codes, _ids, _first = run
    code = codes[0]
    _delete_order(ctx, code)
    assert _sql(ctx, f"select count(*) from pretixbase_order where {_order(ctx, code)}") == "0"
    result = _reaudit(ctx, run_dir)
    assert _fired(result) == {"lost": 1} and not result.clean, result.describe()
    (row,) = result.lost.rows
    assert row["order_code"] == code
