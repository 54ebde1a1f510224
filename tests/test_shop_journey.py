"""The `shop` journey: pure helpers (no stack), then real purchases through the running stack's web shop.

The stack tests use the session's deployed stack from conftest (deployed when needed, removed at the end).
They add a customer with a fresh random password, and a product
"Esgotado Teste" whose quota is set so that exactly one ticket is left before the sold-out test.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lab.load.http import Stepper
from lab.load.recorder import Recorder, read_requests
from lab.load.runner import Attempt
from lab.load.shop import (
    CartAdd,
    ShopJourney,
    ShopStop,
    attempt_reference,
    find_form,
    is_sold_out_message,
    item_availability,
    order_from_url,
    tagged_email,
)
from lab.pretix.buyers import Buyer

EVENT = "techpt26"
TINY = "Esgotado Teste"
GUEST_STEPS = [
    "event_page", "cart_add", "cart_poll", "cart", "checkout_start", "checkout_customer_page", "checkout_customer",
    "checkout_questions_page", "checkout_questions", "checkout_payment_page", "checkout_payment",
    "checkout_confirm_page", "confirm", "confirm_poll", "payment_complete", "order_page",
]
LOGIN_STEPS = ["login_page", "login", *GUEST_STEPS]


# --------------------------------------------------------------------------------------------------- pure helpers

PAGE = """
<form method="get" action="/locale/set"><select name="locale"><option value="en">en</option></select></form>
<form method="post" data-asynctask action="/o/e/cart/add?next=/o/e/&amp;next_error=/o/e/">
  <input type="hidden" name="csrfmiddlewaretoken" value="tok&amp;en">
  <input type="hidden" name="subevent" value="" />
  <article class="row product-row simple" id="item-1"><div class="availability-box available">
    <input type="number" min="0" name="item_1" id="item_1"></div></article>
  <article class="row product-row simple" id="item-7"><div class="col-md-2 availability-box gone">
    <strong>ESGOTADO</strong></div></article>
  <article class="row product-row simple" id="item-8"><div class="availability-box unavailable">
    <strong>Reservado</strong><br/>Todos os produtos restantes são reservados</div></article>
  <article class="row product-row simple" id="item-9"><div class="availability-box unavailable">
    <p><small>Not available yet.</small></p></div></article>
  <input type="checkbox" name="box" value="yes">
  <input type="checkbox" name="ticked" value="yes" checked>
  <input type="radio" name="mode" value="a"><input type="radio" name="mode" value="b" checked>
  <select name="country"><option value="AF">AF</option><option value="PT" selected>PT</option></select>
  <textarea name="note">
hello &amp; bye</textarea>
  <input type="text" name="off" value="x" disabled>
  <button type="submit" name="go" value="1">Go</button>
