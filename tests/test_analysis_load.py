"""lab.analysis.load: a run or a study folder as pandas frames, read with the writers' own schemas."""

import pytest
from study_fixture import build_study

from lab.analysis.load import load_run, load_study
from lab.faults.record import FAULT_SCHEMA
from lab.load.recorder import ATTEMPT_SCHEMA, REQUEST_SCHEMA, read_attempts


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("study") / "s")


def test_a_study_is_one_row_per_run_and_every_runs_rows_stacked(study):
    frames = load_study(study)
    run_ids = list(frames.runs["run_id"])
    assert len(run_ids) == 6 and frames.study["study_id"] == "20261201-2200-synthetic"
    expected = sum(len(read_attempts(p)) for p in (study / "runs").iterdir())
    assert len(frames.attempts) == expected
    assert set(frames.attempts["run_id"]) == set(run_ids) == set(frames.requests["run_id"])
    assert set(frames.metrics["run_id"]) == set(run_ids)
    assert list(frames.attempts.columns) == ATTEMPT_SCHEMA.names
    assert list(frames.requests.columns) == REQUEST_SCHEMA.names
    # only the fault run injected anything: its four rows (probe, inject, undo, probe)
    assert list(frames.faults["phase"]) == ["probe", "inject", "undo", "probe"]
    assert set(frames.faults["run_id"]) == {"faults-api"}
    assert frames.headline == {}  # 04-analysis has not run on it


def test_a_studys_runs_merge_onto_their_rows(study):
    frames = load_study(study)
    kinds = frames.attempts.merge(frames.runs[["run_id", "kind", "journey"]], on="run_id", suffixes=("", "_run"))
    assert len(kinds) == len(frames.attempts)
    assert set(kinds.loc[kinds["run_id"] == "faults-api", "kind"]) == {"faults"}


def test_one_run_of_a_study_by_id_and_an_unknown_id_is_named(study):
    frames = load_study(study)
    one = frames.run("capacity-4-api")
    assert len(one.attempts) == 80 and set(one.attempts["run_id"]) == {"capacity-4-api"}
    with pytest.raises(KeyError, match="'nope' is not a run of"):
        frames.run("nope")


def test_a_run_folder_with_its_audit_and_an_empty_proxy_log(study):
    run = load_run(study / "runs" / "faults-api")
    assert run.run_id == "faults-api" and run.meta["journey"] == "api"
    assert run.audit["clean"] is True and len(run.attempts) == 160
    assert list(run.faults.columns) == FAULT_SCHEMA.names and len(run.faults) == 4
    assert run.proxy_access.empty and "upstream_response_time" in run.proxy_access.columns


def test_an_interrupted_run_loads_with_what_it_recorded(study, tmp_path):
    import shutil

    copy = tmp_path / "interrupted"
    shutil.copytree(study / "runs" / "capacity-2-api", copy)
    (copy / "run.json").unlink()
    (copy / "audit.json").unlink()
    shutil.rmtree(copy / "metrics.parquet")
    run = load_run(copy)
    assert run.meta == {} and run.audit == {} and run.run_id == "interrupted"
    assert len(run.attempts) == 40 and run.metrics.empty and "metric" in run.metrics.columns


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        load_run(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_study(tmp_path)


def test_a_relative_path_is_found_under_data_runs_and_none_is_the_newest_study(study, monkeypatch, tmp_path):
    import os
    import shutil

    data = tmp_path / "data"
    (data / "runs").mkdir(parents=True)
    older = shutil.copytree(study, data / "runs" / "older")
    newer = shutil.copytree(study, data / "runs" / "newer")
    os.utime(older / "study.json", (1, 1))
    monkeypatch.setenv("PRETIX_LAB_DATA", str(data))
    monkeypatch.chdir(tmp_path)  # a notebook's directory is not the checkout: "older" exists only under data/runs
    assert load_study("older").path == older
    assert load_run("newer/runs/faults-api").path == newer / "runs" / "faults-api"
    assert load_study().path == newer


def test_no_study_at_all_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("PRETIX_LAB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="run `make study` first"):
        load_study()
