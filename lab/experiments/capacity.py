"""Automatic capacity search per journey: the highest arrival rate that still meets the SLO.

Step up (rate x factor) until a probe fails, then bisect between the last pass and the first failure until
they are within `tolerance` of each other. Each probe is a short constant-rate run; it passes when the SLO holds:
p95 latency from scheduled start <= slo_p95, error rate <= error_limit, and goodput (purchases) >= goodput_min of
what was offered. A buyer refused by admission control counts as an error here (probes do not queue). A probe also
fails when its latency is still climbing at the end (the median of its last third of arrivals is more than
`max_growth` x slo_p95 above its first third's): a backlog has started, and a longer run would break the SLO.

The decision logic (judge, next_rate, capacity_of) is pure and unit tested; `measure` runs one probe on the real
stack; `admission_for` turns the capacity found into the waiting room's limits.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab.analysis.capacity import GOODPUT_MIN, MAX_GROWTH, latency_growth, slo_misses
from lab.analysis.verdicts import Targets
from lab.common.validation import problems
from lab.errors import InputError
from lab.stack.admission import ROOM_MODES, Admission

if TYPE_CHECKING:
    import ssl

    from lab.load.queue import QueueSettings
    from lab.load.recorder import RecordedJourney


class CapacityError(InputError):
    """Search settings are wrong; raised before any probe runs."""


class SearchSettings(BaseModel):
    """How the search steps, when it stops, and what passing means."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: float = Field(default=4.0, gt=0, le=5000, description="first arrival rate probed (per second)")
    factor: float = Field(default=2.0, gt=1, le=10, description="step-up factor while probes pass")
    max_rate: float = Field(default=400.0, gt=0, le=5000, description="never probe above this rate")
    tolerance: float = Field(default=0.1, ge=0.01, le=0.5,
                             description="stop when (first fail - last pass) / first fail <= tolerance")
    max_probes: int = Field(default=12, ge=1, le=50, description="hard bound on probes")
    probe_seconds: float = Field(default=10.0, ge=1, le=600, description="length of each probe's load")
    slo_p95: float = Field(default=1.0, gt=0, le=600, description="p95 latency from scheduled start (s)")
    error_limit: float = Field(default=0.01, ge=0, le=1, description="share of attempts that may fail")
    goodput_min: float = Field(default=GOODPUT_MIN, ge=0, le=1, description="share of offered attempts that must buy")
    max_growth: float = Field(default=MAX_GROWTH, gt=0, le=10,
                              description="latency may climb from the probe's first third of arrivals to its last "
                                          "by at most this share of slo_p95 (medians): more is a backlog building")

    @model_validator(mode="after")
    def _order(self) -> SearchSettings:
        if self.start > self.max_rate:
            raise ValueError(f"start {self.start:g} is above max_rate {self.max_rate:g}")
        return self