</form>
"""


def test_find_form_reads_what_a_browser_would_submit():
    form = find_form(PAGE, lambda a: "cart/add" in a.get("action", ""))
    assert form is not None
    assert form.action == "/o/e/cart/add?next=/o/e/&next_error=/o/e/"
    assert form.method == "post" and "data-asynctask" in form.attrs
    assert form.data() == {"csrfmiddlewaretoken": "tok&en", "subevent": "", "item_1": "", "ticked": "yes",
                           "mode": "b", "country": "PT", "note": "hello & bye"}
    assert {"box", "off", "go", "item_1"} <= form.names()
    assert form.data(item_1="1")["item_1"] == "1"
    assert find_form(PAGE, lambda a: a.get("action") == "/nowhere") is None


def test_item_availability_on_the_event_page():
    assert item_availability(PAGE, 1) == "available"
    assert item_availability(PAGE, 7) == "gone"
    assert item_availability(PAGE, 8) == "reserved"
    assert item_availability(PAGE, 9) == "unavailable"
    assert item_availability(PAGE, 99) is None


def test_small_helpers():
    attempt_id = "0123abcd-4567-89ef-0123-456789abcdef"
    assert tagged_email("ana.silva@pretix-lab.invalid", attempt_id) == "ana.silva+0123abcd4567@pretix-lab.invalid"
    assert tagged_email("ana+old@x.invalid", attempt_id) == "ana+0123abcd4567@x.invalid"
    assert attempt_reference(attempt_id) == "lab-0123abcd4567"
    assert order_from_url("/techpt/techpt26/order/J9S33/ua50dsu4tbbirmo9/pay/71/complete") == ("J9S33",
                                                                                            "ua50dsu4tbbirmo9")
    assert order_from_url("/techpt/techpt26/checkout/confirm/") is None
    assert is_sold_out_message("Alguns dos produtos que selecionou já não estão disponíveis. Os seguintes ...")
    assert is_sold_out_message("Some of the products you selected are no longer available.")
    assert not is_sold_out_message("Não fomos capazes de processar o seu pedido dado que o servidor estava ocupado")


def test_plan_is_reproducible_and_honours_the_shares():
    buyers = [Buyer(identifier=f"B{i}", email=f"b{i}@pretix-lab.invalid", name="B", has_password=i < 2)
              for i in range(10)]
    journey = ShopJourney("https://127.0.0.1:8443", None, "o", "e", None, buyers,  # type: ignore[arg-type]
                          item_weights={1: 3.0, 2: 1.0, 3: 0.0}, login_share=0.25, password=lambda b: "x")
    attempts = [Attempt(str(uuid.UUID(int=i)), i, 0.0) for i in range(4000)]
    plans = [journey.plan(a) for a in attempts]
    assert plans == [journey.plan(a) for a in attempts]
    logins = [p for p in plans if p[1]]
    assert 0.22 < len(logins) / len(plans) < 0.28
    assert all(buyer.has_password for buyer, _, _ in logins)
    items = [item for _, _, item in plans]
    assert 0.72 < items.count(1) / len(items) < 0.78 and 3 not in items
    assert journey._local("https://127.0.0.1:8443/o/e/order/A/b/") == "/o/e/order/A/b/"
    assert journey._local("/o/e/cart/add?x=1") == "/o/e/cart/add?x=1"
    with pytest.raises(ShopStop):
        journey._local("https://pretix.example/o/e/")  # never follow a redirect off the lab's own address
    with pytest.raises(ValueError):
        ShopJourney("https://x", None, "o", "e", None, buyers[2:], item_weights={1: 1.0},  # type: ignore[arg-type]
                    login_share=0.5, password=lambda b: "x")


CART_PAGE = """<form method="post" data-asynctask action="/o/e/cart/add">
  <input type="hidden" name="csrfmiddlewaretoken" value="t"><input type="number" name="item_1"></form>"""


def _scripted_cart_add(poll_answers: list[dict], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CartAdd:
    """One cart add of the real ShopJourney against scripted pretix answers (the seam: lab.load.shop.new_client)."""
    from lab.load import shop as shop_module

    polls = iter(poll_answers)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/o/e/":
            return httpx.Response(200, text=CART_PAGE)
        if request.method == "POST" and request.url.path == "/o/e/cart/add":
            return httpx.Response(200, json={"async_id": "a1", "ready": False,
                                             "check_url": "/o/e/cart/add?async_id=a1"})
        return httpx.Response(200, json=next(polls))

    monkeypatch.setattr(shop_module, "new_client", lambda base_url, tls, **kw: httpx.AsyncClient(
        base_url=base_url, transport=httpx.MockTransport(handle), **kw))
    requests = Recorder.requests(tmp_path / f"run-{uuid.uuid4().hex}", "t")
    journey = ShopJourney("https://127.0.0.1:8443", ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), "o", "e",
                          Stepper(requests, "shop"), [Buyer(identifier="g", email="g@pretix-lab.invalid", name="G",
                                                                has_password=False)],
                          item_weights={1: 1.0}, login_share=0.0, password=lambda b: "", poll_interval=0)
    try:
        return asyncio.run(journey.cart_add(Attempt(str(uuid.UUID(int=1)), 0, 0.0)))
    finally:
        requests.close()


def test_a_failed_cart_task_says_what_pretix_said(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """pretix's asynctask answer for a task that raised: the journey keeps its message, so a report can say why."""
    message = "An unexpected error has occurred, please try again later."
    added = _scripted_cart_add([{"ready": False}, {"ready": True, "success": False, "message": message}],
                               monkeypatch, tmp_path)
    assert added == CartAdd(False, "task_failed:cart_poll", message)
    sold = _scripted_cart_add([{"ready": True, "success": False,
                                "message": "Some of the products you selected are no longer available."}],
                              monkeypatch, tmp_path)
    assert sold == CartAdd(False, "sold_out", None)
    good = _scripted_cart_add([{"ready": True, "success": True, "redirect": "/o/e/cart/"}], monkeypatch, tmp_path)
    assert good == CartAdd(True)


