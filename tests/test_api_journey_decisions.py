"""The api journey's decisions against a scripted pretix (httpx.MockTransport), without a stack.

Each test scripts pretix's answers to the order POST and to the order lookup (GET by e-mail, matched by the
attempt id in the comment) and checks what the journey decided: the attempt's outcome and order code, how many
POSTs and lookups it made, which idempotency keys it sent, and whether the purchase was confirmed by the POST's
own 201 (step `order`) or by a lookup (`order_check` after a 5xx, `order_lookup` on a stuck key).
The journey's clock and sleeps are virtual, so the stuck-key clock and the retry budget run without waiting;
no test asserts a measured timing or rate.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pandas as pd
import pytest

import lab.load.api as api
import lab.load.http as http
from lab.load.api import RETRY_AFTER_CAP, ApiJourney
from lab.load.http import Stepper
from lab.load.queue import QueueSettings
from lab.load.recorder import Recorder, read_attempts, read_requests
from lab.load.runner import Attempt, RunEvent, attempts_to
from lab.pretix.buyers import Buyer

BASE = "https://pretix.test"
ORDERS = "/api/v1/organizers/org/events/ev/orders/"
ATTEMPT_ID = "att-0001"
MARKER = f"lab-attempt {ATTEMPT_ID}"
CODE = "ABC12"
BUYER = Buyer(identifier="CUST1", email="ana+lab@pretix-lab.invalid", name="Ana", has_password=False)
MAX_RETRIES = inspect.signature(ApiJourney).parameters["max_retries"].default  # the bound the journey ships with
QUOTA = 'There is not enough quota available on quota "Tickets" to perform the operation.'

Answer = Callable[[httpx.Request], httpx.Response]


# ------------------------------------------------------------------------------------------- scripted answers

def created(code: str = CODE) -> Answer:
    return lambda request: httpx.Response(201, json={"code": code, "status": "n", "comment": MARKER})


def answer(status: int, detail: str = "error", retry_after: str | None = None) -> Answer:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return lambda request: httpx.Response(status, json={"detail": detail}, headers=headers)


def raising(error: type[httpx.TransportError]) -> Answer:
    """No answer at all: the transport raises, as httpx does on a read timeout or a cut connection."""
    def fail(request: httpx.Request) -> httpx.Response:
        raise error("scripted", request=request)
    return fail


def page(*orders: dict[str, Any], next_url: str | None = None) -> Answer:
    return lambda request: httpx.Response(200, json={"count": len(orders), "next": next_url,
                                                     "results": list(orders)})


IN_PROGRESS = answer(409, "Concurrent request with idempotency key.", retry_after="5")  # pretix's own 409
# near misses: another attempt whose id starts like ours, no comment, someone else's attempt
OTHERS = ({"code": "OTHER1", "comment": f"{MARKER}0"}, {"code": "OTHER2", "comment": None},
          {"code": "OTHER3", "comment": "lab-attempt att-0002"})
NOT_FOUND = page(*OTHERS)


def found(code: str = CODE) -> Answer:
    return page(*OTHERS, {"code": code, "comment": f" {MARKER}\n"})  # pretix may keep surrounding whitespace


def stuck_key(then: Answer) -> Answer:
    """409 for the attempt's own key for ever (its request died holding the lock); `then` for any new key."""
    return lambda request: (IN_PROGRESS if request.headers["X-Idempotency-Key"] == ATTEMPT_ID else then)(request)


@dataclass
class FakePretix:
    """Answers POSTs and lookups from two scripts, in order; the last answer of a script repeats for ever."""

    posts: list[Answer]
    lookups: list[Answer]
    seen: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        assert request.url.path == ORDERS and request.headers["Authorization"] == "Token secret"
        script = self.posts if request.method == "POST" else self.lookups
        assert script, f"unscripted {request.method} {request.url}"
        return (script.pop(0) if len(script) > 1 else script[0])(request)


