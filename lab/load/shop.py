"""The `shop` journey: a buyer's path through pretix's web shop, one recorded HTTP request per step.

What a browser with JavaScript does, request by request (pretix 2026.8.0, read from pretix/presale):

    [login_page    GET  /{org}/account/login?next=/{org}/{event}/        the organizer's customer login form
     login         POST same URL (email, password, csrf)                 302 -> next]
    event_page     GET  /{org}/{event}/                                  product form, csrf token
    cart_add       POST /{org}/{event}/cart/add?next=..&next_error=..    ajax=1: JSON {async_id, check_url}
    cart_poll      GET  check_url (?async_id=..&ajax=1)                  until {"ready": true, "redirect": ..}
    cart           GET  redirect (the event page with the cart open)
    checkout_start GET  /{org}/{event}/checkout/start                    302 -> the first checkout step
    checkout_<s>_page GET /{org}/{event}/checkout/<s>/  and  checkout_<s> POST its form (302 -> next step)
                   for s in customer (only with customer accounts), questions, payment
    checkout_confirm_page GET /{org}/{event}/checkout/confirm/
    confirm        POST the confirm form (checkboxes confirm_*=yes, ajax=1): JSON, the order runs in celery
    confirm_poll   GET  check_url                                         ready -> redirect to the payment
    payment_complete GET /{org}/{event}/order/<CODE>/<secret>/pay/<id>/complete   302 -> order page
    order_page     GET  /{org}/{event}/order/<CODE>/<secret>/?thanks=yes

pretix answers the ajax POSTs of cart add and confirm with "not ready" even when the task is done (it reads
`ready` before waiting), so each async step costs at least one poll. A guest purchase is 16 requests, a
logged-in one 18. Redirects are never followed by httpx: each hop is its own step, as in a browser's log.

Linking an order to its attempt: pretix's checkout has no free-text order comment. The journey writes
`lab-<attempt_id[:12]>` into the invoice address's `internal_reference` (sent for guests and customers alike;
the API shows it as `invoice_address.internal_reference`), and guests also get the plus-address
`<local>+<attempt_id[:12]>@<domain>` as order email (a logged-in customer's email is fixed by the account).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urljoin

import httpx

from lab.load.http import REQUEST_ID_HEADER, Stepper, new_client
from lab.load.journey import Journey, JourneySetting, journeys
from lab.load.recorder import RequestRecord
from lab.load.runner import Attempt
from lab.load.shop_pages import (
    BUSY_MESSAGES,
    MAX_CHECKOUT_PAGES,
    Form,
    _path_of,
    _post_form,
    attempt_reference,
    checkout_step,
    find_form,
    is_sold_out_message,
    item_availability,
    order_from_url,
    parse_form,
    tagged_email,
)
from lab.pretix.buyers import Buyer, password_for

__all__ = [
    "CartAdd", "Form", "ShopJourney", "ShopStop", "attempt_reference", "checkout_step", "find_form",
    "is_sold_out_message", "item_availability", "order_from_url", "parse_form", "tagged_email",
]



class ShopStop(Exception):  # noqa: N818 - a signal, not an error: the journey ends with this outcome
    """Ends the journey early with an outcome (raised and caught inside ShopJourney only)."""

    def __init__(self, outcome: str, error_kind: str | None = None, detail: str | None = None):
        super().__init__(outcome, error_kind)
        self.outcome = outcome
        self.error_kind = error_kind
        self.detail = detail  # what pretix said, when it said why (a failed task's message)


class CartAdd(NamedTuple):
    """The steady-state check's cart add: did it work, and if not, the error kind and what pretix said."""

    ok: bool
    error_kind: str | None = None
    detail: str | None = None


# ---------------------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Visit:
    """One attempt's state."""

    client: httpx.AsyncClient
    attempt: Attempt
    buyer: Buyer
    login: bool
    item: int
    email: str
    polls: int = 0
    current: tuple[str, str, str, float, str] | None = None  # in flight: step, method, url, start, request id