def test_a_page_that_sends_the_buyer_back_names_the_step_it_sends_to(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """pretix redirects a checkout page to the first step it finds incomplete (a session read that missed the write
    before it did so): the error kind names both pages, so a report tells it from a page the lab cannot read."""
    from lab.load import shop as shop_module

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/o/e/checkout/questions/":
            return httpx.Response(302, headers={"Location": "/o/e/checkout/customer/"})
        return httpx.Response(200, text="<html></html>")

    monkeypatch.setattr(shop_module, "new_client", lambda base_url, tls, **kw: httpx.AsyncClient(
        base_url=base_url, transport=httpx.MockTransport(handle), **kw))
    requests = Recorder.requests(tmp_path / "run", "t")
    journey = ShopJourney("https://127.0.0.1:8443", ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), "o", "e",
                          Stepper(requests, "shop"), [Buyer(identifier="g", email="g@pretix-lab.invalid", name="G",
                                                                has_password=False)],
                          item_weights={1: 1.0}, login_share=0.0, password=lambda b: "", poll_interval=0)
    attempt = Attempt(str(uuid.UUID(int=2)), 0, 0.0)

    async def visit() -> None:
        client = shop_module.new_client(journey.base_url, journey.tls)
        v = shop_module._Visit(client, attempt, journey.buyers[0], False, 1, "g@pretix-lab.invalid")
        try:
            await journey._get(v, "checkout_questions_page", "/o/e/checkout/questions/")
        finally:
            await client.aclose()

    try:
        with pytest.raises(shop_module.ShopStop) as stop:
            asyncio.run(visit())
    finally:
        requests.close()
    assert stop.value.error_kind == "sent_back:checkout_questions_page>customer"
    assert stop.value.detail == "/o/e/checkout/customer/"


# ----------------------------------------------------------------------------------------------- the real stack

@dataclass
class Shop:
    access: object
    items: dict[str, dict]
    guest: Buyer
    customer: Buyer
    password: str


@pytest.fixture(scope="module")
def shop(stack) -> Shop:
    """The session's deployed stack (conftest deploys it when needed)."""
    from lab.pretix.bootstrap import BootstrapError, PretixAccess
    from lab.pretix.client import PretixClient
    from lab.pretix.seed import Catalogue, ensure_catalogue

    try:
        access = PretixAccess.load()
    except (BootstrapError, OSError, ValueError) as error:
        pytest.fail(f"no deployed stack to buy from: {error}")
    try:
        health = httpx.get(f"{access.base_url}/healthcheck/", verify=access.tls(), timeout=5.0)
    except httpx.HTTPError as error:
        pytest.fail(f"the stack's pretix does not answer at {access.base_url} ({error!r})")
    if health.status_code != 200:
        pytest.fail(f"the stack's pretix is not healthy: /healthcheck/ -> {health.status_code}")
    with PretixClient(access) as client:
        items = ensure_catalogue(client, Catalogue(slug=EVENT))
        client.patch(client.org("settings/"), {"customer_accounts": True, "customer_accounts_native": True})
        tag = uuid.uuid4().hex[:10]
        email = f"shop-test-{tag}@pretix-lab.invalid"
        password = "Lab-" + secrets.token_urlsafe(18)
        made = client.post(client.org("customers/"), {
            "email": email, "name_parts": {"_scheme": "full", "full_name": "Teste Cliente"},
            "password": password, "is_verified": True,
        })
    customer = Buyer(identifier=made["identifier"], email=email, name="Teste Cliente", has_password=True)
    guest = Buyer(identifier=f"guest-{tag}", email=f"shop-guest-{tag}@pretix-lab.invalid", name="Ana Convidada",
                  has_password=False)
    return Shop(access, items, guest, customer, password)