class VirtualTime:
    """The journey's monotonic clock and sleeps: a sleep only moves the clock on."""

    def __init__(self) -> None:
        self.now = 1000.0  # not 0.0: the journey keeps "no 409 yet" as a falsy start time
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Run:
    """What one attempt did, as pretix saw it and as the lab recorded it."""

    attempt: Attempt
    pretix: FakePretix
    requests: pd.DataFrame  # requests.parquet rows written by the Stepper
    row: dict[str, Any]  # the attempts.parquet row the runner writes for it

    @property
    def posts(self) -> list[httpx.Request]:
        return [r for r in self.pretix.seen if r.method == "POST"]

    @property
    def lookups(self) -> list[httpx.Request]:
        return [r for r in self.pretix.seen if r.method == "GET"]

    @property
    def keys(self) -> list[str]:
        return [r.headers["X-Idempotency-Key"] for r in self.posts]

    @property
    def confirmed_by(self) -> str:
        """The step of the last request: the journey stops on the answer that settled the attempt."""
        return str(self.requests["step"].iloc[-1])

    def assert_one_key(self) -> None:
        assert self.keys and set(self.keys) == {ATTEMPT_ID}
        assert len({r.content for r in self.posts}) == 1  # every retry sends the same order


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    virtual = VirtualTime()
    monkeypatch.setattr(api, "time", SimpleNamespace(monotonic=virtual.monotonic))
    monkeypatch.setattr(api, "asyncio", SimpleNamespace(sleep=virtual.sleep, gather=asyncio.gather))
    monkeypatch.setattr(http, "asyncio", SimpleNamespace(sleep=virtual.sleep))  # admission-queue waits
    return virtual


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: VirtualTime) -> Callable[..., Run]:
    """Runs one attempt of the real ApiJourney against a FakePretix; the seam is lab.load.api.new_client."""
    runs = count()

    def go(posts: Iterable[Answer], lookups: Iterable[Answer] = (), *, queue: QueueSettings | None = None,
           **options: Any) -> Run:
        pretix = FakePretix(list(posts), list(lookups))
        monkeypatch.setattr(api, "new_client", lambda base_url, tls, **kwargs: httpx.AsyncClient(
            base_url=base_url, transport=httpx.MockTransport(pretix.handle), **kwargs))
        folder = tmp_path / f"run{next(runs)}"
        requests, attempts = Recorder.requests(folder, "t"), Recorder.attempts(folder, "t")
        stepper = Stepper(requests, "api", queue=queue or QueueSettings())
        attempt = Attempt(ATTEMPT_ID, 0, scheduled=0.0)

        async def buy() -> None:
            async with ApiJourney(BASE, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), "secret", "org", "ev", stepper,
                                  [BUYER], {7: 1.0}, clients=1, **options) as journey:
                await journey(attempt)

        asyncio.run(buy())
        attempts_to(attempts, "api")(RunEvent("completed", attempt))
        requests.close()
        attempts.close()
        return Run(attempt, pretix, read_requests(folder), read_attempts(folder).iloc[0].to_dict())

    return go


# ------------------------------------------------------------------------------------------------------ cases

def test_201_at_once_is_a_purchase_confirmed_by_the_response(shop: Callable[..., Run]) -> None:
    run = shop([created()])
    assert (run.attempt.outcome, run.attempt.order_code, run.attempt.retries) == ("purchased", CODE, 0)
    assert len(run.posts) == 1 and not run.lookups and run.confirmed_by == "order"
    run.assert_one_key()
    sent = json.loads(run.posts[0].content)
    assert (sent["comment"], sent["customer"], sent["positions"]) == (MARKER, BUYER.identifier, [{"item": 7}])
    assert run.requests["order_code"].tolist() == [CODE]
    assert (run.row["outcome"], run.row["order_code"], run.row["idempotency_key"]) == ("purchased", CODE,
                                                                                       ATTEMPT_ID)


def test_409_still_in_progress_then_201_reuses_the_key(shop: Callable[..., Run]) -> None:
    """The first try still holds the key: the retry under the same key gets that try's order, not a new one."""
    run = shop([IN_PROGRESS, IN_PROGRESS, created()])
    assert (run.attempt.outcome, run.attempt.order_code, run.attempt.retries) == ("purchased", CODE, 2)
    assert len(run.posts) == 3 and not run.lookups and run.confirmed_by == "order"
    run.assert_one_key()
    assert run.requests["error_kind"].tolist()[:2] == ["http_409", "http_409"]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_after_commit_adopts_the_order_the_lookup_finds(shop: Callable[..., Run], status: int) -> None:
    """A 5xx can follow a committed order: look before posting again, and never make a second order."""
    run = shop([answer(status), created("SECOND")], [found()])
    assert (run.attempt.outcome, run.attempt.order_code, run.attempt.retries) == ("purchased", CODE, 0)
    assert len(run.posts) == 1 and len(run.lookups) == 1 and run.confirmed_by == "order_check"
    run.assert_one_key()
    query = run.lookups[0].url.params
    assert query["email"] == BUYER.email and query["ordering"] == "-datetime"
    assert run.row["order_code"] == CODE


