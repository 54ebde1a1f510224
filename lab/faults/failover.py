"""What every "kill the primary, promote the other node" fault shares (PostgreSQL, redis).

Each step is recorded in faults.parquet with its timing, an error stops the fault as FaultActionError, the old
primary's restart policy is switched off before the kill (so the engine does not bring back a second primary)
and restored by the undo, and inject/undo each run once, whoever calls first.

The fault journal holds one record per failover from just before the kill: the old primary's container, its
restart policy and how far the fault got (killed, promoted, fenced, addresses, volumes), updated step by step.
replay() rebuilds the fault from it in a fresh process and runs the same undo (rejoin or rebuild, and fail back).
"""

from __future__ import annotations

import json
import time
from typing import Any

from lab.faults import journal as fault_journal
from lab.faults.catalogue import Fault, FaultActionError


def wait_for(check, timeout: float, what: str, pause: float = 0.5):
    """Poll check() until it returns a true value (exceptions count as not yet); bounded in time."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - not ready yet
            last = error
        time.sleep(pause)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s" + (f" (last error: {last})" if last else ""))


def restart_policy(container: Any) -> dict[str, Any]:
    """The container's docker restart policy as `container.update(restart_policy=...)` takes it back."""
    return dict(container.attrs["HostConfig"].get("RestartPolicy") or {"Name": "no"})


class PrimaryFailover(Fault):
    """Base of the failover faults: the target is the primary, the one other node of its kind takes over."""

    node_kind = "node"  # for messages: "PostgreSQL node", "redis data node"

    @classmethod
    def services_of(cls, target: str, topology=None) -> list[str]:
        return cls.allowed_targets(topology)  # both nodes change roles

    def __init__(self, instance, ctx):
        super().__init__(instance, ctx)
        self.state: dict[str, Any] = {}
        self.entry: fault_journal.UndoRecord | None = None

    # -- the journal ----------------------------------------------------------------------------------------------
    def _journal_data(self, **override: Any) -> dict[str, Any]:
        """The state as data (the containers are found again by id and service on replay)."""
        data = {k: v for k, v in self.state.items() if k not in ("old", "new", "killed_at")}
        return {**data, **override}

    def _journal_save(self, **override: Any) -> None:
        """Write (first call) or update the failover's undo record; `override` marks a step about to be taken."""
        journal = self.ctx.journal
        if journal is None:
            return
        data = self._journal_data(**override)
        if self.entry is None:
            self.entry = journal.before(action=self.instance.action, fault_id=self.instance.fault_id,
                                        target=self.instance.target, options=self.options.model_dump(mode="json"),
                                        service=self.instance.target, container=self.state["old"], state=data)
        else:
            self.entry = journal.update_state(self.entry, data)

    def _journal_clear(self) -> None:
        if self.entry is not None and self.ctx.journal is not None:
            self.ctx.journal.clear(self.entry.key)
            self.entry = None

    @classmethod
    def replay(cls, docker: Any, record: fault_journal.UndoRecord) -> dict[str, Any]:
        """The same undo as in the process that injected the fault, from the journaled state."""
        from lab.stack.containers import project_containers, remove_fault_helpers

        old = fault_journal.find_container(docker, record.container_id)
        left = remove_fault_helpers(docker, record.fault_id)  # the killed run's helper, had it been running
        rows: list = []
        fault = cls.from_record(docker, record, rows)
        other = fault._other_service()
        found = project_containers(docker, other)
        if not found:
            raise LookupError(f"service {other!r} has no container: the other node is needed for the undo")
        fault.state = {**(record.state or {}), "old": old, "new": found[0]}
        fault.injected = True
        fault.undo("journal")
        steps = [json.loads(row.detail) if row.detail else {} for row in rows]
        return {"steps": steps, **({"helpers_removed": left} if left else {})}

    def _other_service(self) -> str:
        others = [s for s in self.allowed_targets(self.ctx.topology) if s != self.instance.target]
        if len(others) != 1:
            raise ValueError(f"{self.instance.action} needs exactly one other {self.node_kind}; "
                             f"the topology has {others}")
        return others[0]

    def _step(self, phase: str, name: str, node: Any, fn, **extra: Any) -> Any:
        """Run one step, record it (ok or error) with its timing; errors are raised as FaultActionError."""
        start = time.time()
        try:
            detail = fn() or {}
        except Exception as error:
            self.record(phase, start, container=node.name, outcome="error", error=error, detail={"step": name, **extra})
            raise FaultActionError(f"{self.instance.fault_id} {name} on {node.name}: {error}") from error
        self.record(phase, start, container=node.name, detail={"step": name, **extra, **detail})
        if phase == "inject" and self.entry is not None:
            self._journal_save()  # how far the fault got (promoted, fenced ...)
        return detail

    def _start_inject(self, nodes) -> Any:
        """Call under self._lock. None when already injected or undone (recorded as skipped); else nodes(), whose
        first two are the old primary and the node taking over: kept in state with the old one's restart policy
        (the kill turns it off, the undo restores it)."""
        if self.undone or self.injected:
            self.record("inject", time.time(), container=None, outcome="skipped",
                        detail={"reason": "already undone" if self.undone else "already injected"})
            return None
        self.injected = True
        start = time.time()
        try:
            if fault_journal.closed():
                raise RuntimeError("the process is stopping on a signal: no new fault acts")
            found = nodes()
        except Exception as error:
            self.record("inject", start, container=None, outcome="error", error=error, detail={"step": "check"})
            raise FaultActionError(f"{self.instance.fault_id}: {error}") from error
        self.state.update(old=found[0], new=found[1], policy=restart_policy(found[0]))
        return found

    def _kill(self, old: Any) -> dict[str, Any]:
        """SIGKILL the old primary with its restart policy off; st["killed_at"] is the monotonic time of the kill."""
        st = self.state
        self._journal_save(killed=True)  # before anything changes: the policy, then the kill
        old.update(restart_policy={"Name": "no"})
        st["killed"] = True
        old.kill(signal="SIGKILL")
        st["killed_at"] = time.monotonic()
        wait_for(lambda: (old.reload(), old.status != "running")[1], 30, f"{old.name} to stop", 0.1)
        return {"restart_policy_was": st["policy"]}

    def _start_undo(self) -> bool:
        """Call under self._lock. True when there is a killed primary to bring back (the undo goes on)."""
        if self.undone:
            return False
        self.undone = True
        st = self.state
        if not st.get("killed"):
            if self.injected and "old" in st:  # killed nothing: only the restart policy may need restoring
                st["old"].update(restart_policy=st["policy"])
            return False
        return True

    def undo(self, reason: str = "scheduled") -> None:
        """Bring the killed primary back (once, whoever calls first); nothing to do when nothing was killed."""
        with self._lock:
            if not self._start_undo():
                return
            st = self.state
            self._bring_back(st["old"], st["new"], self.options.timeout, reason)
            self._journal_clear()

    def _bring_back(self, old: Any, new: Any, timeout: float, reason: str) -> None:
        """The kind's own way back after the kill (rejoin, rebuild, fail back), step by step via _step."""
        raise NotImplementedError


__all__ = ["PrimaryFailover", "wait_for"]
