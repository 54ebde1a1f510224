"""RunFolder: the one owner of a run folder's file names and of run.json's schema version."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab.analysis.frames import Run
from lab.analysis.study import load_run, load_runs
from lab.evidence.audit import audit_run, load_run_meta
from lab.evidence.audit_rules import AuditResult, write_audit
from lab.evidence.runfolder import SCHEMA, UNVERSIONED, RunFolder, RunSchemaError
from lab.experiments.run import new_run_folder
from lab.faults.record import FaultRecord, fault_recorder, read_faults
from lab.load.recorder import AttemptRecord, Recorder, RequestRecord, read_attempts, read_requests

FIXTURES = Path(__file__).parent / "fixtures" / "real-study"
FIXTURE_RUNS = sorted(p for p in (FIXTURES / "runs").iterdir() if p.is_dir())
NAMES = {"PARAMS": "params.yaml", "ENVIRONMENT": "environment.json", "CUSTOMERS": "customers.parquet",
         "REQUESTS": "requests.parquet", "ATTEMPTS": "attempts.parquet", "METRICS": "metrics.parquet",
         "FAULTS": "faults.parquet", "LOGS": "logs", "PROXY_ACCESS": "proxy_access.parquet", "META": "run.json",
         "AUDIT": "audit.json"}


# ------------------------------------------------------------------------------------------------------ names
def test_the_names_are_the_layout_runs_on_disk_have():
    """Renaming a file would orphan every run recorded before: the names are pinned here, and every file of the
    committed real runs is one of them."""
    assert {name: getattr(RunFolder, name) for name in NAMES} == NAMES
    on_disk = {child.name for run in FIXTURE_RUNS for child in run.iterdir()}
    assert on_disk and on_disk <= set(NAMES.values()), on_disk - set(NAMES.values())


def test_each_path_is_its_name_in_the_folder(tmp_path):
    folder = RunFolder(tmp_path)
    paths = {"PARAMS": folder.params_path, "ENVIRONMENT": folder.environment_path,
             "CUSTOMERS": folder.customers_path, "REQUESTS": folder.requests_path,
             "ATTEMPTS": folder.attempts_path, "METRICS": folder.metrics_path, "FAULTS": folder.faults_path,
             "LOGS": folder.logs_dir, "PROXY_ACCESS": folder.proxy_access_path, "META": folder.meta_path,
             "AUDIT": folder.audit_path}
    assert {name: path.relative_to(tmp_path).as_posix() for name, path in paths.items()} == NAMES
    assert folder.log_of("proxy") == tmp_path / "logs" / "proxy.log"
    assert RunFolder(str(tmp_path)).path == tmp_path and folder.run_id == tmp_path.name


def test_the_writers_and_readers_use_the_folders_names(tmp_path):
    """The recorders, the fault record and the audit write where RunFolder says, and read back from there."""
    folder = RunFolder(tmp_path)
    with Recorder.requests(tmp_path, "r") as requests, Recorder.attempts(tmp_path, "r") as attempts:
        requests.record(RequestRecord(attempt_id="a1", buyer="b", journey="api", step="order", method="POST",
                                      url_path="/x", scheduled=1.0, start=1.0, end=1.5, status=201))
        attempts.record(AttemptRecord(attempt_id="a1", buyer="b", journey="api", scheduled=1.0, start=1.0, end=1.5,
                                      outcome="purchased"))
    with fault_recorder(tmp_path, "r") as faults:
        faults.record(FaultRecord(fault_id="f", target="proxy", container="proxy-1", action="kill", phase="inject",
                                  start=1.0, end=1.1, ok=True))
    write_audit(AuditResult.unreadable("not audited in this test"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([RunFolder.REQUESTS, RunFolder.ATTEMPTS,
                                                                 RunFolder.FAULTS, RunFolder.AUDIT])
    assert any(folder.requests_path.glob("part-*.parquet")) and any(folder.attempts_path.glob("part-*.parquet"))
    assert len(read_requests(tmp_path)) == len(read_attempts(tmp_path)) == len(read_faults(tmp_path)) == 1


# ----------------------------------------------------------------------------------------------- making one
def test_a_new_run_folder_is_made_once(tmp_path):
    folder = new_run_folder("ramp", "api", tmp_path)
    assert folder.path.parent == tmp_path and folder.path.is_dir()
    assert re.fullmatch(r"\d{8}T\d{6}Z-ramp-api", folder.run_id), folder.run_id
    with pytest.raises(FileExistsError):
        RunFolder.create(tmp_path, folder.run_id)
    assert RunFolder.holds_run(folder.path) is False  # nothing recorded yet
    folder.attempts_path.mkdir()
    assert RunFolder.holds_run(folder.path)


# ------------------------------------------------------------------------------------------------- schema
def test_run_json_is_written_once_with_the_schema(tmp_path):
    folder = RunFolder.create(tmp_path, "r1")
    assert folder.schema == UNVERSIONED  # no run.json yet: nothing newer to refuse
    folder.write_meta({"run_id": "r1", "started": 1.0})
    doc = json.loads(folder.meta_path.read_text())
    assert doc == {"schema": SCHEMA, "run_id": "r1", "started": 1.0}
    assert folder.read_meta() == doc and RunFolder.open(folder.path).schema == SCHEMA == 2
    with pytest.raises(FileExistsError):
        folder.write_meta({"run_id": "again"})
    with pytest.raises(FileExistsError):
        folder.write_once(RunFolder.META, "{}")
    assert load_run_meta(folder.path) == doc


def test_a_folder_without_schema_reads_as_schema_1():
    """The committed fixtures (and every run recorded before the field) have no `schema`: they still load."""
    run_dir = FIXTURE_RUNS[0]
    assert "schema" not in json.loads((run_dir / "run.json").read_text())
    folder = RunFolder.open(run_dir)
    assert folder.schema == UNVERSIONED == 1
    assert folder.read_meta()["run_id"] == run_dir.name
    run = load_run(run_dir).run
    assert run.meta["run_id"] == run_dir.name and len(run.attempts) > 0
    assert len(load_runs(FIXTURES)) == len(FIXTURE_RUNS)


def _newer(path: Path, schema: object = SCHEMA + 1) -> Path:
    path.mkdir(parents=True)
    (path / RunFolder.META).write_text(json.dumps({"schema": schema, "run_id": path.name, "started": 1.0}))
    (path / RunFolder.ATTEMPTS).mkdir()
    return path


def test_a_newer_schema_is_refused_by_every_reader(tmp_path):
    run_dir = _newer(tmp_path / "study" / "runs" / "from-the-future")
    words = rf"schema {SCHEMA + 1} is newer than this lab reads \(schemas 1 to {SCHEMA}\); update the lab"
    for read in (RunFolder.open, lambda p: RunFolder(p).read_meta(), Run.load, load_run, load_run_meta,
                 lambda p: load_runs(p.parent.parent)):
        with pytest.raises(RunSchemaError, match=words):
            read(run_dir)
    # the audit refuses it too, before it touches docker or pretix, and writes nothing
    with pytest.raises(RunSchemaError, match=words):
        audit_run(run_dir, docker_client=None, access=None, organizer="o", event="e")
    assert not RunFolder(run_dir).audit_path.exists()


@pytest.mark.parametrize("schema", ["2", 0, True, 2.0, None])
def test_a_schema_that_is_no_schema_number_is_refused(tmp_path, schema):
    run_dir = _newer(tmp_path / "odd", schema)
    with pytest.raises(RunSchemaError, match=r"is not a schema number \(an integer >= 1\)"):
        RunFolder.open(run_dir)


def test_a_run_json_that_is_no_object_is_refused(tmp_path):
    (tmp_path / RunFolder.META).write_text("[1, 2]")
    with pytest.raises(RunSchemaError, match="not a run record"):
        RunFolder(tmp_path).read_meta()
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        RunFolder.open(tmp_path / "missing")


def test_the_lab_writers_fixture_study_is_at_the_current_schema(tmp_path):
    """The synthetic study (tests/study_fixture.py, the report snapshot's other half) is written through RunFolder,
    so the snapshot covers a current-schema study beside the schema-1 real one."""
    from study_fixture import build_study

    study = build_study(tmp_path / "synthetic")
    runs = load_runs(study)
    assert len(runs) == 6 and {RunFolder.open(r.run.path).schema for r in runs} == {SCHEMA}
    assert all(r.run.meta["schema"] == SCHEMA for r in runs)
