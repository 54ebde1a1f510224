"""The fault journal at the unit level: its file format, atomic writes, clearing on undo, and the dispatch of each
record kind to its action's replay (no docker: the stack test tests/test_fault_journal.py restores real faults)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import docker.errors
import pytest

from lab.faults import Fault, FaultActionError, FaultContext, FaultInstance, faults
from lab.faults.failover import PrimaryFailover
from lab.faults.journal import FaultJournal, Owner, UndoRecord
from lab.faults.replay import replay

ROOT = Path(__file__).resolve().parents[1]


class _Box:
    """A pretend container: an id, a name and a value the fault changes."""

    def __init__(self, name: str, value: int = 4):
        self.id, self.name, self.value = f"id-{name}", name, value


class _Limit(Fault):
    """A plugin fault that lowers a value; it checks the journal holds its undo before it acts."""

    seen_before_apply: list[UndoRecord] = []
    boxes: dict[str, _Box] = {}
    replayed: list[UndoRecord] = []

    def containers(self):
        return [(self.instance.target, _Limit.boxes[self.instance.target])]

    def capture(self, container):
        return {"value": container.value}

    def apply(self, container):
        _Limit.seen_before_apply.extend(self.ctx.journal.entries()[0])
        if container.name == "broken":
            raise RuntimeError("refused half way")
        container.value = 1
        return {"value": 4, "lowered_to": 1}

    def revert(self, container, state):
        if container.name == "stuck":
            raise ConnectionError("engine busy")
        container.value = state["value"]
        return {"value": container.value}

    @classmethod
    def replay(cls, docker, record):
        if record.target == "failing":
            raise ConnectionError("engine busy")
        _Limit.replayed.append(record)
        return {"restored": record.state}


@pytest.fixture
def limit_fault(monkeypatch):
    monkeypatch.setattr("lab.faults.catalogue.UNDO_RETRY_PAUSE", 0.0)
    _Limit.seen_before_apply, _Limit.replayed = [], []
    _Limit.boxes = {name: _Box(name) for name in ("web", "broken", "stuck")}
    faults.register("test-limit", _Limit)
    yield _Limit
    faults.unregister("test-limit")


def _record(journal: FaultJournal, action: str, target: str, owner: Owner | None = None, **extra) -> UndoRecord:
    record = journal.before(action=action, fault_id=f"f-{action}", target=target, options={}, service=target,
                            container=_Box(target), state={"old": 4, **extra})
    if owner is not None:
        record = record.model_copy(update={"owner": owner})
        journal.write(record)
    return record


def _dead_owner() -> Owner:
    child = subprocess.Popen(["true"])
    child.wait()
    return Owner(pid=child.pid, started=1, host=Owner.current().host)


# --- the file ------------------------------------------------------------------------------------------------------

def test_a_record_is_written_whole_private_and_read_back_equal(tmp_path):
    journal = FaultJournal(tmp_path / "j", run_id="run-1")
    record = _record(journal, "pause", "pretix-web-1")
    path = journal.path(record.key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    doc = json.loads(path.read_text())
    assert doc["action"] == "pause" and doc["container_id"] == "id-pretix-web-1" and doc["stage"] == "acting"
    assert doc["owner"]["pid"] == os.getpid() and doc["state"] == {"old": 4} and doc["run_id"] == "run-1"
    assert journal.entries() == ([record], [])


def test_a_failed_replace_keeps_the_old_record_and_leaves_no_temporary(tmp_path, monkeypatch):
    journal = FaultJournal(tmp_path)
    record = _record(journal, "cpu-throttle", "pretix-web-2")
    before = journal.path(record.key).read_bytes()

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        journal.applied(record, {"NanoCpus": 999})
    assert journal.path(record.key).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{record.key}.json"]


def test_an_unreadable_file_is_reported_and_kept(tmp_path):
    journal = FaultJournal(tmp_path)
    (tmp_path / "half.json").write_text('{"action": "pau')
    results = replay(None, journal)
    assert [r.status for r in results] == ["unreadable"] and "half.json" in results[0].what
    assert (tmp_path / "half.json").exists()


# --- inject writes before it acts; undo clears ------------------------------------------------------------------

def test_inject_journals_the_old_value_before_it_acts_and_undo_clears_it(tmp_path, limit_fault):
    journal = FaultJournal(tmp_path, run_id="run-2")
    fault = limit_fault(FaultInstance("f1", "test-limit", "web"), FaultContext(docker=None, journal=journal))
    fault.inject()
    [before] = limit_fault.seen_before_apply
    assert before.stage == "acting" and before.state == {"value": 4} and before.container_name == "web"
    [after] = journal.entries()[0]
    assert after.key == before.key and after.stage == "applied" and after.state == {"value": 4, "lowered_to": 1}
    assert limit_fault.boxes["web"].value == 1
    fault.undo()
    assert limit_fault.boxes["web"].value == 4
    assert journal.entries() == ([], [])


def test_a_failed_apply_and_a_failed_undo_leave_their_records(tmp_path, limit_fault):
    journal = FaultJournal(tmp_path)
    broken = limit_fault(FaultInstance("f1", "test-limit", "broken"), FaultContext(docker=None, journal=journal))
    with pytest.raises(FaultActionError, match="refused half way"):
        broken.inject()
    stuck = limit_fault(FaultInstance("f2", "test-limit", "stuck"), FaultContext(docker=None, journal=journal))
    stuck.inject()
    with pytest.raises(FaultActionError, match="engine busy"):
        stuck.undo()
    left = {(r.fault_id, r.stage) for r in journal.entries()[0]}
    assert left == {("f1", "acting"), ("f2", "applied")}


# --- replay: dispatch per record kind -----------------------------------------------------------------------------

class _NoContainers:
    """A docker client whose every container is gone (what replay meets after `lab down`)."""

    class containers:  # noqa: N801 - docker's attribute name
        @staticmethod
        def get(container_id):
            raise docker.errors.NotFound(f"No such container: {container_id}")


@pytest.mark.parametrize("action", ["kill", "pause", "restart", "partition", "cpu-throttle", "memory-squeeze",
                                    "pg-failover", "redis-failover"])
def test_every_builtin_record_kind_dispatches_to_its_action_and_a_gone_container_clears_it(tmp_path, action):
    journal = FaultJournal(tmp_path)
    target = {"pg-failover": "postgres-primary", "redis-failover": "redis"}.get(action, "pretix-web-1")
    _record(journal, action, target, owner=_dead_owner())
    failover = action.endswith("-failover")  # a failover replays its whole undo; the others revert one change
    assert faults.get(action).replay.__func__ is (PrimaryFailover if failover else Fault).replay.__func__
    [result] = replay(_NoContainers(), journal)
    assert result.status == "gone", result.line()
    assert f"f-{action} {action} on {target}" in result.what and "no longer exists" in result.detail
    assert journal.entries() == ([], [])


def test_replay_restores_newest_first_clears_and_says_why_it_could_not(tmp_path, limit_fault):
    journal = FaultJournal(tmp_path)
    dead = _dead_owner()
    first = _record(journal, "test-limit", "web", owner=dead)
    time.sleep(0.01)
    second = _record(journal, "test-limit", "db", owner=dead)
    failing = _record(journal, "test-limit", "failing", owner=dead)
    unknown = _record(journal, "test-vanished", "web", owner=dead)
    held = _record(journal, "test-limit", "held", owner=Owner(pid=1, started=None, host=dead.host))
    results = {" ".join(r.what.split()[1:4:2]): r for r in replay(None, journal)}
    assert [r.target for r in limit_fault.replayed] == ["db", "web"]  # newest first
    assert results["test-limit web"].status == "restored" and '"old": 4' in results["test-limit web"].detail
    assert results["test-limit failing"].status == "failed" and "engine busy" in results["test-limit failing"].detail
    assert results["test-vanished web"].status == "failed" and "No fault named 'test-vanished'" in \
        results["test-vanished web"].detail
    assert results["test-limit held"].status == "held" and "still runs" in results["test-limit held"].detail
    left = {r.key for r in journal.entries()[0]}
    assert left == {failing.key, unknown.key, held.key} and first.key not in left and second.key not in left
    assert [r.status for r in replay(None, journal, force=True) if "held" in r.what] == ["restored"]


def test_replay_of_mine_only_leaves_other_processes_records(tmp_path, limit_fault):
    journal = FaultJournal(tmp_path, run_id="mine")
    mine = _record(journal, "test-limit", "web")
    other = _record(journal, "test-limit", "db", owner=_dead_owner())
    assert [r.status for r in replay(None, journal, mine_only=True)] == ["restored"]
    assert [r.key for r in journal.entries()[0]] == [other.key] and mine.key != other.key


# --- signals: the handler replays this process's records and exits non-zero -----------------------------------

SCRIPT = textwrap.dedent("""
    import sys, time
    from lab.faults import Fault, faults
    from lab.faults.journal import FaultJournal
    from lab.faults.signals import undo_on_signals

    class Marker(Fault):
        @classmethod
        def replay(cls, docker, record):
            open(sys.argv[1], "w").write(record.fault_id)
            return {"marked": True}

    class Box:
        id, name = "id-box", "box"

    faults.register("test-marker", Marker)
    FaultJournal().before(action="test-marker", fault_id="f1-marker", target="box", options={}, service="box",
                          container=Box(), state=None)
    with undo_on_signals(lambda: None, print):
        print("ready", flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_undoes_the_journal_and_exits_non_zero(tmp_path, signum):
    marker = tmp_path / "undone"
    env = {**os.environ, "PRETIX_LAB_VAR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signum)
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
    print(out)
    assert child.returncode == 128 + signum
    assert marker.read_text() == "f1-marker"
    assert "restored: f1-marker test-marker on box" in out
    assert FaultJournal(tmp_path / "var" / "deploy" / "faults-journal").entries() == ([], [])


ORDERLY = textwrap.dedent("""
    import subprocess, sys, time
    from lab.faults import Fault, faults
    from lab.faults.signals import undo_left, undo_on_signals

    class Marker(Fault):
        @classmethod
        def replay(cls, docker, record):
            open(sys.argv[1], "w").write(record.fault_id)
            return {}

    faults.register("test-marker", Marker)
    KERNEL = '''
    from lab.faults.journal import FaultJournal
    class Box:
        id, name = "id-box", "box"
    FaultJournal().before(action="test-marker", fault_id="f1-kernel", target="box", options={}, service="box",
                          container=Box(), state=None)
    '''
    subprocess.run([sys.executable, "-c", KERNEL], check=True)  # a notebook kernel that died mid-fault
    with undo_on_signals(lambda: None, print, orderly=True) as caught:
        try:
            print("ready", flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            undo_left(None, print)
            sys.exit(caught.code)
""")


def test_the_orderly_way_interrupts_then_replays_what_a_dead_child_left(tmp_path):
    """`lab study`: the signal stops the study like Ctrl-C; what its stopped kernel left is replayed after."""
    marker = tmp_path / "undone"
    env = {**os.environ, "PRETIX_LAB_VAR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", ORDERLY, str(marker)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGHUP)
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
    print(out)
    assert child.returncode == 128 + signal.SIGHUP
    assert "SIGHUP: stopping" in out and "restored: f1-kernel test-marker on box" in out
    assert marker.read_text() == "f1-kernel"


def test_lab_up_replays_what_a_dead_run_left_and_leaves_a_live_runs_records(tmp_path, monkeypatch, limit_fault):
    """deploy.up's first step (before compose looks at the containers), and its second one after the services."""
    from lab.stack.deploy import _undo_faults_left

    monkeypatch.setenv("PRETIX_LAB_VAR", str(tmp_path))
    journal = FaultJournal()
    _record(journal, "test-limit", "web", owner=_dead_owner())
    _record(journal, "test-limit", "db", owner=Owner(pid=1, started=None, host=Owner.current().host))
    said: list[str] = []
    lines = _undo_faults_left(None, said.append)
    assert [line.split(":")[0] for line in lines] == ["left alone", "restored"] and len(said) == 2
    assert [r.target for r in limit_fault.replayed] == ["web"]
    assert _undo_faults_left(None, said.append, again=True) == []  # the live run's record is not said twice
    assert [r.target for r in journal.entries()[0]] == ["db"]
