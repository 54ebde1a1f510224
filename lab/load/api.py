"""The `api` purchase journey: one order through pretix's REST API, retried safely with an idempotency key.

Retries reuse the attempt's X-Idempotency-Key, so a retry after a timeout returns the order the first
try made (pretix answers 409 while that first try is still running) instead of making a second one.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import ssl
import time
from collections.abc import Sequence

import httpx

from lab.buyers import Buyer
from lab.load.http import Stepper, new_client
from lab.load.runner import Attempt

RETRYABLE = {"timeout", "connect", "protocol", "http_409", "http_5xx"}  # kinds as lab.load.http.classify names them


class ApiJourney:
    """Async callable for the load runner; use as `async with ApiJourney(...) as journey`."""

    def __init__(self, base_url: str, tls: ssl.SSLContext, api_token: str, organizer: str, event: str,
                 stepper: Stepper, buyers: Sequence[Buyer], item_weights: dict[int, float], *,
                 clients: int = 16, max_retries: int = 5, retry_budget: float = 45.0, seed: int = 0,
                 extra_headers: dict[str, str] | None = None):
        if not buyers:
            raise ValueError("the api journey needs at least one buyer (seed customers first)")
        if not item_weights:
            raise ValueError("item_weights is empty: name at least one item id to buy")
        self.base_url, self.tls, self.stepper = base_url, tls, stepper
        self.path = f"/api/v1/organizers/{organizer}/events/{event}/orders/"
        self.headers = {"Authorization": f"Token {api_token}", **(extra_headers or {})}
        self.buyers = buyers
        self.items, self.weights = list(item_weights), list(item_weights.values())
        self.max_retries, self.retry_budget = max_retries, retry_budget
        self.random = random.Random(seed)
        self._pool: list[httpx.AsyncClient] = []
        self._clients = clients
        self._next = itertools.count()

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
        headers = {"X-Idempotency-Key": attempt.idempotency_key}
        deadline = time.monotonic() + self.retry_budget
        for retry in range(self.max_retries + 1):
            response, outcome, kind = await self.stepper.step(
                client, attempt, "order", "POST", self.path, retry=retry,
                idempotency_key=attempt.idempotency_key, json=body, headers=headers)
            attempt.retries = retry
            if response is not None and response.status_code == 201:
                attempt.outcome, attempt.order_code = "purchased", response.json()["code"]
                return
            if outcome == "sold_out":
                attempt.outcome = "sold_out"
                return
            attempt.error_kind = kind
            if kind not in RETRYABLE or retry == self.max_retries:
                break
            pause = min(0.25 * 2**retry, 4.0) * (0.5 + self.random.random())
            if time.monotonic() + pause >= deadline:
                break
            await asyncio.sleep(pause)
        attempt.outcome = "failed"
