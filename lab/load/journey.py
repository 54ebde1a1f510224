"""Purchase journeys by name: `journeys` is the registry (like faults and monitor samplers), each journey a
`Journey` subclass that registers itself and builds itself from one `JourneySetting`.

A run, the capacity search and the benches name a journey ("api", "shop", or a plugin's from the entry-point group
`pretix_lab.journeys`) and get it from here, so a new journey is one new module, not a new branch in each of them.
The built-ins live in lab.load.api and lab.load.shop, which import this module; they are imported at the first
lookup.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from lab.common.registry import Registry
from lab.errors import UnknownNameError

if TYPE_CHECKING:
    from lab.load.http import Stepper
    from lab.load.runner import Attempt
    from lab.pretix.buyers import Buyer


class UnknownJourneyError(UnknownNameError):
    """No journey is registered under this name."""


@dataclass(frozen=True)
class JourneySetting:
    """Everything a journey can be built from: where the shop is, who buys and what; each journey takes what it
    needs (the api journey the token and extra headers, the shop journey the login share and the buyers' secret)."""

    base_url: str
    tls: ssl.SSLContext
    organizer: str
    event: str
    stepper: Stepper
    buyers: Sequence[Buyer]
    item_weights: dict[int, float]
    api_token: str = ""
    buyer_secret: str = ""  # buyers' passwords derive from it (lab.pretix.buyers.password_for)
    login_share: float = 0.2
    extra_headers: dict[str, str] | None = None


class Journey:
    """A purchase journey: an async callable `await journey(attempt)` that buys once and records every request
    through its Stepper (and may be an async context manager that opens and closes its clients)."""

    name: ClassVar[str]

    @classmethod
    def build(cls, setting: JourneySetting) -> Journey:
        raise NotImplementedError

    async def __call__(self, attempt: Attempt) -> None:
        raise NotImplementedError


def JourneyRegistry(builtins: Sequence[str] = ()) -> Registry[Journey]:  # noqa: N802 - reads like the class
    """A registry of journeys (the module-level `journeys` is the one the lab uses, with the built-ins)."""
    return Registry("journey", Journey, "pretix_lab.journeys", UnknownJourneyError, builtins=builtins)


journeys = JourneyRegistry(builtins=("lab.load.api", "lab.load.shop"))


def build_journey(name: str, setting: JourneySetting) -> Journey:
    """The journey registered as `name`, built from `setting` (UnknownJourneyError naming the known ones)."""
    return journeys.get(name).build(setting)


__all__ = ["Journey", "JourneyRegistry", "JourneySetting", "UnknownJourneyError", "build_journey", "journeys"]
