"""The fault catalogue: a registry of fault types (papermill-style) and the template-method base they share.

Built-ins register exactly like a plugin would (`faults.register("name")(FaultClass)`, or the entry point group
`pretix_lab.faults`); an unknown name fails with "No fault named 'x'; known: ...". The base class `Fault` does the
bookkeeping every fault needs: resolve its target to the running containers of the compose project, time and
record each action and each undo in faults.parquet, remember what it changed so the undo restores exactly that,
run the undo exactly once (it may be asked from a scheduled task, a cancelled task and a final clean-up at the same
time) and retry a failed undo a few times. A subclass implements `apply(container) -> state` and
`revert(container, state) -> detail` (or overrides inject/undo when one fault spans several nodes), and
`capture(container)`: the old values its undo needs, which go to the fault journal (lab/faults/journal.py) before
apply() changes anything, so `Fault.replay` can undo the change from that data in a fresh process.

Targets come from the one topology (stack/compose.yaml through lab.stack.topology.services()): a target is a
long-running service, or a group of numbered instances (`pretix-worker` = pretix-worker-1 and pretix-worker-2).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from lab.common.registry import Registry
from lab.errors import LabError, UnknownNameError
from lab.faults import journal as fault_journal
from lab.faults.record import FaultRecord, detail_text
from lab.stack.topology import ServiceSpec, services

UNDO_TRIES = 3
UNDO_RETRY_PAUSE = 1.0


class UnknownFaultError(UnknownNameError):
    """No fault of that name is registered."""


class FaultActionError(LabError, RuntimeError):
    """An action or undo on the stack failed; it has been recorded in faults.parquet."""


class NoOptions(BaseModel):
    """A fault without options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------------- topology
def long_running_specs(topology: dict[str, ServiceSpec] | None = None) -> dict[str, ServiceSpec]:
    found = topology if topology is not None else services()
    return {name: spec for name, spec in found.items() if not spec.one_shot}


def groups(topology: dict[str, ServiceSpec] | None = None) -> dict[str, list[str]]:
    """Numbered instances of one service (`name-1`, `name-2` ...) as a group named `name` (two or more)."""
    specs = long_running_specs(topology)
    found: dict[str, list[str]] = {}
    for name in specs:
        match = re.fullmatch(r"(.+)-(\d+)", name)
        if match:
            found.setdefault(match.group(1), []).append(name)
    return {group: members for group, members in found.items() if len(members) >= 2 and group not in specs}


def image_role(spec: ServiceSpec) -> str:
    """The image's short name (pretix-lab/postgres:local -> postgres): what kind of program a service runs."""
    return spec.image.rsplit("/", 1)[-1].split(":", 1)[0]


# ---------------------------------------------------------------------------------------------------- context
@dataclass
class FaultContext:
    """What a fault acts with: the docker client, the recorder of faults.parquet, a log."""

    docker: Any
    record: Callable[[FaultRecord], None] = lambda record: None
    log: Callable[[str], None] = print
    topology: dict[str, ServiceSpec] | None = None
    journal: fault_journal.FaultJournal | None = None  # where undo records go before each change (None: nowhere)


@dataclass
class Applied:
    container: Any
    state: Any = None
    service: str = ""
    entry: fault_journal.UndoRecord | None = None  # its record in the journal, cleared by a successful undo


@dataclass
class FaultInstance:
    """The identity of one scheduled fault (what the records are keyed by)."""

    fault_id: str
    action: str
    target: str
    options: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------- base
