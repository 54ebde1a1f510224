"""Timed HTTP steps for journeys: every request becomes one RequestRecord, whatever happened to it.

A failed request is data (counted by step and error kind), never an exception that ends the run.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from lab.load.queue import QueueSettings, is_queued, pause_for
from lab.load.recorder import Recorder, RequestRecord
from lab.load.runner import Attempt

UPSTREAM_HEADER = "x-upstream-instance"
SOLD_OUT_MARKERS = ("not enough quota", "sold out", "esgotad", "no longer available", "não está disponível",
                    "já não estão disponíveis", "não estão mais disponíveis", "já não se encontra disponível",
                    "não há quota suficiente")


CLIENT_HEADER = "X-Lab-Client"  # each simulated buyer's own key for per-client admission control
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_PREFIX = "lab-"  # the proxy makes its own ids for requests without one (health checks): tells them apart


def classify(response: httpx.Response | None, error: BaseException | None) -> tuple[str, str | None]:
    """(outcome, error_kind) of one request: ok, sold_out, queued (told to retry later), or error with a kind."""
    if error is not None:
        if isinstance(error, httpx.TimeoutException):
            return "error", "timeout"
        if isinstance(error, httpx.ConnectError):
            return "error", "connect"
        if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return "error", "protocol"
        return "error", type(error).__name__
    assert response is not None
    code = response.status_code
    if is_queued(response):
        return "queued", None
    if code < 400:
        return "ok", None
    if code == 400 and any(m in response.text.lower() for m in SOLD_OUT_MARKERS):
        return "sold_out", None
    if code >= 500:
        return "error", "http_5xx"
    return "error", f"http_{code}"


@dataclass
class Stepper:
    """Runs and records the HTTP steps of one journey kind."""

    recorder: Recorder[RequestRecord]
    journey: str
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, connect=5.0))
    queue: QueueSettings = field(default_factory=QueueSettings)
    # every request id of this stepper (one run) starts with this: the proxy's log holds other runs' requests too
    id_prefix: str = field(default_factory=lambda: Stepper.new_prefix())

    @staticmethod
    def new_prefix() -> str:
        """A run's own request-id prefix (generator processes of one run share it)."""
        return f"{REQUEST_ID_PREFIX}{uuid.uuid4().hex[:8]}-"

    def new_request_id(self) -> str:
        return f"{self.id_prefix}{uuid.uuid4().hex}"

    async def step(
        self, client: httpx.AsyncClient, attempt: Attempt, step: str, method: str, url: str, *,
        retry: int = 0, idempotency_key: str | None = None, record_cut: bool = True, **kwargs: Any,
    ) -> tuple[httpx.Response | None, str, str | None]:
        """One request, recorded (also when cancellation cuts it, unless the journey records that itself, naming
        why: record_cut=False); a refusal by admission control is waited out as its Retry-After says.

        Returns (response, outcome, error_kind); outcome `queued` when the buyer gave up waiting.
        """
        kwargs["headers"] = {**(kwargs.get("headers") or {}), CLIENT_HEADER: attempt.attempt_id}
        while True:
            response, outcome, kind = await self._once(client, attempt, step, method, url, retry=retry,
                                                       idempotency_key=idempotency_key, record_cut=record_cut,
                                                       **kwargs)
            if outcome != "queued" or response is None:
                return response, outcome, kind
            attempt.queued += 1
            pause = pause_for(response, self.queue, attempt.queue_wait)
            if pause is None:
                return response, outcome, "queue_gave_up"
            await asyncio.sleep(pause)
            attempt.queue_wait += pause

    async def _once(
        self, client: httpx.AsyncClient, attempt: Attempt, step: str, method: str, url: str, *,
        retry: int = 0, idempotency_key: str | None = None, record_cut: bool = True, **kwargs: Any,
    ) -> tuple[httpx.Response | None, str, str | None]:
        """One request, timed from the wall clock and recorded (also when it is cancelled: the proxy logs those
        too, as 499, and the two histories must agree). Its X-Request-Id is the proxy's request_id."""
        headers = kwargs.get("headers") or {}
        request_id = headers.get(REQUEST_ID_HEADER) or self.new_request_id()  # a journey may name it (to record
        # a cut request with its own reason)
        kwargs["headers"] = {**headers, REQUEST_ID_HEADER: request_id}
        start = time.time()
        response: httpx.Response | None = None
        error: BaseException | None = None
        try:
            response = await client.request(method, url, timeout=self.timeout, **kwargs)
        except httpx.HTTPError as caught:
            error = caught
        except asyncio.CancelledError:
            if not record_cut:
                raise
            self.recorder.record(RequestRecord(
                attempt_id=attempt.attempt_id, buyer=attempt.buyer or str(attempt.buyer_index),
                journey=self.journey, step=step, method=method, url_path=httpx.URL(url).path,
                scheduled=attempt.scheduled, start=start, end=time.time(), outcome="error", error_kind="cancelled",
                idempotency_key=idempotency_key, retry=retry, request_id=request_id))
            raise
        end = time.time()
        outcome, kind = classify(response, error)
        order_code = None
        if response is not None and response.status_code in (200, 201) and method == "POST" and step == "order":
            try:
                order_code = response.json().get("code")
            except ValueError:
                order_code = None
        self.recorder.record(RequestRecord(
            attempt_id=attempt.attempt_id, buyer=attempt.buyer or str(attempt.buyer_index), journey=self.journey,
            step=step, method=method, url_path=httpx.URL(url).path, scheduled=attempt.scheduled,
            start=start, end=end, status=response.status_code if response is not None else 0,
            outcome=outcome, error_kind=kind, order_code=order_code, idempotency_key=idempotency_key,
            upstream=response.headers.get(UPSTREAM_HEADER) if response is not None else None,
            retry=retry, bytes=len(response.content) if response is not None else 0, request_id=request_id,
        ))
        return response, outcome, kind


def new_client(base_url: str, tls: ssl.SSLContext, **kwargs: Any) -> httpx.AsyncClient:
    """One client per buyer (a shared httpx client slows down as concurrency rises: encode/httpx#3215)."""
    return httpx.AsyncClient(base_url=base_url, verify=tls, http2=False, **kwargs)
