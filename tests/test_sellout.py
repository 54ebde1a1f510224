"""The sell-out analysis (lab.analysis.sellout) on small synthetic runs with known answers, the study's report over a
study with a sell-out, and what the study plans for it (lab.study.params)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lab.analysis.frames import Run
from lab.analysis.sellout import (
    buyers_of,
    describe,
    read_catalogue,
    sellout_headline,
    sellout_products,
    sellout_row,
    sellout_table,
)
from lab.analysis.study import StudyRun
from lab.evidence.audit_rules import AuditResult, RuleResult, write_audit

T0 = 1_800_000_000.0
PRODUCT = "Pré-venda API"
CLEAN = RuleResult(count=0, unit="", rows=[], truncated=False)


def attempt(i: int, outcome: str, start: float, end: float | None, item: int | None = None) -> dict:
    return {"attempt_id": f"a{i:04d}", "journey": "api", "scheduled": T0 + start, "start": T0 + start,
            "end": None if end is None else T0 + end, "outcome": outcome, "item": item,
            "order_code": f"C{i:04d}" if outcome == "purchased" else None}


def study_run(path: Path, rows: list[dict], mix: dict[str, float] | None = None, kind: str = "spike",
              journey: str = "api") -> StudyRun:
    path.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    run = Run(path, {"run_id": path.name, "journey": journey}, attempts=frame)
    return StudyRun(run, kind, {"load": {"journey": journey, "product_mix": mix or {PRODUCT: 1.0}}})


def audit(path: Path, oversold: list[dict] | None = None, wrong: list[dict] | None = None,
          ghosts: int = 0, extra: dict | None = None) -> None:
    def rule(rows):
        return RuleResult(count=len(rows or []), unit="", rows=rows or [], truncated=False)

    result = AuditResult(lost=CLEAN, ghost=RuleResult(count=ghosts, unit="", rows=[], truncated=False),
                         duplicate=CLEAN, oversold=rule(oversold), false_availability=rule(wrong),
                         totals={"attempts": 1, "oversold_positions": sum(r["over_by"] for r in oversold or [])})
    write_audit(result, path)
    if extra:
        doc = json.loads((path / "audit.json").read_text())
        (path / "audit.json").write_text(json.dumps({**doc, **extra}))


def sold_out_rows() -> list[dict]:
    """5 tickets, 12 buyers due one a second from 0 s: the first 5 buy (each 1.5 s), one fails, the rest are refused
    once the quota is full (the 5th purchase ends at 5.5 s)."""
    rows = [attempt(i, "purchased", i, i + 1.5) for i in range(5)]
    rows.append(attempt(5, "failed", 5, 8))
    rows += [attempt(i, "sold_out", i, i + 0.2) for i in range(6, 12)]
    return rows


# --- one run ----------------------------------------------------------------------------------------------------------
def test_a_sold_out_run_sold_exactly_its_quota_and_says_when(tmp_path):
    run = study_run(tmp_path / "spike-api", sold_out_rows())
    audit(run.run.path)
    row = sellout_row(run, PRODUCT, 5, quota_id=7)
    assert row["quota"] == 5 and row["buyers"] == 12 and row["sold"] == 5 and row["sold_from"] == "client"
    assert row["refused_sold_out"] == 6 and row["oversold"] == 0
    assert row["available_while_full"] == 0 and row["refused_while_free"] == 0 and row["false_availability"] == 0
    assert row["quota_reached_s"] == pytest.approx(5.5)
    assert row["note"] == ""
    assert "5 of 5 'Pré-venda API' tickets sold" in describe(row) and "reached 5.5 s" in describe(row)


def test_a_run_that_never_sold_out(tmp_path):
    rows = [attempt(i, "purchased", i, i + 1) for i in range(6)]
    run = study_run(tmp_path / "spike-api", rows)
    row = sellout_row(run, PRODUCT, 10)
    assert row["sold"] == 6 and row["refused_sold_out"] == 0 and row["oversold"] == 0
    assert math.isnan(row["quota_reached_s"]) and "never filled the quota" in describe(row)
    assert math.isnan(row["available_while_full"]) and row["false_availability"] == 0  # no audit: the client's part
    assert row["note"] == "not audited"
    assert sellout_products(run, pd.DataFrame([{"product": PRODUCT, "item": None, "quota_id": None,
                                                 "size": 10}])) == []  # 6 buyers for 10 tickets: no sell-out


def test_a_refusal_before_the_quota_could_be_full_is_false_availability(tmp_path):
    rows = sold_out_rows()
    rows.append(attempt(12, "sold_out", 0.5, 0.8))  # told 'sold out' when only one buyer had started
    run = study_run(tmp_path / "spike-api", rows)
    audit(run.run.path, wrong=[{"quota_id": 7, "size": 5, "used": 5, "available": True}])
    row = sellout_row(run, PRODUCT, 5, quota_id=7)
    assert row["refused_while_free"] == 1 and row["available_while_full"] == 1 and row["false_availability"] == 2
    assert row["sold"] == 5 and row["sold_from"] == "database"  # the audit's row names the quota's positions


def test_oversold_from_the_audit_and_from_the_client(tmp_path):
    rows = [attempt(i, "purchased", i, i + 1) for i in range(7)] + [attempt(7, "sold_out", 7, 7.1)]
    run = study_run(tmp_path / "spike-api", rows)
    audit(run.run.path, oversold=[{"quota_id": 7, "size": 5, "used": 8, "over_by": 3},
                                  {"quota_id": 9, "size": 1, "used": 2, "over_by": 1}])
    row = sellout_row(run, PRODUCT, 5, quota_id=7)
    assert row["sold"] == 8 and row["oversold"] == 3  # the database's count for this quota, not quota 9's
    without_id = sellout_row(run, PRODUCT, 5)
    assert without_id["sold"] == 7 and without_id["oversold"] == 4  # the event's 4 positions vs the client's 2
    assert without_id["quota_reached_s"] == pytest.approx(5.0)


def test_sold_comes_from_the_audit_when_it_carries_the_quotas(tmp_path):
    rows = [attempt(i, "purchased", i, i + 1) for i in range(4)] + [attempt(i, "failed", i, i + 9) for i in (4, 5)]
    run = study_run(tmp_path / "spike-api", rows)
    audit(run.run.path, ghosts=1, extra={"quotas": [{"quota_id": 7, "name": PRODUCT, "size": 5, "used": 5}]})
    row = sellout_row(run, PRODUCT, 5, quota_id=7)
    assert row["sold"] == 5 and row["sold_from"] == "database" and row["oversold"] == 0
    assert math.isnan(row["quota_reached_s"])  # its buyers saw 4 purchases: the ghost filled it
    audit_less = study_run(tmp_path / "other", rows)
    audit(audit_less.run.path, ghosts=1)
    assert "ghosts" in sellout_row(audit_less, PRODUCT, 5)["note"]


def test_an_incomplete_audit_leaves_what_it_could_not_check_unknown(tmp_path):
    run = study_run(tmp_path / "spike-api", sold_out_rows())
    write_audit(AuditResult.unreadable("database: ReadTimeout"), run.run.path)
    row = sellout_row(run, PRODUCT, 5)
    assert row["oversold"] == 0  # the client's purchases, all it has
    assert math.isnan(row["available_while_full"]) and row["false_availability"] == 0
    assert "audit incomplete: database: ReadTimeout" in row["note"]


def test_every_buyer_refused_says_the_quota_may_have_been_sold_before(tmp_path):
    run = study_run(tmp_path / "spike-api", [attempt(i, "sold_out", i, i + 0.1) for i in range(4)])
    row = sellout_row(run, PRODUCT, 2)
    assert row["sold"] == 0 and row["refused_while_free"] == 4 and "before the run began" in row["note"]


def test_a_mixed_run_counts_the_buyers_of_the_product_by_item(tmp_path):
    rows = [attempt(i, "purchased", i, i + 1, item=11) for i in range(6)]  # another product's buyers
    rows += [attempt(10 + i, "purchased", i, i + 2, item=12) for i in range(3)]
    rows += [attempt(20 + i, "sold_out", 4 + i, 4.1 + i, item=12) for i in range(3)]
    mix = {"Bilhete Geral": 0.5, "Pré-venda Falhas": 0.5}
    run = study_run(tmp_path / "faults-api", rows, mix, kind="faults")
    assert len(buyers_of(run, "Pré-venda Falhas", 12)) == 6
    row = sellout_row(run, "Pré-venda Falhas", 3, item=12)
    assert row["buyers"] == 6 and row["sold"] == 3 and row["refused_sold_out"] == 3
    assert row["quota_reached_s"] == pytest.approx(4.0)
    unknown = sellout_row(run, "Pré-venda Falhas", 3)  # no item id: the attempts cannot be told apart
    assert math.isnan(unknown["sold"]) and "which product" in unknown["note"]
    catalogue = pd.DataFrame([{"product": "Bilhete Geral", "item": 11, "quota_id": 1, "size": 60000},
                              {"product": "Pré-venda Falhas", "item": 12, "quota_id": 2, "size": 3}])
    assert sellout_products(run, catalogue) == [{"product": "Pré-venda Falhas", "quota": 3, "item": 12,
                                                 "quota_id": 2}]


# --- a study's sell-outs --------------------------------------------------------------------------------------------
def test_the_catalogue_comes_from_seed_json_else_study_yaml(tmp_path):
    study = tmp_path / "study"
    run_dir = study / "runs" / "spike-api"
    run_dir.mkdir(parents=True)
    (study / "study.yaml").write_text(yaml.safe_dump({"seed": {"catalogue": {"products": [
        {"name": PRODUCT, "price": "25.00", "quota": 250}, {"name": "VIP", "price": "450.00", "quota": 500}]}}},
        allow_unicode=True))
    assert read_catalogue(run_dir).set_index("product")["size"].to_dict() == {PRODUCT: 250, "VIP": 500}
    (study / "seed.json").write_text(json.dumps({"products": {PRODUCT: {"item": 12, "quota": 7, "size": 240}},
                                                 "customers": {}}))
    catalogue = read_catalogue(study).set_index("product")
    assert catalogue.loc[PRODUCT, "size"] == 240 and catalogue.loc[PRODUCT, "item"] == 12  # what pretix holds
    assert catalogue.loc["VIP", "size"] == 500
    assert read_catalogue(tmp_path / "nowhere").empty


def test_the_table_and_the_headline_name_each_journey(tmp_path):
    api = study_run(tmp_path / "spike-api", sold_out_rows())
    shop_rows = [{**r, "journey": "shop"} for r in sold_out_rows()]
    shop = study_run(tmp_path / "spike-shop", shop_rows, {"Pré-venda Loja": 1.0}, journey="shop")
    capacity = study_run(tmp_path / "capacity", [attempt(i, "purchased", i, i + 1) for i in range(3)],
                         {"Bilhete Geral": 1.0}, kind="capacity")
    catalogue = pd.DataFrame([{"product": PRODUCT, "item": None, "quota_id": None, "size": 5},
                              {"product": "Pré-venda Loja", "item": None, "quota_id": None, "size": 5},
                              {"product": "Bilhete Geral", "item": None, "quota_id": None, "size": 60000}])
    table = sellout_table([api, shop, capacity], catalogue)
    assert list(table["run_id"]) == ["spike-api", "spike-shop"]
    headline = sellout_headline(table)
    assert set(headline) == {"api", "shop"}
    assert headline["api"] == {"run": "spike-api", "product": PRODUCT, "quota": 5, "sold": 5, "refused_sold_out": 6,
                               "oversold": 0, "false_availability": 0, "quota_reached_s": 5.5}
    assert sellout_headline(sellout_table([capacity], catalogue)) == {}


def test_the_report_shows_the_sell_out_and_the_headline_carries_it(tmp_path):
    """04-analysis over the synthetic study plus an on-sale that sold out (papermill, no stack)."""
    from study_fixture import T0 as FIXTURE_T0
    from study_fixture import _write_run, build_study

    from lab.analysis.summary import summarise
    from lab.report.publish import execute_notebook, to_html

    study = build_study(tmp_path / "study")
    t0 = FIXTURE_T0 + 2000
    rows = [(t0 + i * 0.1, t0 + i * 0.1 + 0.5, "purchased" if i < 20 else "sold_out") for i in range(50)]
    path = _write_run(study / "runs", "spike", "api", "spike", {"model": "constant", "rate": 10, "duration": 5},
                      rows, t0)
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["load"]["product_mix"] = {PRODUCT: 1.0}
    (path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    (study / "seed.json").write_text(json.dumps({"products": {PRODUCT: {"item": 12, "quota": 7, "size": 20}}}))
    doc = json.loads((study / "study.json").read_text())
    doc["runs"].append({"name": "spike-api", "kind": "spike", "journey": "api", "dir": f"runs/{path.name}",
                        "label": "600/min"})
    (study / "study.json").write_text(json.dumps(doc))

    expected = summarise(study)
    assert expected.headline()["sellout"]["api"]["sold"] == 20
    notebook = execute_notebook("04-analysis.ipynb", tmp_path / "out", {"study_dir": str(study)})
    text = to_html(notebook, tmp_path / "out" / "index.html").read_text()
    assert ">Sell-out" in text and "Traceback" not in text
    assert "20 of 20 &#x27;Pré-venda API&#x27; tickets sold" in text or "20 of 20 'Pré-venda API' tickets sold" in text
    assert json.loads((study / "headline.json").read_text())["sellout"] == expected.headline()["sellout"] == {
        "api": {"run": path.name, "product": PRODUCT, "quota": 20, "sold": 20, "refused_sold_out": 30,
                "oversold": 0, "false_availability": 0, "quota_reached_s": 2.4}}


# --- what the study plans ---------------------------------------------------------------------------------------------
def test_every_study_sells_out_on_both_journeys_and_in_the_fault_run():
    from lab.study import params as studies

    for preset in ("default", "quick"):
        params = studies.load(preset=preset)
        runs = {r.name: r for r in studies.plan_runs(params)}
        quotas = {p.name: p.quota for p in params.seed.catalogue.products}
        for sellout in studies.sellouts(params):
            assert quotas[sellout.product] == sellout.quota and 2 * sellout.quota <= sellout.crowd
            mix = runs[sellout.run].load["product_mix"]
            assert sellout.product in mix
        assert runs["spike-api"].load["product_mix"] == {"Pré-venda API": 1.0}
        assert runs["spike-shop"].load["product_mix"] == {"Pré-venda Loja": 1.0}
        assert sum(runs["faults-api"].load["product_mix"].values()) == pytest.approx(1.0)
        assert not set(studies.SELLOUT_PRODUCTS.values()) & set(runs["capacity-api-" + (
            "4" if preset == "default" else "2") + "-r1"].load["product_mix"])
    default = studies.load(preset="default")
    assert {s.run: s.quota for s in studies.sellouts(default)} == {"spike-api": 250, "spike-shop": 20,
                                                                  "faults-api": 50}


def test_sellout_quotas_left_empty_are_sized_from_the_crowd_and_a_reloaded_study_keeps_them():
    from lab.pretix.seed import Catalogue
    from lab.study import params as studies

    catalogue = Catalogue()
    params = studies.StudyParams(seed={"catalogue": catalogue})
    assert len(catalogue.products) == 4  # the caller's catalogue is not changed
    assert {s.run: (s.quota, s.crowd) for s in studies.sellouts(params)} == {
        "spike-api": (239, 533), "spike-shop": (20, 200), "faults-api": (48, 120)}
    dumped = yaml.safe_load(yaml.safe_dump(params.model_dump(mode="json"), allow_unicode=True))
    dumped["spike"]["sellout_quota_api"] = 200  # a study.yaml edited: the parameter wins over its catalogue copy
    again = studies.validate(dumped)
    names = [p.name for p in again.seed.catalogue.products]
    assert len(names) == len(set(names)) == 7
    assert {p.name: p.quota for p in again.seed.catalogue.products}["Pré-venda API"] == 200


@pytest.mark.parametrize(("raw", "expected"), [
    ({"spike": {"sellout_quota_api": 0}}, "spike.sellout_quota_api: must be >= 1 and <= 1000000 (got 0)"),
    ({"spike": {"sellout_quota_api": 300}},
     "spike.sellout_quota_api: 300 ticket(s) for 533 buyer(s) of 'Pré-venda API' in run spike-api: a sell-out needs "
     "at least 2 buyers per ticket; give at most 266 tickets"),
    ({"spike": {"shop_seconds": 2, "sellout_quota_shop": 20}}, "spike.sellout_quota_shop: 20 ticket(s) for 27"),
    ({"spike": {"sellout_quota_shop": "many"}}, "spike.sellout_quota_shop: Input should be a valid integer"),
    ({"faults": {"sellout_share": 0.9}}, "faults.sellout_share: must be > 0 and <= 0.5"),
    ({"faults": {"seconds": 60, "sellout_quota": 20,
                 "steps": [{"at": 5, "target": "pretix-web-1", "action": "kill", "duration": 5}]}},
     "faults.sellout_quota: 20 ticket(s) for 30 buyer(s) of 'Pré-venda Falhas' in run faults-api"),
    ({"product_mix": {"Pré-venda API": 1}}, "product_mix: 'Pré-venda API' is the sell-out product of run spike-api"),
])
def test_a_bad_sellout_parameter_is_named(raw, expected):
    from lab.study import params as studies

    with pytest.raises(studies.StudyParamsError) as error:
        studies.validate(raw)
    assert expected in str(error.value), str(error.value)


def test_a_sellout_of_a_run_the_study_skips_is_not_checked():
    from lab.study import params as studies

    params = studies.validate({"spike": {"shop_seconds": 0, "sellout_quota_shop": 5000}})
    assert "spike-shop" not in {r.name for r in studies.plan_runs(params)}
