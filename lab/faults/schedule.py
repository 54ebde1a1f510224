"""A fault experiment declared as data: the schedule and the steady-state hypothesis, validated before anything runs.

    faults:
      - {at: 20, target: pretix-web-1, action: kill, duration: 15}
      - {at: 60, target: redis, action: pause, duration: 5}
      - {at: 90, target: pretix-web-2, action: cpu-throttle, duration: 20, options: {cpus: 0.1}}
    steady_state: {tolerance: 0.2, window: 5, settle: 90}

`at` is seconds from the run's start (the load's t0), `duration` how long the fault lasts before its undo.
Every mistake is reported at once, one line per field, naming the allowed values: an unknown action lists the
registry's faults, an unknown target lists that fault's targets (from stack/compose.yaml), and two faults that
act on the same service at overlapping times are refused (their undos would fight).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab.common.validation import problems
from lab.errors import InputError, Problem
from lab.faults.catalogue import UnknownFaultError, faults
from lab.stack.topology import ServiceSpec

MAX_SECONDS = 3600.0


WHAT = "fault schedule"


class FaultScheduleError(InputError):
    """A fault schedule is wrong; raised before anything is done to the stack. One line per bad field."""


class FaultStep(BaseModel):
    """One fault: act on `target` at `at` s from the run's start, undo it `duration` s later."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    at: float = Field(ge=0, le=MAX_SECONDS, description="seconds from the run's start")
    target: str = Field(min_length=1, description="a compose service or a group of numbered instances")
    action: str = Field(min_length=1, description="a fault of the registry")
    duration: float = Field(ge=0, le=MAX_SECONDS, description="seconds the fault lasts before its undo")
    options: dict[str, Any] = Field(default_factory=dict, description="the fault's own options")
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                           description="a name for the records (default f<N>-<action>)")


class SteadyState(BaseModel):
    """The hypothesis checked before and after each fault (Chaos Toolkit's steady-state hypothesis)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    health: bool = Field(default=True, description="GET /healthcheck/ through the proxy answers 200")
    health_timeout: float = Field(default=5.0, gt=0, le=60, description="seconds for the health request")
    containers: bool = Field(default=True, description="the fault's containers run and are healthy")
    throughput: bool = Field(default=True, description="answered attempts/s near the pre-fault baseline")
    shop: bool = Field(default=True, description="a web-shop cart add is answered through pretix's celery task "
                                                 "(when the run names its event)")
    tolerance: float = Field(default=0.2, gt=0, lt=1, description="allowed shortfall of throughput vs baseline")
    window: float = Field(default=5.0, gt=0, le=300, description="seconds of attempts a throughput check reads")
    flush_lag: float = Field(default=3.0, ge=0, le=60,
                             description="seconds the attempt records may lag behind (the recorder's flush)")
    settle: float = Field(default=90.0, ge=0, le=900,
                          description="after the undo, seconds the hypothesis may take to hold again")
    skip_if_deviated: bool = Field(default=False,
                                   description="do not inject a fault whose before-check fails")


class FaultPlan(BaseModel):
    """The whole experiment: the schedule and the hypothesis."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    faults: list[FaultStep] = Field(default_factory=list, max_length=100)
    steady_state: SteadyState = Field(default_factory=SteadyState)

    def fault_ids(self) -> list[str]:
        return [step.id or f"f{i + 1}-{step.action}" for i, step in enumerate(self.faults)]

    def items(self) -> list[tuple[str, FaultStep]]:
        return list(zip(self.fault_ids(), self.faults, strict=True))

    @property
    def last_undo(self) -> float:
        """Seconds from t0 at which the last fault is due to be undone."""
        return max((s.at + s.duration for s in self.faults), default=0.0)


