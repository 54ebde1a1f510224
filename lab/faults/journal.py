"""The fault journal: what to undo, on disk, written before anything is changed, so a killed process leaves no
fault behind that nobody knows how to take back.

Before a fault changes a container, its undo record (the action, the target, the container, the old values the
undo needs) is written to <deploy dir>/faults-journal/<key>.json atomically (a temporary file, fsync, os.replace):
a process killed at any instant leaves either no record or a whole one. A successful undo removes the record.
What is left was not undone. `lab faults undo`, every `lab up` and the signal handlers of `lab load` and
`lab study` replay it in a fresh process from the data alone (lab/faults/replay.py): each action's `replay`
(Fault.replay, a classmethod of the class the catalogue registers under the action's name) restores the old values.

A record whose process still runs belongs to that process (it will undo it itself): replay leaves it alone unless
forced, but always takes the records of this process and of its children (what a signal handler must undo).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab.common.paths import deploy_dir

JOURNAL = "faults-journal"
GATE_WAIT = 60.0  # seconds a signal handler waits for an action in flight before it replays anyway


def journal_dir() -> Path:
    return deploy_dir() / JOURNAL


class ContainerGone(LookupError):
    """The record's container no longer exists (removed, or recreated by compose): nothing is left to restore."""


# ------------------------------------------------------------------------------------------------------- owner
def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): tells a reused pid apart."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rpartition(")")[2].split()[19])


def _parent(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rpartition(")")[2].split()[1])


