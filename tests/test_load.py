"""Seeding, the api journey under load, and the audit, against the real stack (no mocks)."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from lab.evidence.audit import audit_run, database_state
from lab.evidence.audit_rules import read_audit
from lab.evidence.runfolder import SCHEMA, RunFolder
from lab.experiments.run import RunParamsError, execute, validate_load
from lab.load.recorder import read_attempts, read_requests
from lab.pretix.client import PretixClient
from lab.pretix.seed import Catalogue, CustomerSeed, Product
from lab.stack.sql import pretix_sql

pytestmark = pytest.mark.stack

# a fresh event per session: a reused deployment must not see the quota an earlier session sold
SPIKE_EVENT = Catalogue(slug=f"spike-{uuid.uuid4().hex[:8]}", name="Teste de pico", products=[
    Product(name="Bilhete Pico", price="50.00", quota=50)])


def _sql(ctx, query: str) -> str:
    return pretix_sql(ctx.docker, query)


def test_seeding_twice_creates_no_duplicates(ctx, buyers):
    again, figures = ctx.customers(CustomerSeed(count=300, login_pool=10, concurrency=8))
    assert figures["created"] == 0 and figures["existing"] == 300
    assert [b.identifier for b in again] == [b.identifier for b in buyers]
    with PretixClient(ctx.access) as api:
        emails = [c["email"] for c in api.paginate(api.org("customers/"))]
    assert len(emails) == len(set(emails))
    assert sum(b.has_password for b in buyers) == 10
    first = ctx.catalogue(Catalogue())
    assert ctx.catalogue(Catalogue()) == first  # the catalogue is looked up, not made again


def test_invalid_workload_is_refused_before_anything_runs(tmp_path):
    cases = [
        ({"workload": {"model": "tsunami"}}, "No workload model named 'tsunami'"),
        ({"workload": {"model": "constant", "rate": -1, "duration": 10}}, "rate"),
        ({"journey": "carrier-pigeon"}, "No journey named 'carrier-pigeon'; known: api, shop"),
        ({"product_mix": {"Bilhete Dourado": 1}}, "unknown product 'Bilhete Dourado'"),
        ({"login_share": 2}, "login_share"),
    ]
    for raw, words in cases:
        with pytest.raises(RunParamsError, match=words):
            validate_load(raw, Catalogue())
    assert list(tmp_path.iterdir()) == []


def test_short_api_run_is_recorded_and_audits_clean(ctx, buyers, tmp_path):
    params = validate_load({"name": "api-short", "journey": "api",
                            "workload": {"model": "constant", "rate": 4, "duration": 5}})
    run_dir = execute(params, ctx.for_run(Catalogue(), buyers=buyers), root=tmp_path)
    attempts = read_attempts(run_dir)
    requests = read_requests(run_dir)
    assert len(attempts) == 20
    assert (attempts["outcome"] == "purchased").all(), attempts["error_kind"].value_counts()
    assert set(requests["upstream"].dropna()) == {"web-1", "web-2"}
    assert (requests["end"] >= requests["start"]).all() and (requests["start"] >= requests["scheduled"] - 0.01).all()
    result = read_audit(run_dir)
    assert result.clean, result.describe()
    assert result.totals["purchased"] == 20 and result.totals["db_orders_linked"] == 20
    folder = RunFolder(run_dir)
    for path in (folder.params_path, folder.environment_path, folder.customers_path, folder.meta_path,
                 folder.audit_path):
        assert path.exists(), path.name
    assert RunFolder.open(run_dir).schema == SCHEMA and folder.read_meta()["schema"] == SCHEMA
    codes = "','".join(attempts["order_code"])
    assert _sql(ctx, f"select count(*) from pretixbase_order where code in ('{codes}')") == "20"
    # the audit can fail: each deliberate corruption of the database is reported by its rule
    victim = attempts["order_code"].iloc[0]
    _sql(ctx, f"update pretixbase_order set code = 'LOST{victim[:4]}' where code = '{victim}'")
    lost = audit_run(run_dir, ctx.docker, ctx.access, ctx.access.organizer, "techpt26",
                     since=pd.Timestamp.now().timestamp() - 600, overwrite=True)
    assert lost.lost.count == 1 and not lost.clean
    _sql(ctx, f"update pretixbase_order set code = '{victim}' where code = 'LOST{victim[:4]}'")
    twin = attempts["order_code"].iloc[1]
    # two orders claiming one attempt: give the third order the second one's attempt reference
    dup_comment = _sql(ctx, f"select comment from pretixbase_order where code = '{twin}'")
    _sql(ctx, f"update pretixbase_order set comment = '{dup_comment}' where code = '{attempts['order_code'].iloc[2]}'")
    dup = audit_run(run_dir, ctx.docker, ctx.access, ctx.access.organizer, "techpt26",
                    since=pd.Timestamp.now().timestamp() - 600, overwrite=True)
    assert dup.duplicate.count == 1 and not dup.clean


def test_spike_against_a_small_quota_sells_exactly_the_quota(ctx, buyers, tmp_path):
    run_ctx = ctx.for_run(SPIKE_EVENT, buyers=buyers)
    params = validate_load({"name": "spike", "journey": "api", "product_mix": {"Bilhete Pico": 1},
                            "workload": {"model": "spike", "buyers": 150, "within": 5}}, SPIKE_EVENT)
    run_dir = execute(params, run_ctx, root=tmp_path)
    outcomes = read_attempts(run_dir)["outcome"].value_counts().to_dict()
    print("spike outcomes:", outcomes)
    assert outcomes.get("purchased") == 50
    assert outcomes.get("sold_out") == 100
    result = read_audit(run_dir)
    assert result.clean, result.describe()
    # shrink the quota behind pretix's back: the audit reports it oversold
    quota = run_ctx.catalogue_ids["Bilhete Pico"]["quota"]
    _sql(ctx, f"update pretixbase_quota set size = 40 where id = {quota}")
    shrunk = audit_run(run_dir, ctx.docker, ctx.access, ctx.access.organizer, SPIKE_EVENT.slug,
                       since=pd.Timestamp.now().timestamp() - 600, overwrite=True)
    assert shrunk.oversold.count == 1 and not shrunk.clean
    state = database_state(ctx.docker, ctx.access.organizer, SPIKE_EVENT.slug)
    assert len(state["orders"]) == 50


def test_short_shop_run_is_recorded_and_audits_clean(ctx, buyers, tmp_path):
    params = validate_load({"name": "shop-short", "journey": "shop", "login_share": 0.5,
                            "workload": {"model": "closed", "users": 3, "think_time": 0.5, "duration": 8,
                                         "iterations": 2}})
    run_dir = execute(params, ctx.for_run(Catalogue(), buyers=buyers), root=tmp_path)
    attempts = read_attempts(run_dir)
    requests = read_requests(run_dir)
    assert len(attempts) >= 3
    assert (attempts["outcome"] == "purchased").all(), attempts[["outcome", "error_kind"]]
    steps = set(requests["step"])
    assert {"event_page", "cart_add", "confirm", "order_page", "login"} <= steps, steps
    assert set(requests["upstream"].dropna()) >= {"web-1", "web-2"}
    result = read_audit(run_dir)
    assert result.clean, result.describe()
    assert result.totals["db_orders_linked"] == len(attempts)  # every shop order is linked to its attempt
