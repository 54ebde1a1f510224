"""Workloads declared as data (k6-style scenarios), validated up front into exact arrival schedules.

Open models (constant, ramp, spike) are a piecewise-linear offered rate; their schedule is computed once,
before the run, so the runner only has to keep appointments (no coordinated omission) and the number of
planned attempts is known exactly. The closed model is N users looping journey -> think time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab.common.validation import problems
from lab.errors import InputError, field_error

MAX_RATE = 5000.0
MAX_DURATION = 3600.0


class WorkloadError(InputError):
    """A workload a user declared is wrong; the message names the field and what is allowed."""


class WorkloadModel(BaseModel):
    """Fields every model shares: the hard bounds that make each load loop stop by itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    seed: int = Field(default=0, description="seed for poisson arrivals / think times (reproducible runs)")
    max_in_flight: int = Field(default=2000, ge=1, le=100_000, description="attempts in flight; more are dropped")
    max_attempts: int = Field(default=1_000_000, ge=1, le=5_000_000, description="hard bound on attempts")
    grace: float = Field(default=30.0, ge=0, le=600, description="seconds to wait for in-flight attempts at the end")

    kind: ClassVar[Literal["open", "closed"]]

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def planned(self) -> int | None:
        """Attempts the workload intends to make (None when only time bounds a closed model)."""
        raise NotImplementedError