def settings(raw: dict | None = None, **overrides) -> SearchSettings:
    """Raw mapping (+ keyword overrides, None ignored) -> SearchSettings, or CapacityError naming each field."""
    values = {**(raw or {}), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return SearchSettings.model_validate(values)
    except ValidationError as error:
        raise CapacityError("capacity search", problems(error, SearchSettings)) from None


DEFAULTS = {"api": {"start": 4.0, "slo_p95": 1.0, "probe_seconds": 10.0},
            "shop": {"start": 0.5, "slo_p95": 10.0, "probe_seconds": 30.0}}


@dataclass
class Probe:
    """One constant-rate probe: what was offered and what became of it."""

    rate: float
    offered: int
    purchased: int
    failed: int  # failed, dropped, cancelled
    queued: int = 0  # refused by admission control (not admitted)
    sold_out: int = 0
    p50: float = math.nan
    p95: float = math.nan
    growth: float = math.nan  # median latency of the last third of arrivals minus the first third's (s)
    passed: bool | None = None
    reason: str = ""
    folder: str | None = None

    @property
    def error_rate(self) -> float:
        return (self.failed + self.queued) / self.offered if self.offered else 1.0

    @property
    def goodput(self) -> float:
        return (self.purchased + self.sold_out) / self.offered if self.offered else 0.0


def probe_row(probe: Probe, journey: str = "api") -> dict:
    """A probe as a run-table row: the shape the lab's one SLO definition (slo_misses) reads. Refused by admission
    control counts as failed; a sold-out answer as served."""
    return {"journey": journey, "attempts": probe.offered, "p95": probe.p95, "error_rate": probe.error_rate,
            "purchased": probe.purchased + probe.sold_out, "latency_growth": probe.growth}


def judge(probe: Probe, s: SearchSettings) -> tuple[bool, str]:
    """Pass/fail of one probe against the SLO, and the reasons it failed ('' when it passed): the study's and the
    report's definition, lab.analysis.capacity.slo_misses, with this search's limits."""
    targets = Targets(slo_p95_seconds=s.slo_p95, slo_p95_shop_seconds=s.slo_p95, slo_error_rate=s.error_limit)
    reasons = slo_misses(probe_row(probe), targets, goodput_min=s.goodput_min, max_growth=s.max_growth)
    return not reasons, "; ".join(reasons)


def bounds(probes: list[Probe]) -> tuple[float | None, float | None]:
    """(highest passing rate below the lowest failing one, lowest failing rate)."""
    fails = [p.rate for p in probes if p.passed is False]
    hi = min(fails) if fails else None
    passes = [p.rate for p in probes if p.passed and (hi is None or p.rate < hi)]
    return (max(passes) if passes else None), hi


def next_rate(probes: list[Probe], s: SearchSettings) -> float | None:
    """The next rate to probe, or None when the search is done."""
    if len(probes) >= s.max_probes:
        return None
    lo, hi = bounds(probes)
    if hi is None:  # still stepping up
        if lo is None:
            return s.start
        if lo >= s.max_rate:
            return None
        return min(lo * s.factor, s.max_rate)
    floor = lo if lo is not None else 0.0
    if (hi - floor) / hi <= s.tolerance:
        return None
    if lo is None and hi <= s.start * s.tolerance:  # nothing passes even far below where we started
        return None
    return round((floor + hi) / 2, 3)


def capacity_of(probes: list[Probe]) -> float | None:
    """The capacity the probes show: the highest rate that passed below the lowest that failed."""
    return bounds(probes)[0]


@dataclass
class SearchResult:
    journey: str
    capacity: float | None  # arrivals per second that met the SLO
    probes: list[Probe] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def per_minute(self) -> float | None:
        return None if self.capacity is None else self.capacity * 60

    def describe(self) -> str:
        lo, hi = bounds(self.probes)
        if self.capacity is None:
            return f"{self.journey}: no probed rate met the SLO (lowest failing {hi}/s)"
        breaks = f", breaks at {hi:g}/s" if hi is not None else " (never broke: raise max_rate)"
        return f"{self.journey}: capacity {self.capacity:g}/s = {self.capacity * 60:.0f}/min{breaks}"

    def to_dict(self) -> dict:
        return {"journey": self.journey, "capacity": self.capacity, "settings": self.settings,
                "probes": [asdict(p) | {"error_rate": p.error_rate, "goodput": p.goodput} for p in self.probes]}


def search(measure: Callable[[float], Probe], s: SearchSettings, journey: str = "api", log=print) -> SearchResult:
    """Probe rates chosen by next_rate until it says done; each probe judged against the SLO."""
    probes: list[Probe] = []
    while (rate := next_rate(probes, s)) is not None:
        probe = measure(rate)
        probe.passed, probe.reason = judge(probe, s)
        probes.append(probe)
        trend = "" if math.isnan(probe.growth) else f" (trend {probe.growth:+.2f}s)"
        log(f"  {rate:7.2f}/s: {probe.purchased}/{probe.offered} bought, p50 {probe.p50:.2f}s p95 {probe.p95:.2f}s"
            f"{trend}, errors {probe.error_rate:.1%}, goodput {probe.goodput:.0%} -> "
            f"{'meets the SLO' if probe.passed else 'BREAKS: ' + probe.reason}")
    return SearchResult(journey, capacity_of(probes), probes, s.model_dump())


def admission_for(capacity: float | SearchResult, *, headroom: float = 0.8, retry_after: int = 2,
                  mode: str = "waiting-room") -> Admission:
    """The waiting room (or ticket queue) for a measured capacity: admit `headroom` of it per second, half a second
    of it as burst.

    Why not all of it: the search's short probes find the edge where queues only start to build; admitting
    exactly that for minutes lets pretix's backlog grow until admitted buyers time out as well.
    """
    rate = capacity.capacity if isinstance(capacity, SearchResult) else capacity
    if rate is None or not rate > 0:
        raise CapacityError("no capacity was found (nothing met the SLO): cannot size the waiting room")
    if not 0 < headroom <= 2:
        raise CapacityError(f"headroom {headroom:g}: allowed 0 < headroom <= 2 (a share of the capacity)")
    if mode not in ROOM_MODES:
        raise CapacityError(f"mode {mode!r}: allowed: {', '.join(ROOM_MODES)}")
    admitted = rate * headroom
    return Admission(mode=mode, rate=round(admitted, 3), burst=max(1, round(admitted / 2)),  # type: ignore[arg-type]
                     retry_after=retry_after)


# --- probes on the real stack ------------------------------------------------------------------------------

def summarise(rate: float, attempts: list, offered: int) -> Probe:
    """A probe's figures from its finished attempts (latency from scheduled start, no coordinated omission)."""
    outcomes = [a.outcome for a in attempts]
    finished = [(a.scheduled, a.ended - a.scheduled) for a in attempts
                if a.ended is not None and a.started is not None]
    done = [latency for _, latency in finished]
    p50, p95 = (float(np.percentile(done, 50)), float(np.percentile(done, 95))) if done else (math.nan, math.nan)
    purchased, sold_out, queued = (outcomes.count(k) for k in ("purchased", "sold_out", "queued"))
    return Probe(rate=rate, offered=offered, purchased=purchased, sold_out=sold_out, queued=queued,
                 failed=max(0, offered - purchased - sold_out - queued), p50=p50, p95=p95,
                 growth=latency_growth(finished))


def measure(journey_factory: Callable[[], object], rate: float, seconds: float, *, grace: float = 20.0) -> Probe:
    """One constant-rate probe of `seconds` with a fresh journey (an async context manager and callable)."""
    from lab.experiments.bench import constant_step

    summary, finished = asyncio.run(constant_step(journey_factory, rate, seconds, grace=grace))
    return summarise(rate, finished, summary.planned)  # type: ignore[attr-defined]


def journey_builder(ctx, journey: str, *, login_share: float = 0.2, queue: QueueSettings | None = None
                    ) -> Callable[..., RecordedJourney]:
    """(run_dir, base_url, tls, headers) -> a fresh recorded journey (by name, from lab.load.journey's registry:
    UnknownJourneyError naming the known ones) for the deployed stack's catalogue.

    The one builder behind the capacity search's probes and `lab bench capacity`'s steps: they differ only in where
    each run folder goes, which web server they aim at (default: the proxy) and whether buyers queue (`queue`).
    `headers` go to the api journey only.
    """
    from lab.load.http import Stepper
    from lab.load.journey import JourneySetting, journeys
    from lab.load.queue import QueueSettings
    from lab.load.recorder import RecordedJourney, Recorder
    from lab.pretix.seed import Catalogue

    kind = journeys.get(journey)  # an unknown name fails here, before anything is looked up on the stack

    cat = Catalogue()
    ids = ctx.catalogue(cat)
    buyers = ctx.saved_buyers()
    weights = {ids["Bilhete Geral"]["item"]: 1.0}
    secret = ctx.buyer_secret()
    queue = QueueSettings() if queue is None else queue

    def build(run_dir: Path, base_url: str | None = None, tls: ssl.SSLContext | None = None,
              headers: dict[str, str] | None = None) -> RecordedJourney:
        recorder = Recorder.requests(run_dir, run_dir.name)
        stepper = Stepper(recorder, journey, queue=queue)
        inner = kind.build(JourneySetting(
            base_url=ctx.access.base_url if base_url is None else base_url,
            tls=ctx.access.tls() if tls is None else tls, organizer=ctx.access.organizer, event=cat.slug,
            stepper=stepper, buyers=buyers, item_weights=weights, api_token=ctx.access.api_token,
            buyer_secret=secret, login_share=login_share, extra_headers=headers))
        return RecordedJourney(inner, recorder)

    return build


def journey_factories(ctx, journey: str, folder: Path, *, login_share: float = 0.2
                      ) -> Callable[[float], Callable[[], RecordedJourney]]:
    """(rate -> fresh recorded journey) for the api or shop journey on the deployed stack; no queueing."""
    from lab.load.queue import QueueSettings

    build = journey_builder(ctx, journey, login_share=login_share, queue=QueueSettings(max_wait=0))
    counter = itertools.count()

    def make(rate: float) -> Callable[[], RecordedJourney]:
        return lambda: build(folder / f"probe-{next(counter):02d}-{rate:g}")

    return make


def search_journey(ctx, journey: str, s: SearchSettings | None = None, *, folder: Path | None = None,
                   log=print) -> SearchResult:
    """The capacity of one journey on the deployed stack (admission control off while it is measured)."""
    import json

    from lab.common.paths import bench_path
    from lab.stack import admission

    if journey not in DEFAULTS:
        raise CapacityError(f"journey {journey!r}: allowed: {', '.join(DEFAULTS)}")
    s = s or settings(DEFAULTS[journey])
    folder = folder or bench_path(f"capacity-search-{journey}")
    folder.mkdir(parents=True, exist_ok=True)
    make = journey_factories(ctx, journey, folder)
    with admission.applied(admission.OFF, docker_client=ctx.docker, access=ctx.access, log=log):
        log(f"capacity search, {journey} journey: SLO p95 <= {s.slo_p95:g}s, errors <= {s.error_limit:.0%}, "
            f"goodput >= {s.goodput_min:.0%}; {s.probe_seconds:g}s probes")
        result = search(lambda rate: measure(make(rate), rate, s.probe_seconds), s, journey, log=log)
    log(result.describe())
    (folder / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    log(f"figures saved: {folder / 'result.json'}")
    return result


__all__ = ["CapacityError", "Probe", "SearchResult", "SearchSettings", "admission_for", "bounds",
           "capacity_of", "judge", "latency_growth", "measure", "next_rate", "search", "search_journey", "settings",
           "summarise"]