class Owner(BaseModel):
    """The process that wrote a record."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pid: int
    started: int | None = None
    host: str = ""

    @classmethod
    def current(cls) -> Owner:
        return cls(pid=os.getpid(), started=_start_ticks(os.getpid()), host=socket.gethostname())

    def alive(self) -> bool:
        """True while the writing process still runs (another host's process counts as running: we cannot tell)."""
        if self.host and self.host != socket.gethostname():
            return True
        started = _start_ticks(self.pid)
        return started is not None and (self.started is None or started == self.started)

    def is_mine(self) -> bool:
        """Written by this process or by one of its children (a notebook kernel of `lab study`)."""
        if self.host and self.host != socket.gethostname():
            return False
        if self.pid == os.getpid():
            return True
        if not self.alive():
            return False
        pid: int | None = self.pid
        for _ in range(64):  # walk up the parents
            pid = _parent(pid) if pid else None
            if pid is None or pid <= 1:
                return False
            if pid == os.getpid():
                return True
        return False


# ------------------------------------------------------------------------------------------------------ record
class UndoRecord(BaseModel):
    """What one fault changed on one container and the old values its undo restores (data, never a closure)."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    key: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    action: str
    fault_id: str
    target: str
    options: dict[str, Any] = Field(default_factory=dict)
    service: str
    container_id: str
    container_name: str
    state: Any = None  # the old values (JSON), as the action's revert takes them
    stage: Literal["acting", "applied"] = "acting"  # acting: written before the change, which may be half done
    run_id: str | None = None
    owner: Owner
    written_at: float

    def what(self) -> str:
        return f"{self.fault_id} {self.action} on {self.container_name} ({self.service})"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class FaultJournal:
    """The journal folder: one file per (fault, container), each replaced atomically."""

    def __init__(self, folder: Path | None = None, run_id: str | None = None):
        self.folder = Path(folder) if folder is not None else journal_dir()
        self.run_id = run_id

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def write(self, record: UndoRecord) -> Path:
        """Write the record atomically: a reader (or a crash) sees the old file or the new one, never half."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(record.key)
        temporary = self.folder / f".{record.key}.{os.getpid()}.{threading.get_ident()}.tmp"
        data = record.model_dump_json(indent=1).encode()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        with contextlib.suppress(OSError):  # the rename itself durable (not every file system allows it)
            folder = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        return target

    def before(self, *, action: str, fault_id: str, target: str, options: dict[str, Any], service: str,
               container: Any, state: Any) -> UndoRecord:
        """The record written before a change (stage `acting`): the old values as captured."""
        stamp = time.time()
        raw = f"{int(stamp * 1000)}-{os.getpid()}-{fault_id}-{service}"
        record = UndoRecord(key=re.sub(r"[^A-Za-z0-9_.-]", "_", raw)[:200], action=action, fault_id=fault_id,
                            target=target, options=options, service=service, container_id=container.id,
                            container_name=container.name, state=state if _jsonable(state) else None,
                            run_id=self.run_id, owner=Owner.current(), written_at=stamp)
        self.write(record)
        return record

    def applied(self, record: UndoRecord, state: Any) -> UndoRecord:
        """The change is done: the record says so, with the state the undo uses (when it is data)."""
        updated = record.model_copy(update={"stage": "applied",
                                            "state": state if state is not None and _jsonable(state)
                                            else record.state})
        self.write(updated)
        return updated

    def update_state(self, record: UndoRecord, state: Any) -> UndoRecord:
        updated = record.model_copy(update={"state": state})
        self.write(updated)
        return updated

    def clear(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def entries(self) -> tuple[list[UndoRecord], list[tuple[Path, str]]]:
        """(records oldest first, [(file, why)] of files that cannot be read as a record)."""
        if not self.folder.is_dir():
            return [], []
        records, bad = [], []
        for path in sorted(self.folder.glob("*.json")):
            try:
                records.append(UndoRecord.model_validate_json(path.read_bytes()))
            except (OSError, ValidationError, ValueError) as error:
                bad.append((path, f"{type(error).__name__}: {str(error).splitlines()[0]}"))
        self._sweep_temporaries()
        return sorted(records, key=lambda r: r.written_at), bad

    def _sweep_temporaries(self) -> None:
        """Temporary files of writers that died before their os.replace (never a record: safe to drop)."""
        for path in self.folder.glob(".*.tmp"):
            parts = path.name.split(".")
            pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
            if pid is not None and pid != os.getpid() and _start_ticks(pid) is None:
                path.unlink(missing_ok=True)


def find_container(docker_client: Any, container_id: str) -> Any:
    """The container by id, whatever its state; ContainerGone when it no longer exists."""
    import docker.errors

    try:
        return docker_client.containers.get(container_id)
    except docker.errors.NotFound as error:
        raise ContainerGone(f"container {container_id[:12]} no longer exists (removed or recreated)") from error



# -------------------------------------------------------------------------------------------------------- gate
# Actions in flight per thread (a shared hold: faults act in parallel); a signal handler closes the gate and waits
# for the other threads' actions to end, so it never replays a record whose change is still being made.
_in_flight: dict[int, int] = {}
_gate = threading.Condition()
_closed = threading.Event()


@contextlib.contextmanager
def acting() -> Iterator[None]:
    """Held around each change and each undo of a container, so a signal handler never replays half an action."""
    me = threading.get_ident()
    with _gate:
        _in_flight[me] = _in_flight.get(me, 0) + 1
    try:
        yield
    finally:
        with _gate:
            _in_flight[me] -= 1
            if not _in_flight[me]:
                del _in_flight[me]
            _gate.notify_all()


def closed() -> bool:
    """True once the process is stopping on a signal: no new fault may act."""
    return _closed.is_set()


def close_gate(timeout: float = GATE_WAIT) -> bool:
    """Refuse new actions and wait (bounded) for those in flight in other threads; True when none is left."""
    _closed.set()
    me = threading.get_ident()
    with _gate:
        return _gate.wait_for(lambda: not any(n for thread, n in _in_flight.items() if thread != me), timeout)


def reopen_gate() -> None:
    _closed.clear()


__all__ = ["ContainerGone", "FaultJournal", "JOURNAL", "Owner", "UndoRecord", "acting", "close_gate", "closed",
           "find_container", "journal_dir", "reopen_gate"]