def test_5xx_with_no_order_found_posts_again_under_the_same_key(shop: Callable[..., Run]) -> None:
    run = shop([answer(500), created()], [NOT_FOUND])
    assert (run.attempt.outcome, run.attempt.order_code, run.attempt.retries) == ("purchased", CODE, 1)
    assert len(run.posts) == 2 and len(run.lookups) == 1 and run.confirmed_by == "order"
    assert [r.method for r in run.pretix.seen] == ["POST", "GET", "POST"]
    run.assert_one_key()


def test_5xx_then_a_failed_lookup_asks_again_instead_of_posting_blind(shop: Callable[..., Run]) -> None:
    run = shop([answer(500), created("SECOND")], [answer(502), raising(httpx.ReadTimeout), found()])
    assert (run.attempt.outcome, run.attempt.order_code) == ("purchased", CODE)
    assert [r.method for r in run.pretix.seen] == ["POST", "GET", "GET", "GET"]


def test_the_lookup_follows_pages_to_the_order(shop: Callable[..., Run]) -> None:
    second = f"{BASE}{ORDERS}?email=x&ordering=-datetime&page=2"
    run = shop([answer(500)], [page(*OTHERS, next_url=second), found()])
    assert (run.attempt.outcome, run.attempt.order_code) == ("purchased", CODE)
    assert [str(r.url) for r in run.lookups][1] == second and len(run.posts) == 1


def test_5xx_on_the_last_try_still_looks_for_the_order(shop: Callable[..., Run]) -> None:
    """Out of tries after a 5xx: the order may exist, so the journey looks once more before it gives up."""
    run = shop([answer(500)], [NOT_FOUND, found()], max_retries=1)
    assert (run.attempt.outcome, run.attempt.order_code, run.attempt.retries) == ("purchased", CODE, 1)
    assert [r.method for r in run.pretix.seen] == ["POST", "GET", "POST", "GET"]
    failed = shop([answer(500)], [NOT_FOUND], max_retries=1)
    assert (failed.attempt.outcome, failed.attempt.error_kind, failed.row["outcome"]) == ("failed", "http_5xx",
                                                                                          "failed")
    assert len(failed.posts) == 2 and len(failed.lookups) == 2 and failed.attempt.order_code is None


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectError, httpx.RemoteProtocolError])
def test_no_answer_is_retried_under_the_same_key_without_a_lookup(shop: Callable[..., Run],
                                                                  error: type[httpx.TransportError]) -> None:
    """A lost answer is retried under the same key: pretix replays a finished order's 201 (not a 5xx: no look)."""
    run = shop([raising(error), created()])
    assert (run.attempt.outcome, run.attempt.order_code, run.attempt.retries) == ("purchased", CODE, 1)
    assert len(run.posts) == 2 and not run.lookups and run.confirmed_by == "order"
    run.assert_one_key()
    assert run.requests["status"].tolist() == [0, 201]


def test_timeout_then_a_stuck_key_adopts_the_order_the_lookup_finds(shop: Callable[..., Run]) -> None:
    """The timed-out request died holding its key: after the stuck-key clock, the lookup finds its order."""
    run = shop([raising(httpx.ReadTimeout), stuck_key(created("SECOND"))], [found()])
    assert (run.attempt.outcome, run.attempt.order_code) == ("purchased", CODE)
    assert len(run.lookups) == 1 and run.confirmed_by == "order_lookup" and len(run.posts) >= 3
    run.assert_one_key()
    assert run.pretix.seen[-1].method == "GET"  # nothing posted after the order was found


def test_timeout_then_a_stuck_key_with_no_order_goes_on_under_a_new_key(shop: Callable[..., Run]) -> None:
    run = shop([raising(httpx.ReadTimeout), stuck_key(created())], [NOT_FOUND])
    assert (run.attempt.outcome, run.attempt.order_code) == ("purchased", CODE)
    assert len(run.lookups) == 1 and run.confirmed_by == "order"
    *old, new = run.keys
    assert len(old) >= 3 and set(old) == {ATTEMPT_ID} and new == f"{ATTEMPT_ID}.2"
    methods = [r.method for r in run.pretix.seen]
    assert methods[-2:] == ["GET", "POST"]  # the new key is used only after the lookup said "none"
    assert run.row["idempotency_key"] == ATTEMPT_ID  # the attempt row keeps the attempt's own key


@pytest.mark.parametrize("message", [QUOTA, "Não há quota suficiente disponível."])
def test_sold_out_ends_the_attempt_at_once(shop: Callable[..., Run], clock: VirtualTime, message: str) -> None:
    run = shop([answer(400, message)])
    assert (run.attempt.outcome, run.attempt.order_code, run.attempt.error_kind) == ("sold_out", None, None)
    assert len(run.posts) == 1 and not run.lookups and not clock.pauses
    assert run.requests["outcome"].tolist() == ["sold_out"] and run.row["outcome"] == "sold_out"


