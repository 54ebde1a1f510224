"""Journeys described as plain data, so another process can build its own copy (lab.load.fanout).

A journey holds what cannot cross a process boundary (a TLS context, open clients, the recorder it writes to), so
a generator process gets a recipe instead and builds the journey itself, around its own recorder. A recipe is a
picklable dataclass with `build(requests) -> journey`.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from lab.load.http import Stepper, new_client
from lab.load.queue import QueueSettings

if TYPE_CHECKING:
    from lab.load.journey import Journey
    from lab.load.recorder import Recorder, RequestRecord
    from lab.load.runner import Attempt
    from lab.pretix.buyers import Buyer


class JourneyRecipe(Protocol):
    """What a generator process needs to build the journey it runs (picklable)."""

    name: str

    def build(self, requests: Recorder[RequestRecord] | None) -> Any:
        """The journey (an async callable, maybe an async context manager), recording into `requests`."""
        ...


def _tls(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


@dataclass(frozen=True)
class RunJourney:
    """A registered journey (api, shop, ...) as a run builds it (lab.experiments.run.execute): JourneySetting's
    fields, with the CA file instead of its TLS context and the run's request-id prefix, so every process's requests
    carry one prefix and the run still lines up with the proxy's log."""

    name: str
    base_url: str
    ca_file: str
    organizer: str
    event: str
    buyers: Sequence[Buyer] = field(repr=False)
    item_weights: dict[int, float]
    id_prefix: str
    api_token: str = field(default="", repr=False)
    buyer_secret: str = field(default="", repr=False)
    login_share: float = 0.2
    queue: QueueSettings = field(default_factory=QueueSettings)

    def build(self, requests: Recorder[RequestRecord] | None) -> Journey:
        from lab.load.journey import JourneySetting, build_journey

        if requests is None:
            raise ValueError(f"the {self.name} journey records its requests: it needs a recorder")
        stepper = Stepper(requests, self.name, queue=self.queue, id_prefix=self.id_prefix)
        return build_journey(self.name, JourneySetting(
            base_url=self.base_url, tls=_tls(self.ca_file), organizer=self.organizer, event=self.event,
            stepper=stepper, buyers=self.buyers, item_weights=self.item_weights, api_token=self.api_token,
            buyer_secret=self.buyer_secret, login_share=self.login_share))


@dataclass(frozen=True)
class PingJourney:
    """One GET of a cheap page per attempt (the proxy's /lab-ping, or the bench's own 127.0.0.1 server): what
    the generator itself costs and how well it keeps its schedule, with the system under test out of the way."""

    base_url: str
    path: str = "/lab-ping"
    clients: int = 8  # clients shared round-robin (one per buyer would measure connection set-up instead)
    ca_file: str | None = None
    name: str = "ping"

    def build(self, requests: Recorder[RequestRecord] | None) -> Ping:
        return Ping(self, Stepper(requests, self.name) if requests is not None else None)


class Ping:
    """The journey a PingJourney builds: opens its clients on entry, closes them on exit."""

    def __init__(self, recipe: PingJourney, stepper: Stepper | None):
        self.recipe, self.stepper = recipe, stepper
        self.pool: list[httpx.AsyncClient] = []
        self.sent = 0

    async def __aenter__(self) -> Ping:
        tls = _tls(self.recipe.ca_file)
        self.pool = [new_client(self.recipe.base_url, tls) for _ in range(self.recipe.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.pool:
            await client.aclose()
        self.pool = []

    async def __call__(self, attempt: Attempt) -> None:
        client = self.pool[self.sent % len(self.pool)]
        self.sent += 1
        if self.stepper is not None:
            response, outcome, kind = await self.stepper.step(client, attempt, "ping", "GET", self.recipe.path)
            ok = outcome == "ok"
            attempt.error_kind = kind
        else:
            try:
                ok = (await client.get(self.recipe.path)).status_code == 200
            except httpx.HTTPError as error:
                ok, attempt.error_kind = False, type(error).__name__
        attempt.outcome = "purchased" if ok else "failed"


__all__ = ["JourneyRecipe", "Ping", "PingJourney", "RunJourney"]