@journeys.register("shop")
class ShopJourney(Journey):
    """An async callable `await journey(attempt)` that buys one product through the web shop."""

    def __init__(
        self, base_url: str, tls: ssl.SSLContext, organizer: str, event: str, stepper: Stepper,
        buyers: Sequence[Buyer], *, item_weights: dict[int, float], login_share: float,
        password: Callable[[Buyer], str], poll_interval: float = 0.25, max_polls: int = 120,
        max_attempt_seconds: float = 120.0, user_agent: str = "pretix-lab-shop/1 (+load test)",
        country: str = "PT",
    ):
        if not buyers:
            raise ValueError("at least one buyer is needed")
        if not item_weights or any(w < 0 for w in item_weights.values()) or sum(item_weights.values()) <= 0:
            raise ValueError("item_weights needs at least one positive share")
        if not 0.0 <= login_share <= 1.0:
            raise ValueError("login_share is a share between 0 and 1")
        if max_polls < 1 or poll_interval < 0 or max_attempt_seconds <= 0:
            raise ValueError("max_polls >= 1, poll_interval >= 0 and max_attempt_seconds > 0 are needed")
        self.base_url = base_url.rstrip("/")
        self.tls = tls
        self.organizer = organizer
        self.event = event
        self.stepper = stepper
        self.buyers = list(buyers)
        self.login_pool = [b for b in self.buyers if b.has_password]
        if login_share > 0 and not self.login_pool:
            raise ValueError("login_share > 0 but no buyer has a password")
        total = sum(item_weights.values())
        self.items = [i for i, w in item_weights.items() if w > 0]
        acc, self.cumulative = 0.0, []
        for i in self.items:
            acc += item_weights[i] / total
            self.cumulative.append(acc)
        self.login_share = login_share
        self.password = password
        self.poll_interval = poll_interval
        self.max_polls = max_polls
        self.max_attempt_seconds = max_attempt_seconds
        self.headers = {"User-Agent": user_agent}
        self.country = country
        self.event_path = f"/{organizer}/{event}/"
        self.login_path = f"/{organizer}/account/login"

    @classmethod
    def build(cls, setting: JourneySetting) -> ShopJourney:
        secret = setting.buyer_secret
        return cls(setting.base_url, setting.tls, setting.organizer, setting.event, setting.stepper, setting.buyers,
                   item_weights=setting.item_weights, login_share=setting.login_share,
                   password=lambda buyer: password_for(secret, buyer.email))

    # -- choices ---------------------------------------------------------------------------------------------
    def plan(self, attempt: Attempt) -> tuple[Buyer, bool, int]:
        """(buyer, logs in?, item id), reproducible from the attempt id."""
        rng = random.Random(attempt.attempt_id)
        login = rng.random() < self.login_share
        pool = self.login_pool if login else self.buyers
        buyer = pool[attempt.buyer_index % len(pool)]
        draw = rng.random()
        item = next((i for i, c in zip(self.items, self.cumulative, strict=True) if draw < c), self.items[-1])
        return buyer, login, item

    # -- the journey -----------------------------------------------------------------------------------------
    async def __call__(self, attempt: Attempt) -> None:
        buyer, login, item = self.plan(attempt)
        attempt.buyer = buyer.identifier
        # what the audit expects the order to hold: one of this item, the buyer's account only when logged in
        attempt.item, attempt.count, attempt.guest = item, 1, not login
        email = buyer.email if login else tagged_email(buyer.email, attempt.attempt_id)
        client = new_client(self.base_url, self.tls, headers=self.headers)
        visit = _Visit(client, attempt, buyer, login, item, email)
        try:
            async with asyncio.timeout(self.max_attempt_seconds):
                await self._journey(visit)
            attempt.outcome, attempt.error_kind = "purchased", None
        except ShopStop as stop:
            attempt.outcome, attempt.error_kind = stop.outcome, stop.error_kind  # type: ignore[assignment]
        except TimeoutError:
            self._record_abandoned(visit, "attempt_timeout")
            attempt.outcome, attempt.error_kind = "failed", "attempt_timeout"
        except asyncio.CancelledError:
            self._record_abandoned(visit, "cancelled")
            raise
        finally:
            await client.aclose()

    async def cart_add(self, attempt: Attempt) -> CartAdd:
        """Only the first steps of a guest purchase: the event page and a cart add answered through pretix's celery
        task (the steady-state check that the shop's celery path works)."""
        buyer, _, item = self.plan(attempt)
        client = new_client(self.base_url, self.tls, headers=self.headers)
        v = _Visit(client, attempt, buyer, False, item, tagged_email(buyer.email, attempt.attempt_id))
        try:
            async with asyncio.timeout(self.max_attempt_seconds):
                await self._add_to_cart(v, self.event_path)
            return CartAdd(True)
        except ShopStop as stop:
            return CartAdd(False, stop.error_kind or stop.outcome, stop.detail)
        except TimeoutError:
            return CartAdd(False, "attempt_timeout")
        finally:
            await client.aclose()

    async def _add_to_cart(self, v: _Visit, event_url: str) -> str:
        """Event page, then the cart add and its poll; returns where pretix sends the buyer next (the cart)."""
        page = await self._get(v, "event_page", event_url)
        cart_form = find_form(page.text, lambda a: "cart/add" in a.get("action", ""))
        if cart_form is None:
            raise ShopStop("failed", "unexpected_page:event_page")
        key = f"item_{v.item}"
        if key not in cart_form.names():  # no quantity box: SOLD OUT, or Reserved (all that is left is in carts)
            box = item_availability(page.text, v.item)
            raise ShopStop("sold_out") if box in ("gone", "reserved") else ShopStop("failed", "item_not_offered")
        data = cart_form.data(**{key: "1", "ajax": "1"})
        return await self._async_task(v, "cart_add", "cart_poll", urljoin(event_url, cart_form.action), data,
                                      referer=event_url)

    async def _journey(self, v: _Visit) -> None:
        event_url = await self._login(v) if v.login else self.event_path
        redirect = await self._add_to_cart(v, event_url)
        await self._get(v, "cart", redirect)
        url = await self._redirect(v, "checkout_start", f"{self.event_path}checkout/start")
        for _ in range(MAX_CHECKOUT_PAGES):
            name = checkout_step(url)
            if name == "confirm":
                break
            fill = {"customer": self._customer, "questions": self._questions, "payment": self._payment}.get(name)
            if fill is None:  # add-ons, memberships or a plugin's step: not part of this lab's shop
                raise ShopStop("failed", f"unexpected_page:checkout_{name or 'start'}")
            page = await self._get(v, f"checkout_{name}_page", url)
            form = _post_form(page.text)
            if form is None:
                raise ShopStop("failed", f"unexpected_page:checkout_{name}_page")
            url = await self._redirect(v, f"checkout_{name}", url, data=fill(v, form), referer=url, post=True)
        else:
            raise ShopStop("failed", "checkout_loop")
        page = await self._get(v, "checkout_confirm_page", url)
        form = _post_form(page.text)
        if form is None or "data-asynctask" not in form.attrs:
            raise ShopStop("failed", "unexpected_page:checkout_confirm_page")
        boxes = {c["name"]: "yes" for c in form.controls if c["name"].startswith("confirm_")}
        redirect = await self._async_task(v, "confirm", "confirm_poll", urljoin(url, form.action or url),
                                          form.data(ajax="1", **boxes), referer=url)
        found = order_from_url(redirect)
        if found is None:
            raise ShopStop("failed", "unexpected_page:confirm_poll")
        v.attempt.order_code = found[0]  # the order exists from here on, whatever happens next
        if "/pay/" in redirect:
            redirect = await self._redirect(v, "payment_complete", redirect)
        page = await self._get(v, "order_page", redirect)
        if found[0] not in page.text:
            raise ShopStop("failed", "unexpected_page:order_page")
        v.attempt.confirmed_by = "response"  # the order page names the order (the shop has no lookup)

    async def _login(self, v: _Visit) -> str:
        url = f"{self.login_path}?next={self.event_path}"
        page = await self._get(v, "login_page", url)
        form = _post_form(page.text)
        if form is None or "email" not in form.names():
            raise ShopStop("failed", "unexpected_page:login_page")
        data = form.data(email=v.buyer.email, password=self.password(v.buyer))
        target = await self._redirect(v, "login", urljoin(url, form.action or url), data=data, referer=url, post=True,
                                      rejected="login_rejected")
        return target

    # -- checkout forms ------------------------------------------------------------------------------------
    def _customer(self, v: _Visit, form: Form) -> dict[str, str]:
        data = {k: val for k, val in form.fields if k == "csrfmiddlewaretoken"}
        data["customer_mode"] = "login" if v.login else "guest"
        return data

    def _questions(self, v: _Visit, form: Form) -> dict[str, str]:
        data = form.data()
        names = form.names()
        for key in ("email", "email_repeat"):
            control = form.control(key)
            if control is not None and "disabled" not in control:
                data[key] = v.email
        for name in names:  # attendee name (pre-filled for a customer): given name, family name
            if name.endswith("attendee_name_parts_0") and not data.get(name):
                rest = name[:-1] + "1"
                if rest in names and not data.get(rest):
                    data[name], _, data[rest] = v.buyer.name.partition(" ")
                else:
                    data[name] = v.buyer.name
        if "country" in names:  # the invoice address' country (a customer's page pre-selects none): Portugal
            data["country"] = self.country
        if "internal_reference" in names:
            data["internal_reference"] = attempt_reference(v.attempt.attempt_id)
            if data.get("transmission_type", "-") in ("-", ""):
                data["transmission_type"] = "email"
        return data

    def _payment(self, v: _Visit, form: Form) -> dict[str, str]:
        control = next((c for c in form.controls if c["name"] == "payment" and c.get("value") == "manual"), None)
        if control is None:
            raise ShopStop("failed", "no_payment_method")
        data = {k: val for k, val in form.fields if k == "csrfmiddlewaretoken"}
        data["payment"] = "manual"
        return data

    # -- requests ------------------------------------------------------------------------------------------
    async def _request(self, v: _Visit, step: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        request_id = self.stepper.new_request_id()
        v.current = (step, method, url, time.time(), request_id)
        kwargs["headers"] = {**(kwargs.get("headers") or {}), REQUEST_ID_HEADER: request_id}
        response, outcome, kind = await self.stepper.step(v.client, v.attempt, step, method, url, record_cut=False,
                                                          **kwargs)  # a cut request: _record_abandoned says why
        v.current = None
        if outcome == "sold_out":
            raise ShopStop("sold_out")
        if outcome == "queued":
            raise ShopStop("queued", kind)
        if outcome != "ok" or response is None:
            if response is not None and response.status_code == 403 and "csrf" in response.text.lower():
                kind = "csrf"
            raise ShopStop("failed", kind or "error")
        return response

    async def _get(self, v: _Visit, step: str, url: str) -> httpx.Response:
        response = await self._request(v, step, "GET", url)
        if response.status_code in (301, 302, 303):  # pretix sends a buyer back to a step it finds incomplete
            where = self._local(urljoin(url, response.headers.get("location", "")))
            raise ShopStop("failed", f"sent_back:{step}>{checkout_step(where) or 'shop'}", detail=where)
        if response.status_code != 200:
            raise ShopStop("failed", f"unexpected_page:{step}")
        return response

    async def _redirect(self, v: _Visit, step: str, url: str, *, data: dict[str, str] | None = None,
                        referer: str | None = None, post: bool = False, rejected: str | None = None) -> str:
        """A request that must answer 302: returns where it points (a 200 is the form again, with errors)."""
        kwargs: dict[str, Any] = {}
        if post:
            kwargs["data"] = data or {}
            kwargs["headers"] = self._post_headers(referer or url)
        response = await self._request(v, step, "POST" if post else "GET", url, **kwargs)
        location = response.headers.get("location")
        if response.status_code not in (301, 302, 303) or not location:
            if response.status_code == 200 and post:
                raise ShopStop("failed", rejected or f"form_rejected:{step}")
            raise ShopStop("failed", f"unexpected_page:{step}")
        return self._local(urljoin(url, location))

    def _post_headers(self, referer: str, ajax: bool = False) -> dict[str, str]:
        headers = {"Referer": urljoin(self.base_url + "/", referer), "Origin": self.base_url}
        if ajax:
            headers["X-Requested-With"] = "XMLHttpRequest"
            headers["Accept"] = "application/json, text/javascript, */*; q=0.01"
        return headers

    async def _async_task(self, v: _Visit, step: str, poll_step: str, url: str, data: dict[str, str], *,
                          referer: str) -> str:
        """POST with ajax=1, then poll check_url until ready, like pretix's asynctask.js. Returns the redirect."""
        response = await self._request(v, step, "POST", url, data=data, headers=self._post_headers(referer, True))
        state = self._json(response, step)
        delay = min(0.1, self.poll_interval)  # the browser checks 100 ms after the POST, then every 250 ms
        while not state.get("ready") and "success" not in state:
            check_url = state.get("check_url")
            if not check_url:
                raise ShopStop("failed", f"unexpected_page:{step}")
            if v.polls >= self.max_polls:
                raise ShopStop("failed", "max_polls")
            await asyncio.sleep(delay)
            delay = self.poll_interval
            v.polls += 1
            step = poll_step
            response = await self._request(v, poll_step, "GET", self._local(urljoin(url, check_url)),
                                           headers={"X-Requested-With": "XMLHttpRequest",
                                                    "Accept": "application/json"})
            state = {"check_url": check_url, **self._json(response, poll_step)}
        if not state.get("success"):
            message = str(state.get("message") or "")
            if is_sold_out_message(message):
                raise ShopStop("sold_out")
            low = message.lower()
            raise ShopStop("failed", "busy" if any(b in low for b in BUSY_MESSAGES) else f"task_failed:{step}",
                           detail=message[:300] or None)
        if not state.get("redirect"):
            raise ShopStop("failed", f"unexpected_page:{step}")
        return self._local(urljoin(url, state["redirect"]))

    def _local(self, url: str) -> str:
        """A path on this shop; an absolute URL elsewhere is never followed (the lab's network rule)."""
        if url.startswith(("http://", "https://")):
            if not (url == self.base_url or url.startswith(self.base_url + "/")):
                raise ShopStop("failed", "offsite_redirect")
            return url[len(self.base_url):] or "/"
        return url

    @staticmethod
    def _json(response: httpx.Response, step: str) -> dict[str, Any]:
        try:
            state = response.json()
        except ValueError:
            raise ShopStop("failed", f"unexpected_page:{step}") from None
        if not isinstance(state, dict):
            raise ShopStop("failed", f"unexpected_page:{step}")
        return state

    def _record_abandoned(self, v: _Visit, kind: str) -> None:
        """The request cut off by the attempt's deadline (or a cancel) still gets its row."""
        if v.current is None:
            return
        step, method, url, start, request_id = v.current
        v.current = None
        self.stepper.recorder.record(RequestRecord(
            attempt_id=v.attempt.attempt_id, buyer=v.attempt.buyer or str(v.attempt.buyer_index),
            journey=self.stepper.journey, step=step, method=method, url_path=_path_of(url),  # type: ignore[arg-type]
            scheduled=v.attempt.scheduled, start=start, end=time.time(), status=0, outcome="error",
            error_kind=kind, request_id=request_id,
        ))
