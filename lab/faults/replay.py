"""Replaying the fault journal: each record left in it goes to its action's `replay` (Fault.replay, registered with
the action in the catalogue), in whatever process asks, from the record's data alone.

Kept apart from lab/faults/journal.py, which the catalogue itself uses to write records: the dispatch needs the
catalogue, the journal must not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lab.faults.catalogue import UnknownFaultError, faults
from lab.faults.journal import ContainerGone, FaultJournal, UndoRecord


@dataclass
class Replayed:
    status: Literal["restored", "gone", "failed", "held", "unreadable"]
    what: str
    detail: str = ""

    def line(self) -> str:
        words = {"restored": "restored", "gone": "nothing to restore", "failed": "COULD NOT restore",
                 "held": "left alone", "unreadable": "COULD NOT read"}
        return f"{words[self.status]}: {self.what}" + (f": {self.detail}" if self.detail else "")

    @property
    def ok(self) -> bool:
        return self.status in ("restored", "gone")


def replay_record(docker_client: Any, record: UndoRecord, journal: FaultJournal) -> Replayed:
    """Dispatch one record to its action's replay; the record is cleared when restored or when its container is
    gone, kept (with why) when the replay fails."""
    try:
        cls = faults.get(record.action)
    except UnknownFaultError as error:
        return Replayed("failed", record.what(), f"{error} (kept in the journal)")
    try:
        detail = cls.replay(docker_client, record) or {}
    except ContainerGone as error:
        journal.clear(record.key)
        return Replayed("gone", record.what(), str(error))
    except Exception as error:  # noqa: BLE001 - reported, the record stays for the next try
        return Replayed("failed", record.what(), f"{type(error).__name__}: {error} (kept in the journal)")
    journal.clear(record.key)
    return Replayed("restored", record.what(), json.dumps(detail, default=str, sort_keys=True))


def replay(docker_client: Any, journal: FaultJournal | None = None, *, force: bool = False, mine_only: bool = False,
           run_id: str | None = None, log: Callable[[str], None] | None = None) -> list[Replayed]:
    """Replay what the journal holds, newest first (the reverse of the order the faults acted in).

    mine_only: only the records of this process and its children (a signal handler, a run's last clean-up);
    otherwise also those whose process is gone, and with `force` those of a process that still runs.
    run_id: only that run's records.
    """
    journal = journal or FaultJournal()
    records, bad = journal.entries()
    results = [Replayed("unreadable", str(path), why) for path, why in bad]
    for record in reversed(records):
        if run_id is not None and record.run_id != run_id:
            continue
        mine = record.owner.is_mine()
        if mine_only and not mine:
            continue
        if not (mine or force) and record.owner.alive():
            results.append(Replayed("held", record.what(), f"process {record.owner.pid} that injected it still "
                                                           "runs and will undo it (--force to undo it now)"))
            continue
        result = replay_record(docker_client, record, journal)
        if log is not None:
            log(f"[faults] {result.line()}")
        results.append(result)
    return results


__all__ = ["Replayed", "replay", "replay_record"]