def parse_schedule(raw: Any, topology: dict[str, ServiceSpec] | None = None) -> FaultPlan:
    """A raw schedule (a list of steps, or a mapping with `faults` and `steady_state`) -> FaultPlan.

    Raises FaultScheduleError listing every problem (field, what is allowed, what was given) before anything runs:
    each step is checked on its own, so one bad step does not hide the mistakes of the others.
    """
    if isinstance(raw, FaultPlan):
        plan = raw
    else:
        if raw is None:
            raw = []
        if isinstance(raw, list | tuple):
            raw = {"faults": list(raw)}
        if not isinstance(raw, dict):
            raise FaultScheduleError(WHAT, Problem("", "a schedule is a list of faults, or a mapping with 'faults' "
                                                       f"and 'steady_state'; got a {type(raw).__name__}"))
        lines: list[Problem] = []
        try:
            FaultPlan.model_validate({**raw, "faults": []})
        except ValidationError as error:
            lines += problems(error, FaultPlan)
        steps = raw.get("faults") or []
        if not isinstance(steps, list):
            lines.append(Problem("faults", f"a list of faults, got a {type(steps).__name__}"))
            steps = []
        good: list[tuple[int, FaultStep]] = []
        for index, step in enumerate(steps):
            try:
                good.append((index, FaultStep.model_validate(step)))
            except ValidationError as error:
                lines += problems(error, FaultStep, prefix=f"faults.{index}.")
        if lines:
            lines += _semantic_errors(FaultPlan(faults=[s for _, s in good]), topology, [i for i, _ in good])
            raise FaultScheduleError(WHAT, lines)
        plan = FaultPlan.model_validate(raw)
    lines = _semantic_errors(plan, topology)
    if lines:
        raise FaultScheduleError(WHAT, lines)
    return plan


def _semantic_errors(plan: FaultPlan, topology: dict[str, ServiceSpec] | None,
                     positions: list[int] | None = None) -> list[Problem]:
    """Registry, targets, options and overlaps; `positions` maps the plan's steps to their index in the input."""
    positions = positions if positions is not None else list(range(len(plan.faults)))
    lines: list[Problem] = []
    spans: list[tuple[str, int, float, float, list[str]]] = []
    ids = [step.id or f"f{positions[n] + 1}-{step.action}" for n, step in enumerate(plan.faults)]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        lines.append(Problem("faults", f"the id {dup!r} is used more than once"))
    for n, step in enumerate(plan.faults):
        index = positions[n]
        where = f"faults.{index}"
        try:
            cls = faults.get(step.action)
        except UnknownFaultError as error:
            lines.append(Problem(f"{where}.action", str(error), error.allowed))
            continue
        allowed = cls.allowed_targets(topology)
        if step.target not in allowed:
            lines.append(Problem(f"{where}.target", f"{step.target!r} is not a target of {step.action!r}; "
                                 f"allowed: {', '.join(allowed)}", tuple(allowed)))
            continue
        try:
            cls.Options.model_validate(step.options)
            cls.check_options(step.options, topology)
        except ValidationError as error:
            lines += problems(error, cls.Options, prefix=f"{where}.options.")
            continue
        except InputError as error:  # a plugin's own check names its option field
            lines += [p.moved(f"{where}.{p.field}" if p.field else where) for p in error.problems]
            continue
        except ValueError as error:
            lines.append(Problem(where, str(error)))
            continue
        spans.append((ids[n], index, step.at, step.at + step.duration, cls.services_of(step.target, topology)))
    for a in range(len(spans)):
        for b in range(a + 1, len(spans)):
            id_a, ia, start_a, end_a, services_a = spans[a]
            id_b, ib, start_b, end_b, services_b = spans[b]
            shared = sorted(set(services_a) & set(services_b))
            if shared and start_a <= end_b and start_b <= end_a:
                lines.append(Problem(f"faults.{ib}", f"overlaps faults.{ia} ({id_a}, {start_a:g}-{end_a:g} s) on "
                                     f"{', '.join(shared)}; one fault per service at a time"))
    return lines


def check_fits(plan: FaultPlan, load_seconds: float) -> list[str]:
    """A schedule must be undone while the load still runs (else recovery cannot be seen): raise if a fault ends
    after the load; return warnings where too little load is left to check the throughput after an undo."""
    errors, warnings = [], []
    needed = plan.steady_state.window + plan.steady_state.flush_lag
    for index, (fault_id, step) in enumerate(plan.items()):
        end = step.at + step.duration
        if end > load_seconds:
            errors.append(Problem(f"faults.{index}", f"{fault_id} is undone at {end:g} s, after the load's "
                                                     f"{load_seconds:g} s"))
        elif end + needed > load_seconds:
            warnings.append(f"{fault_id}: only {load_seconds - end:g} s of load after its undo; the throughput "
                            f"check after it needs {needed:g} s")
    if errors:
        raise FaultScheduleError(WHAT, errors)
    return warnings


__all__ = ["FaultPlan", "FaultScheduleError", "FaultStep", "MAX_SECONDS", "SteadyState", "check_fits",
           "parse_schedule"]