def _tiny_product_with_one_left(access) -> int:
    """Item "Esgotado Teste" in the event, its quota sized so that exactly one ticket is available now."""
    from lab.pretix.client import PretixClient

    with PretixClient(access) as client:
        items = [i for i in client.paginate(client.event(EVENT, "items/")) if TINY in (i["name"] or {}).values()]
        item = items[0] if items else client.post(client.event(EVENT, "items/"), {
            "name": {"pt-pt": TINY, "en": TINY}, "default_price": "10.00", "admission": True, "active": True,
        })
        quotas = [q for q in client.paginate(client.event(EVENT, "quotas/")) if item["id"] in q["items"]]
        quota = quotas[0] if quotas else client.post(client.event(EVENT, "quotas/"), {
            "name": TINY, "size": 1, "items": [item["id"]],
        })
        left = client.get(client.event(EVENT, f"quotas/{quota['id']}/availability/"))
        taken = quota["size"] - (left["available_number"] or 0)
        if left["available_number"] != 1:
            client.patch(client.event(EVENT, f"quotas/{quota['id']}/"), {"size": taken + 1})
        assert client.get(client.event(EVENT, f"quotas/{quota['id']}/availability/"))["available_number"] == 1
    return item["id"]


def _buy(shop: Shop, run_dir: Path, buyers: list[Buyer], item: int, login_share: float, count: int,
         concurrency: int = 1) -> tuple[list[Attempt], float]:
    """count attempts, `concurrency` at a time; returns them and the wall time of the whole batch."""

    async def main() -> tuple[list[Attempt], float]:
        with Recorder.requests(run_dir, run_dir.name) as recorder:
            journey = ShopJourney(
                shop.access.base_url, shop.access.tls(), shop.access.organizer, EVENT, Stepper(recorder, "shop"),
                buyers, item_weights={item: 1.0}, login_share=login_share, password=lambda b: shop.password,
                max_attempt_seconds=90,
            )
            attempts = [Attempt(str(uuid.uuid4()), i, time.time()) for i in range(count)]
            began = time.perf_counter()
            for start in range(0, count, concurrency):
                await asyncio.gather(*(journey(a) for a in attempts[start:start + concurrency]))
            return attempts, time.perf_counter() - began

    return asyncio.run(main())


def _collapse_polls(steps: list[str]) -> list[str]:
    """The step sequence with repeated polls counted once (a busy worker may need several)."""
    return [s for i, s in enumerate(steps) if not (s.endswith("_poll") and i and steps[i - 1] == s)]


def _order(shop: Shop, code: str) -> dict:
    from lab.pretix.client import PretixClient

    with PretixClient(shop.access) as client:
        return client.get(client.event(EVENT, f"orders/{code}/"))


def _check_rows(run_dir: Path, attempt: Attempt, expected: list[str]) -> None:
    rows = read_requests(run_dir)
    mine = rows[rows.attempt_id == attempt.attempt_id].sort_values("start")
    assert len(mine) == len(rows), "only this attempt's requests were recorded"
    steps = mine.step.tolist()
    assert _collapse_polls(steps) == expected, steps
    assert (mine.journey == "shop").all() and (mine.outcome == "ok").all() and (mine.error_kind.isna()).all()
    assert mine.upstream.notna().all(), "every answer names the web instance that made it"
    assert set(mine.upstream) <= {"web-1", "web-2"}
    assert (mine.buyer == attempt.buyer).all()
    assert (mine.end >= mine.start).all() and (mine.start >= mine.scheduled - 1).all()
    assert mine[mine.step == "order_page"].url_path.str.contains(f"/order/{attempt.order_code}/").all()


