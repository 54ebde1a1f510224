"""The `api` purchase journey: one order through pretix's REST API, retried safely with an idempotency key.

Retries reuse the attempt's X-Idempotency-Key, so a retry after a timeout returns the order the first
try made (pretix answers 409 while that first try is still running) instead of making a second one.

A key can stay locked for good: pretix stores the key as "locked" before the view runs and unlocks it when the
response is saved, so a web process killed in between (SIGKILL, OOM, a failover that cut its connection) leaves
every later try with 409. After `stuck_key_after` seconds of nothing but 409, the journey looks the order up by
the attempt id it wrote in the order's comment: found -> that is the purchase; not found -> the original request
is dead (no live pretix request runs that long: gunicorn kills a worker after 60 s, an order takes < 2 s even at
saturation), so the attempt goes on under a new key. The trade-off is stated, not hidden: a request held longer
than that (an instance paused for longer) could still commit later, and the audit would count that as a duplicate.

A 5xx can come AFTER the order committed: pretix's metrics middleware writes redis after the view, so with redis
failing over the response is a 500 for an order that exists, and pretix drops the idempotency record of a 5xx, so a
retry under the same key would make a second order. After a 5xx the journey therefore looks the order up by its
attempt id before it posts again (step `order_check`); when the lookup itself cannot answer, it asks again after the
back-off instead of posting blind.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import ssl
import time
from collections.abc import Sequence
from urllib.parse import quote

import httpx

from lab.load.http import Stepper, new_client
from lab.load.journey import Journey, JourneySetting, journeys
from lab.load.runner import Attempt
from lab.pretix.buyers import Buyer

RETRYABLE = {"timeout", "connect", "protocol", "http_409", "http_5xx"}  # kinds as lab.load.http.classify names them
CHECK_FIRST = {"http_5xx"}  # the order may exist although the answer was an error: look before posting again
MAX_LOOKUP_PAGES = 5
RETRY_AFTER_CAP = 5.0  # seconds: pretix's 409 says Retry-After: 5


def retry_after(response: httpx.Response | None) -> float | None:
    """The server's Retry-After in seconds (delta-seconds form only), capped; None when absent or unreadable."""
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_CAP) if value is not None else None
    except ValueError:
        return None