@pytest.mark.parametrize(("status", "kind"), [(400, "http_400"), (403, "http_403"), (404, "http_404")])
def test_other_client_errors_fail_without_retry(shop: Callable[..., Run], status: int, kind: str) -> None:
    """A 4xx that is not sold out will not change on a retry: fail at once, nothing looked up."""
    run = shop([answer(status, "The product does not exist."), created()])
    assert (run.attempt.outcome, run.attempt.error_kind, run.attempt.order_code) == ("failed", kind, None)
    assert len(run.posts) == 1 and not run.lookups and run.row["error_kind"] == kind


def test_409_for_ever_fails_after_the_bounded_number_of_tries(shop: Callable[..., Run]) -> None:
    """With the stuck-key clock and the time budget out of reach, max_retries is the bound: 1 try + N retries."""
    run = shop([IN_PROGRESS], stuck_key_after=1e9, retry_budget=1e9)
    assert MAX_RETRIES == 12
    assert (run.attempt.outcome, run.attempt.error_kind, run.attempt.retries) == ("failed", "http_409",
                                                                                  MAX_RETRIES)
    assert len(run.posts) == MAX_RETRIES + 1 and not run.lookups
    run.assert_one_key()


def test_409_for_ever_under_every_key_fails_within_the_retry_budget(shop: Callable[..., Run]) -> None:
    """Shipped settings: each stuck key is looked up before the next key; the budget ends the attempt."""
    run = shop([IN_PROGRESS], [NOT_FOUND])
    assert (run.attempt.outcome, run.attempt.error_kind, run.attempt.order_code) == ("failed", "http_409", None)
    distinct = list(dict.fromkeys(run.keys))
    assert distinct[:2] == [ATTEMPT_ID, f"{ATTEMPT_ID}.2"] and len(run.lookups) == len(distinct) - 1
    assert len(run.posts) < MAX_RETRIES + 1  # the budget, not max_retries, ended it
    for before, after in zip(run.pretix.seen, run.pretix.seen[1:], strict=False):  # a key changes only after a GET
        if before.method == after.method == "POST":
            assert before.headers["X-Idempotency-Key"] == after.headers["X-Idempotency-Key"]


def test_retry_after_of_a_409_sets_the_wait_capped(shop: Callable[..., Run], clock: VirtualTime) -> None:
    """The server's Retry-After outranks the short back-off (a decision on the wait, not a measured time)."""
    run = shop([answer(409, retry_after="600"), created()])
    assert run.attempt.outcome == "purchased" and clock.pauses == [RETRY_AFTER_CAP]


@pytest.mark.parametrize("status", [429, 503])
def test_an_admission_refusal_is_waited_out_under_the_same_key(shop: Callable[..., Run], status: int) -> None:
    """429/503 with Retry-After is a queue, not a 5xx after commit: wait, post again, no lookup."""
    run = shop([answer(status, retry_after="2"), created()])
    assert (run.attempt.outcome, run.attempt.order_code, run.attempt.retries) == ("purchased", CODE, 0)
    assert run.attempt.queued == 1 and len(run.posts) == 2 and not run.lookups
    run.assert_one_key()
    assert run.requests["outcome"].tolist() == ["queued", "ok"]


def test_a_buyer_who_will_not_queue_ends_queued(shop: Callable[..., Run]) -> None:
    run = shop([answer(429, retry_after="2"), created()], queue=QueueSettings(honour_retry_after=False))
    assert (run.attempt.outcome, run.attempt.error_kind, run.attempt.queued) == ("queued", "queue_gave_up", 1)
    assert len(run.posts) == 1 and not run.lookups and run.row["outcome"] == "queued"


# ------------------------------------------------------------------------------- gaps found, then mended

def test_a_5xx_as_the_budget_runs_out_still_looks_for_the_order(shop: Callable[..., Run]) -> None:
    run = shop([answer(500)], [found()], retry_budget=0.01)
    assert (run.attempt.outcome, run.attempt.order_code) == ("purchased", CODE)


def test_a_stuck_key_is_only_replaced_after_a_lookup_that_answered(shop: Callable[..., Run]) -> None:
    run = shop([stuck_key(created("SECOND"))], [answer(500), NOT_FOUND])
    rows = run.requests
    first_new = rows.index[rows["idempotency_key"] == f"{ATTEMPT_ID}.2"][0]
    before = rows.loc[first_new - 1]
    assert (before["step"], before["status"]) == ("order_lookup", 200)
