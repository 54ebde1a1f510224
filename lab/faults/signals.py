"""SIGINT, SIGTERM and SIGHUP undo the active faults before the process ends: a `lab load` stopped by Ctrl-C, by a
CI cancel or a `timeout` (SIGTERM), or by a closed terminal (SIGHUP) leaves no container paused, throttled or cut off.

Two ways, one per kind of command:
  replay   (`lab load`: the faults act in this process) the handler closes the gate (no new fault acts, the
           actions in flight end), replays this process's journal records, says what it restored and exits with
           `exit_code` (default 128 + the signal's number; SystemExit: the run's `finally` blocks still write
           what they can).
  orderly  (`lab study`: the faults act in a notebook kernel, a child process) the handler raises
           KeyboardInterrupt, so the study stops its kernel and publishes what it has; the caller then replays
           what the kernel left (undo_left) and exits.
A second signal while the first is handled ends the process at once: the journal keeps what was not undone.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lab.faults import journal as fault_journal
from lab.faults.replay import replay

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Caught:
    """The signal that stopped the command (None while none came)."""

    signum: int | None = None

    @property
    def code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


def undo_left(docker_client: Any, log: Callable[[str], None], *, mine_only: bool = False) -> list:
    """Replay the journal (this process's records, or every one whose process is gone) and log each outcome."""
    results = replay(docker_client, mine_only=mine_only)
    for outcome in results:
        log(f"[faults] {outcome.line()}")
    return results


@contextlib.contextmanager
def undo_on_signals(docker_factory: Callable[[], Any], log: Callable[[str], None], *,
                    orderly: bool = False, exit_code: int | None = None) -> Iterator[Caught]:
    """Install the handlers for the block (main thread only), restore the previous ones after it."""
    caught = Caught()

    def handler(signum: int, frame: Any) -> None:
        if caught.signum is not None:  # a second signal: stop now
            log(f"{signal.Signals(signum).name} again: stopping now; `lab faults undo` restores what is left")
            raise SystemExit(exit_code or 128 + signum)
        caught.signum = signum
        if orderly:
            log(f"{caught.name}: stopping; the active faults are undone from the journal")
            raise KeyboardInterrupt
        log(f"{caught.name}: undoing the active faults from the journal")
        if not fault_journal.close_gate():
            log("an action still runs after the wait; undoing what the journal holds anyway")
        try:
            results = undo_left(docker_factory(), log, mine_only=True)
        except Exception as error:  # noqa: BLE001 - say so; the journal keeps the records
            log(f"the undo failed: {type(error).__name__}: {error}; `lab faults undo` tries again")
        else:
            if not results:
                log("no fault was active")
        raise SystemExit(exit_code or caught.code)

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield caught
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        fault_journal.reopen_gate()


__all__ = ["Caught", "SIGNALS", "undo_left", "undo_on_signals"]