class OpenWorkload(WorkloadModel):
    """Arrivals follow a schedule, whatever the system under test does (k6 arrival-rate executors)."""

    kind: ClassVar[Literal["open", "closed"]] = "open"
    _rate_field: ClassVar[str] = "rate"
    _duration_field: ClassVar[str] = "duration"
    arrivals: Literal["uniform", "poisson"] = "uniform"

    def breakpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """(times, rates): the offered rate, linear between breakpoints (a subclass implements this)."""
        raise NotImplementedError

    @property
    def total_duration(self) -> float:
        """Seconds from the first possible arrival to the end of the schedule."""
        return float(self.breakpoints()[0][-1])

    def _cumulative(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        times, rates = self.breakpoints()
        areas = np.diff(times) * (rates[:-1] + rates[1:]) / 2
        return times, rates, np.concatenate([[0.0], np.cumsum(areas)])

    @property
    def offered_total(self) -> float:
        """The integral of the offered rate: how many arrivals the declaration asks for."""
        return float(self._cumulative()[2][-1])

    @property
    def planned(self) -> int:
        return int(math.floor(self.offered_total + 0.5))

    @property
    def peak_rate(self) -> float:
        return float(self.breakpoints()[1].max())

    @property
    def target_rate(self) -> float:
        """Mean offered rate over the whole schedule."""
        return self.planned / self.total_duration

    def offered_rate_at(self, t: float | np.ndarray) -> float | np.ndarray:
        """Offered arrivals/s at t seconds from the start (0 outside the schedule); for plots."""
        times, rates = self.breakpoints()
        inside = (np.asarray(t) >= 0) & (np.asarray(t) <= times[-1])
        value = np.where(inside, np.interp(t, times, rates), 0.0)
        return float(value) if np.ndim(value) == 0 else value

    def schedule(self) -> np.ndarray:
        """Sorted arrival offsets (s from t0); exactly `planned` of them.

        Uniform: arrival i is due when the cumulative offered count reaches i (so a constant rate starts at
        t=0 like k6). Poisson: the arrival times of a Poisson process given its count, i.e. sorted uniform
        draws of the cumulative count mapped back through it; the count stays exact so runs compare.
        """
        n = self.planned
        if self.arrivals == "uniform":
            targets = np.arange(n, dtype=float)
        else:
            targets = np.sort(np.random.default_rng(self.seed).uniform(0.0, self.offered_total, n))
        return np.sort(self._invert(targets))

    def _invert(self, counts: np.ndarray) -> np.ndarray:
        """Times at which the cumulative offered count reaches each value (rate is linear per segment)."""
        times, rates, cum = self._cumulative()
        seg = np.clip(np.searchsorted(cum, counts, side="right") - 1, 0, len(times) - 2)
        t0, r0, c0 = times[seg], rates[seg], cum[seg]
        slope = (rates[seg + 1] - r0) / (times[seg + 1] - t0)
        need = counts - c0
        # r0*tau + slope*tau^2/2 = need, solved in the form that is stable for slope 0 and for r0 0
        root = np.sqrt(np.maximum(r0 * r0 + 2 * slope * need, 0.0))
        denominator = r0 + root
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.where(denominator > 0, 2 * need / denominator, 0.0)
        return np.minimum(t0 + tau, times[seg + 1])

    @model_validator(mode="after")
    def _bounded(self) -> OpenWorkload:
        if self.peak_rate > MAX_RATE:
            raise field_error(self._rate_field, f"the peak rate {self.peak_rate:g}/s is above the {MAX_RATE:g}/s "
                              "limit", (f"<= {MAX_RATE:g}",))
        if self.total_duration > MAX_DURATION:
            raise field_error(self._duration_field, f"the total duration {self.total_duration:g} s is above the "
                              f"{MAX_DURATION:g} s limit", (f"<= {MAX_DURATION:g}",))
        if self.planned < 1:
            raise field_error(self._rate_field, f"the schedule offers no arrivals (rate integral "
                              f"{self.offered_total:g})")
        if self.planned > self.max_attempts:
            raise field_error("max_attempts", f"the schedule makes {self.planned} arrivals, above "
                              f"max_attempts={self.max_attempts}; raise max_attempts or lower the rate")
        return self

    def _arrivals_text(self) -> str:
        return "uniform arrivals" if self.arrivals == "uniform" else f"poisson arrivals (seed {self.seed})"


WORKLOADS: dict[str, type[WorkloadModel]] = {}


def register_workload(cls: type[WorkloadModel]) -> type[WorkloadModel]:
    """Add a model to the registry under its `model` literal; built-ins register exactly like plugins."""
    name = cls.model_fields["model"].default
    if not isinstance(name, str):
        raise TypeError(f"{cls.__name__}.model needs a literal default to register under")
    WORKLOADS[name] = cls
    return cls


@register_workload
class ConstantWorkload(OpenWorkload):
    """k6 constant-arrival-rate: `rate` arrivals/s for `duration` s."""

    model: Literal["constant"] = "constant"
    rate: float = Field(gt=0, le=MAX_RATE, description="arrivals per second")
    duration: float = Field(gt=0, le=MAX_DURATION, description="seconds")

    def breakpoints(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([0.0, self.duration]), np.array([self.rate, self.rate])

    def describe(self) -> str:
        return f"constant {self.rate:g}/s for {self.duration:g} s, {self._arrivals_text()} ({self.planned} attempts)"


class Stage(BaseModel):
    """One k6 stage: the rate moves linearly from the previous target to `target` over `duration`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    duration: float = Field(gt=0, le=MAX_DURATION, description="seconds")
    target: float = Field(ge=0, le=MAX_RATE, description="arrivals per second at the end of the stage")


@register_workload
class RampWorkload(OpenWorkload):
    """k6 ramping-arrival-rate: start at `start_rate`, then follow the stages."""

    model: Literal["ramp"] = "ramp"
    _rate_field: ClassVar[str] = "stages"
    _duration_field: ClassVar[str] = "stages"
    start_rate: float = Field(default=0.0, ge=0, le=MAX_RATE, description="arrivals per second at t=0")
    stages: list[Stage] = Field(min_length=1, max_length=100)

    def breakpoints(self) -> tuple[np.ndarray, np.ndarray]:
        times = np.concatenate([[0.0], np.cumsum([s.duration for s in self.stages])])
        rates = np.array([self.start_rate] + [s.target for s in self.stages])
        return times, rates

    def describe(self) -> str:
        steps = ", then ".join(f"{s.target:g}/s over {s.duration:g} s" for s in self.stages)
        return f"ramp from {self.start_rate:g}/s: {steps}; {self._arrivals_text()} ({self.planned} attempts)"


@register_workload
class SpikeWorkload(OpenWorkload):
    """The on-sale: `buyers` arrive within `within` seconds."""

    model: Literal["spike"] = "spike"
    _rate_field: ClassVar[str] = "within"
    _duration_field: ClassVar[str] = "within"
    buyers: int = Field(ge=1, le=5_000_000, description="arrivals in all")
    within: float = Field(gt=0, le=MAX_DURATION, description="seconds over which they arrive")

    def breakpoints(self) -> tuple[np.ndarray, np.ndarray]:
        rate = self.buyers / self.within
        return np.array([0.0, self.within]), np.array([rate, rate])

    @property
    def planned(self) -> int:
        return self.buyers

    def describe(self) -> str:
        return f"spike: {self.buyers} buyers within {self.within:g} s, {self._arrivals_text()}"


@register_workload
class ClosedWorkload(WorkloadModel):
    """k6 constant-vus: `users` buyers each loop journey -> think time until `duration` or `iterations`.

    Closed: a slow system slows the arrivals down, so it measures capacity, not an on-sale.
    """

    kind: ClassVar[Literal["open", "closed"]] = "closed"
    model: Literal["closed"] = "closed"
    users: int = Field(ge=1, le=10_000, description="concurrent buyers")
    think_time: float = Field(default=0.0, ge=0, le=600, description="mean seconds between a user's journeys")
    duration: float = Field(gt=0, le=MAX_DURATION, description="seconds")
    iterations: int | None = Field(default=None, ge=1, le=1_000_000, description="journeys per user at most")

    @model_validator(mode="after")
    def _bounded(self) -> ClosedWorkload:
        if self.users > self.max_in_flight:
            raise field_error("users", f"{self.users} users exceed max_in_flight={self.max_in_flight}",
                              (f"<= {self.max_in_flight}",))
        return self

    @property
    def planned(self) -> int | None:
        return None if self.iterations is None else self.users * self.iterations

    def think_sampler(self, user: int) -> Callable[[], float]:
        """Exponential think times with the declared mean, one reproducible stream per user."""
        if self.think_time <= 0:
            return lambda: 0.0
        rng = np.random.default_rng([self.seed, user])
        mean = self.think_time
        return lambda: float(rng.exponential(mean))

    def describe(self) -> str:
        cap = f", at most {self.iterations} journeys each" if self.iterations else ""
        return (f"closed: {self.users} users for {self.duration:g} s, think time {self.think_time:g} s "
                f"(exponential){cap}")


Workload = ConstantWorkload | RampWorkload | SpikeWorkload | ClosedWorkload


def parse_workload(raw: dict[str, Any] | WorkloadModel) -> WorkloadModel:
    """A raw mapping (YAML / papermill parameters) -> a validated workload, or WorkloadError."""
    if isinstance(raw, WorkloadModel):
        return raw
    known = ", ".join(WORKLOADS)
    if not isinstance(raw, dict):
        raise WorkloadError.of("workload", "", f"a workload is a mapping with a 'model' field; got a "
                               f"{type(raw).__name__}", WORKLOADS)
    name = raw.get("model")
    if name is None:
        raise WorkloadError.of("workload", "model", f"required: a workload needs a 'model' field; known: {known}",
                               WORKLOADS)
    cls = WORKLOADS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise WorkloadError.of("workload", "model", f"No workload model named {name!r}; known: {known}", WORKLOADS)
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise WorkloadError(f"{name!r} workload", problems(error, cls)) from None


__all__ = [
    "ClosedWorkload", "ConstantWorkload", "OpenWorkload", "RampWorkload", "SpikeWorkload", "Stage", "WORKLOADS",
    "Workload", "WorkloadError", "WorkloadModel", "parse_workload", "register_workload",
]