class Fault:
    """Template method: inject() and undo() do the bookkeeping; a subclass implements apply() and revert()."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, instance: FaultInstance, ctx: FaultContext):
        self.instance = instance
        self.ctx = ctx
        self.options = self.Options.model_validate(instance.options)
        self.applied: list[Applied] = []
        self.injected = False  # inject() ran (whether it succeeded or not)
        self.undone = False  # undo() ran to its end
        self._lock = threading.RLock()

    # -- targets (classmethods: used by validation, before anything runs) -------------------------------------
    @classmethod
    def allowed_targets(cls, topology: dict[str, ServiceSpec] | None = None) -> list[str]:
        """Every long-running service and every group of numbered instances."""
        return [*long_running_specs(topology), *groups(topology)]

    @classmethod
    def services_of(cls, target: str, topology: dict[str, ServiceSpec] | None = None) -> list[str]:
        """The services a target acts on (a group's members; overlapping faults are refused by the schedule)."""
        return groups(topology).get(target, [target])

    @classmethod
    def check_options(cls, options: dict[str, Any], topology: dict[str, ServiceSpec] | None = None) -> None:
        """Further checks of the options against the topology (raise InputError naming the option's field)."""

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    def record(self, phase: str, start: float, *, container: str | None, outcome: str = "ok",
               error: BaseException | str | None = None, detail: dict[str, Any] | None = None) -> None:
        ok = {"ok": True, "pass": True, "error": False, "fail": False}.get(outcome)
        self.ctx.record(FaultRecord(
            fault_id=self.instance.fault_id, action=self.instance.action, target=self.instance.target,
            container=container, phase=phase, start=start, end=time.time(), outcome=outcome, ok=ok,  # type: ignore[arg-type]
            error=None if error is None else (error if isinstance(error, str) else f"{type(error).__name__}: {error}"),
            detail=detail_text(detail),
        ))

    def containers(self) -> list[tuple[str, Any]]:
        """(service, running container) for each service the target covers; a missing one is an error."""
        from lab.stack.containers import container

        return [(service, container(self.ctx.docker, service))
                for service in self.services_of(self.instance.target, self.ctx.topology)]

    def inject(self) -> None:
        """Apply the fault to each container, recording each; on a failure the error is recorded and raised
        (whatever was applied before it stays in `applied`, so undo() restores it)."""
        with self._lock:
            if self.undone or self.injected:
                self.record("inject", time.time(), container=None, outcome="skipped",
                            detail={"reason": "already undone (cancelled before it ran)" if self.undone
                                    else "already injected"})
                return
            self.injected = True
            start = time.time()
            try:
                targets = self.containers()
            except Exception as error:
                self.record("inject", start, container=None, outcome="error", error=error)
                raise FaultActionError(f"{self.instance.fault_id}: {error}") from error
            for service, c in targets:
                start = time.time()
                try:
                    state, entry = self._act(service, c)
                except Exception as error:
                    self.record("inject", start, container=c.name, outcome="error", error=error,
                                detail={"service": service})
                    raise FaultActionError(f"{self.instance.fault_id} {self.instance.action} {c.name}: {error}") \
                        from error
                self.applied.append(Applied(c, state, service, entry))
                self.record("inject", start, container=c.name, detail={"service": service, **self.describe(state)})

    def _act(self, service: str, container: Any) -> tuple[Any, fault_journal.UndoRecord | None]:
        """capture -> journal -> apply, under the gate a signal handler closes (it never replays half an action).
        A record whose apply failed stays in the journal (the change may be half done): replay restores it."""
        with fault_journal.acting():
            if fault_journal.closed():
                raise RuntimeError("the process is stopping on a signal: no new fault acts")
            captured = self.capture(container)
            entry = None
            if self.ctx.journal is not None:
                entry = self.ctx.journal.before(
                    action=self.instance.action, fault_id=self.instance.fault_id, target=self.instance.target,
                    options=self.options.model_dump(mode="json"), service=service, container=container,
                    state=captured)
            state = self.apply(container)
            if entry is not None:
                entry = self.ctx.journal.applied(entry, state)
            return state, entry

    def undo(self, reason: str = "scheduled") -> None:
        """Restore what inject() changed; runs once however often it is called (later calls wait for the first).
        Each container's undo is tried UNDO_TRIES times; an undo that still fails is recorded and raised."""
        with self._lock:
            if self.undone:
                return
            self.undone = True
            failures = []
            for applied in reversed(self.applied):
                start = time.time()
                last: Exception | None = None
                for attempt in range(UNDO_TRIES):
                    try:
                        with fault_journal.acting():
                            detail = self.revert(applied.container, applied.state) or {}
                            if applied.entry is not None and self.ctx.journal is not None:
                                self.ctx.journal.clear(applied.entry.key)
                    except Exception as error:  # noqa: BLE001 - retried, then recorded and raised
                        last = error
                        time.sleep(UNDO_RETRY_PAUSE)
                        continue
                    self.record("undo", start, container=applied.container.name,
                                detail={"service": applied.service, "reason": reason, "tries": attempt + 1,
                                        **detail})
                    last = None
                    break
                if last is not None:
                    self.record("undo", start, container=applied.container.name, outcome="error", error=last,
                                detail={"service": applied.service, "reason": reason, "tries": UNDO_TRIES})
                    failures.append(f"{applied.container.name}: {last}")
            if failures:
                raise FaultActionError(f"{self.instance.fault_id}: undo failed: {'; '.join(failures)}")

    @property
    def active(self) -> bool:
        return self.injected and not self.undone

    # -- what a subclass implements ----------------------------------------------------------------------------
    def capture(self, container: Any) -> Any:
        """The old values the undo needs, read before anything changes: journaled before apply() acts, so a
        process killed in the middle leaves what restores them (JSON data, as revert() takes its state)."""
        return None

    def apply(self, container: Any) -> Any:
        raise NotImplementedError

    def revert(self, container: Any, state: Any) -> dict[str, Any] | None:
        raise NotImplementedError

    def describe(self, state: Any) -> dict[str, Any]:
        """What to write in the inject row's detail about the state kept for the undo (no secrets)."""
        return state if isinstance(state, dict) else {}

    def health_services(self) -> list[str]:
        """Services whose containers must be running and healthy for the steady state around this fault."""
        return self.services_of(self.instance.target, self.ctx.topology)

    # -- replay from the journal (a fresh process, no in-memory fault) ------------------------------------------
    @classmethod
    def from_record(cls, docker: Any, record: fault_journal.UndoRecord, rows: list[FaultRecord] | None = None):
        """A fault rebuilt from its undo record (its options), acting with `docker`; its records go to `rows`."""
        ctx = FaultContext(docker=docker, record=(rows.append if rows is not None else lambda row: None),
                           log=lambda message: None)
        return cls(FaultInstance(record.fault_id, record.action, record.target, dict(record.options)), ctx)

    @classmethod
    def replay(cls, docker: Any, record: fault_journal.UndoRecord) -> dict[str, Any]:
        """Undo what the record says was changed, from the data alone: revert() on the record's container
        with the journaled state. ContainerGone when the container no longer exists."""
        container = fault_journal.find_container(docker, record.container_id)
        return cls.from_record(docker, record).revert(container, record.state) or {}


# --------------------------------------------------------------------------------------------------- registry
def FaultRegistry() -> Registry[Fault]:  # noqa: N802 - reads like the class it makes
    """A registry of faults (the module-level `faults` is the catalogue the lab uses)."""
    return Registry("fault", Fault, "pretix_lab.faults", UnknownFaultError)


faults = FaultRegistry()

__all__ = ["Applied", "Fault", "FaultActionError", "FaultContext", "FaultInstance", "FaultRegistry", "NoOptions",
           "UnknownFaultError", "faults", "groups", "image_role", "long_running_specs"]