@pytest.mark.stack
def test_guest_purchase(shop: Shop, tmp_path: Path):
    item = shop.items["Bilhete Geral"]["item"]
    (attempt,), _ = _buy(shop, tmp_path / "guest", [shop.guest], item, login_share=0.0, count=1)
    assert (attempt.outcome, attempt.error_kind) == ("purchased", None), attempt
    assert attempt.buyer == shop.guest.identifier
    order = _order(shop, attempt.order_code)
    assert order["status"] == "n" and order["customer"] is None
    assert [p["item"] for p in order["positions"]] == [item]
    assert order["email"] == tagged_email(shop.guest.email, attempt.attempt_id)
    assert order["invoice_address"]["internal_reference"] == attempt_reference(attempt.attempt_id)
    assert order["positions"][0]["attendee_name"] == shop.guest.name
    assert order["payments"][0]["provider"] == "manual"
    _check_rows(tmp_path / "guest", attempt, GUEST_STEPS)


@pytest.mark.stack
def test_logged_in_purchase(shop: Shop, tmp_path: Path):
    item = shop.items["Estudante"]["item"]
    (attempt,), _ = _buy(shop, tmp_path / "login", [shop.customer], item, login_share=1.0, count=1)
    assert (attempt.outcome, attempt.error_kind) == ("purchased", None), attempt
    assert attempt.buyer == shop.customer.identifier
    order = _order(shop, attempt.order_code)
    assert order["customer"] == shop.customer.identifier, "the order is linked to the customer account"
    assert order["email"] == shop.customer.email
    assert order["invoice_address"]["internal_reference"] == attempt_reference(attempt.attempt_id)
    assert [p["item"] for p in order["positions"]] == [item]
    _check_rows(tmp_path / "login", attempt, LOGIN_STEPS)


@pytest.mark.stack
def test_tiny_quota_sells_once_then_reports_sold_out(shop: Shop, tmp_path: Path):
    item = _tiny_product_with_one_left(shop.access)
    first, second = _buy(shop, tmp_path / "tiny", [shop.guest], item, login_share=0.0, count=2)[0]
    assert (first.outcome, first.error_kind) == ("purchased", None), first
    assert (second.outcome, second.error_kind, second.order_code) == ("sold_out", None, None), second
    assert [p["item"] for p in _order(shop, first.order_code)["positions"]] == [item]
    rows = read_requests(tmp_path / "tiny")
    assert set(rows.attempt_id) == {first.attempt_id, second.attempt_id}
    theirs = rows[rows.attempt_id == second.attempt_id]
    assert "confirm" not in set(theirs.step), "a sold-out attempt never reaches the order"
    assert (theirs.outcome != "error").all()


@pytest.mark.stack
def test_an_attempt_is_bounded_in_time_and_keeps_the_cut_request(shop: Shop, tmp_path: Path):
    item = shop.items["Bilhete Geral"]["item"]

    async def main() -> tuple[Attempt, float]:
        with Recorder.requests(tmp_path / "cut", "cut") as recorder:
            journey = ShopJourney(
                shop.access.base_url, shop.access.tls(), shop.access.organizer, EVENT, Stepper(recorder, "shop"),
                [shop.guest], item_weights={item: 1.0}, login_share=0.0, password=lambda b: "", poll_interval=0.0,
                max_attempt_seconds=0.02,  # shorter than the first request (TLS + a rendered page): cut mid-request
            )
            attempt = Attempt(str(uuid.uuid4()), 0, time.time())
            began = time.perf_counter()
            await journey(attempt)
            return attempt, time.perf_counter() - began

    attempt, took = asyncio.run(main())
    assert (attempt.outcome, attempt.error_kind) == ("failed", "attempt_timeout"), attempt
    assert took < 1.5
    rows = read_requests(tmp_path / "cut").sort_values("start")
    assert len(rows) >= 1 and (rows.attempt_id == attempt.attempt_id).all()
    last = rows.iloc[-1]
    assert (last.outcome, last.error_kind, last.status) == ("error", "attempt_timeout", 0)
