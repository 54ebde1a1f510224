"""How a buyer in front of admission control behaves: told to wait (429/503 + Retry-After), it waits and retries.

A browser page in a queue does this (a meta refresh, or the queue page's script): it honours the server's
Retry-After, comes back, and gives up after a while. The buyer's time in the queue is recorded on the attempt
(`queued`: refusals seen, `queue_wait`: seconds waited); a buyer who gives up ends with the outcome `queued`.
"""

from __future__ import annotations

import email.utils
import time

import httpx
from pydantic import BaseModel, ConfigDict, Field

QUEUE_STATUSES = (429, 503)


class QueueSettings(BaseModel):
    """How long simulated buyers wait in a queue; `max_wait: 0` means a refusal ends the attempt at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    honour_retry_after: bool = Field(default=True, description="wait and retry when told to (else give up at once)")
    max_wait: float = Field(default=60.0, ge=0, le=1800, description="seconds a buyer waits in all before giving up")
    default_wait: float = Field(default=2.0, gt=0, le=300,
                                description="seconds to wait when a refusal says no readable Retry-After")
    max_retry_after: float = Field(default=60.0, gt=0, le=1800, description="cap on one Retry-After")

    def waits(self) -> bool:
        return self.honour_retry_after and self.max_wait > 0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After value: delta-seconds ("2") or an HTTP-date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_queued(response: httpx.Response | None) -> bool:
    """An admission refusal: 429 or 503 that says when to come back (RFC 9110 Retry-After)."""
    return (response is not None and response.status_code in QUEUE_STATUSES
            and "retry-after" in response.headers)


def pause_for(response: httpx.Response, settings: QueueSettings, waited: float) -> float | None:
    """Seconds to wait before the next try, or None when the buyer gives up (no time left to wait)."""
    if not settings.waits() or waited >= settings.max_wait:
        return None
    told = parse_retry_after(response.headers.get("retry-after"))
    pause = settings.default_wait if told is None else min(told, settings.max_retry_after)
    return min(pause, settings.max_wait - waited)


__all__ = ["QUEUE_STATUSES", "QueueSettings", "is_queued", "parse_retry_after", "pause_for"]