@journeys.register("api")
class ApiJourney(Journey):
    """Async callable for the load runner; use as `async with ApiJourney(...) as journey`."""

    def __init__(self, base_url: str, tls: ssl.SSLContext, api_token: str, organizer: str, event: str,
                 stepper: Stepper, buyers: Sequence[Buyer], item_weights: dict[int, float], *,
                 clients: int = 16, max_retries: int = 12, retry_budget: float = 45.0, seed: int = 0,
                 stuck_key_after: float = 20.0, extra_headers: dict[str, str] | None = None):
        if not buyers:
            raise ValueError("the api journey needs at least one buyer (seed customers first)")
        if not item_weights:
            raise ValueError("item_weights is empty: name at least one item id to buy")
        self.base_url, self.tls, self.stepper = base_url, tls, stepper
        self.path = f"/api/v1/organizers/{organizer}/events/{event}/orders/"
        self.headers = {"Authorization": f"Token {api_token}", **(extra_headers or {})}
        self.buyers = buyers
        self.items, self.weights = list(item_weights), list(item_weights.values())
        self.max_retries, self.retry_budget, self.stuck_key_after = max_retries, retry_budget, stuck_key_after
        self.random = random.Random(seed)
        self._pool: list[httpx.AsyncClient] = []
        self._clients = clients
        self._next = itertools.count()

    @classmethod
    def build(cls, setting: JourneySetting) -> ApiJourney:
        return cls(setting.base_url, setting.tls, setting.api_token, setting.organizer, setting.event,
                   setting.stepper, setting.buyers, setting.item_weights, extra_headers=setting.extra_headers)

    async def __aenter__(self) -> ApiJourney:
        # A small pool of clients: one shared client slows down under concurrency (encode/httpx#3215).
        self._pool = [new_client(self.base_url, self.tls, headers=self.headers,
                                 limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))
                      for _ in range(self._clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(c.aclose() for c in self._pool), return_exceptions=True)

    def body(self, attempt: Attempt, buyer: Buyer) -> dict:
        item = self.random.choices(self.items, self.weights)[0]
        return {
            "email": buyer.email, "locale": "pt-pt", "customer": buyer.identifier,
            "payment_provider": "manual", "comment": f"lab-attempt {attempt.attempt_id}",
            "positions": [{"item": item}],
        }

    async def __call__(self, attempt: Attempt) -> None:
        buyer = self.buyers[attempt.buyer_index % len(self.buyers)]
        attempt.buyer = buyer.identifier
        client = self._pool[next(self._next) % len(self._pool)]
        body = self.body(attempt, buyer)
        # what the audit expects: this item, this many positions, the buyer's customer account
        attempt.item, attempt.count, attempt.guest = body["positions"][0]["item"], len(body["positions"]), False
        key, keys_used = attempt.idempotency_key, 1
        deadline = time.monotonic() + self.retry_budget
        conflict_since: float | None = None  # when the current key's unbroken run of 409s began
        check_first = False  # the last answer was a 5xx: is the order there already?
        for retry in range(self.max_retries + 1):
            if check_first:
                found = await self.adopt_order(client, attempt, buyer, retry, step="order_check")
                if found:
                    return
                check_first = found is None  # the lookup could not answer: ask again before any new POST
            if not check_first:
                response, outcome, kind = await self.stepper.step(
                    client, attempt, "order", "POST", self.path, retry=retry,
                    idempotency_key=key, json=body, headers={"X-Idempotency-Key": key})
                attempt.retries = retry
                if response is not None and response.status_code == 201:
                    attempt.outcome, attempt.order_code = "purchased", response.json()["code"]
                    attempt.confirmed_by = "response"
                    return
                if outcome == "sold_out":
                    attempt.outcome = "sold_out"
                    return
                if outcome == "queued":  # still refused by admission control when the buyer's patience ran out
                    attempt.outcome, attempt.error_kind = "queued", kind
                    return
                attempt.error_kind = kind
                if kind not in RETRYABLE or retry == self.max_retries:
                    # the last word was a 5xx: the order may still be there
                    if kind in CHECK_FIRST and await self.adopt_order(client, attempt, buyer, retry,
                                                                      step="order_check"):
                        return
                    break
                check_first = kind in CHECK_FIRST
                if kind == "http_409":
                    conflict_since = conflict_since or time.monotonic()
                    if time.monotonic() - conflict_since >= self.stuck_key_after:
                        adopted = await self.adopt_order(client, attempt, buyer, retry)
                        if adopted:
                            return
                        if adopted is False:  # pretix says the old key holds no order: a new key is safe
                            keys_used += 1
                            key, conflict_since = f"{attempt.idempotency_key}.{keys_used}", None  # rows keep theirs
                            continue  # try the new one at once
                        # the lookup could not answer: keep the key (a new one could buy twice), ask again later
                else:
                    conflict_since = None
            else:
                response = None
            pause = max(min(0.25 * 2**retry, 4.0) * (0.5 + self.random.random()), retry_after(response) or 0.0)
            if time.monotonic() + pause >= deadline:
                # out of time right after a 5xx: the order may be there (the same check as after the last try)
                if check_first and await self.adopt_order(client, attempt, buyer, retry, step="order_check"):
                    return
                break
            await asyncio.sleep(pause)
        attempt.outcome = "failed"

    async def adopt_order(self, client: httpx.AsyncClient, attempt: Attempt, buyer: Buyer, retry: int,
                          step: str = "order_lookup") -> bool | None:
        """Look the attempt's order up and, when it exists, make it the purchase (outcome and order code).

        The one place for the three moments the journey asks "did an earlier try already buy?" (after a 5xx,
        before posting again; after the last try; on a stuck key). Returns True when adopted, False when pretix
        answered that there is none, None when the lookup could not answer.
        """
        found, code = await self.lookup(client, attempt, buyer, retry, step=step)
        if code is not None:
            attempt.outcome, attempt.order_code, attempt.confirmed_by = "purchased", code, "lookup"
            return True
        return None if found is None else False

    async def lookup(self, client: httpx.AsyncClient, attempt: Attempt, buyer: Buyer, retry: int,
                     step: str = "order_lookup") -> tuple[bool | None, str | None]:
        """(found, order code) by the attempt id in the order's comment: (True, code), (False, None) when pretix
        answered and there is none, (None, None) when the lookup itself failed (nothing is known)."""
        url: str | None = f"{self.path}?email={quote(buyer.email)}&ordering=-datetime"
        marker = f"lab-attempt {attempt.attempt_id}"
        for _ in range(MAX_LOOKUP_PAGES):
            if url is None:
                return False, None
            response, outcome, _kind = await self.stepper.step(client, attempt, step, "GET", url, retry=retry)
            if response is None or outcome != "ok":
                return None, None
            page = response.json()
            for order in page.get("results", []):
                if (order.get("comment") or "").strip() == marker:
                    return True, order["code"]
            url = page.get("next")
        return None, None  # more pages than we read: not known
