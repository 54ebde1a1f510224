"""The CLI: every documented command exists, has --help, and refuses bad input before doing anything."""

import re

import pytest
from click.testing import CliRunner

from lab.cli import main
from lab.common.paths import ROOT

COMMANDS = ["up", "down", "status", "logs", "engine", "seed", "load", "audit", "bench", "smoke", "study", "analyse",
            "capacity", "report", "compare", "lab", "faults"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_commands_named_in_the_readme_and_makefile_exist():
    text = (ROOT / "README.md").read_text() + (ROOT / "Makefile").read_text()
    used = set(re.findall(r"\.venv/bin/lab ([a-z]+)", text))
    assert used, "the README names no lab command"
    assert used <= set(COMMANDS), used - set(COMMANDS)


def test_bad_limit_is_refused_before_anything_runs():
    result = CliRunner().invoke(main, ["up", "--limit", "pretix-web-1:colour=blue"])
    assert result.exit_code == 2 and "unknown limit 'colour'" in result.output


def test_bad_workload_is_refused_before_anything_runs():
    result = CliRunner().invoke(main, ["load", "--workload", '{"model": "tsunami"}'])
    assert result.exit_code == 2 and "No workload model named 'tsunami'" in result.output


def test_unknown_service_for_logs():
    result = CliRunner().invoke(main, ["logs", "pretix-web-9"])
    assert result.exit_code == 2 and "unknown service" in result.output


@pytest.mark.parametrize(("schedule", "says"), [
    ('[{"at": 5, "target": "pretix-web-9", "action": "kill", "duration": 5}]', "'pretix-web-9' is not a target"),
    ('[{"at": 5, "target": "redis", "action": "explode", "duration": 5}]', "No fault named 'explode'"),
    ('[{"at": 25, "target": "pretix-web-1", "action": "kill", "duration": 10}]', "after the load's 30 s"),
])
def test_bad_fault_schedule_is_refused_before_anything_runs(schedule, says):
    """Refused by validation, before the deployment is even looked up (no stack runs in this test)."""
    workload = '{"model": "constant", "rate": 1, "duration": 30}'
    result = CliRunner().invoke(main, ["load", "--workload", workload, "--faults", schedule])
    assert result.exit_code == 2 and "faults" in result.output and says in result.output, result.output


def test_fault_schedule_from_a_yaml_file(tmp_path):
    path = tmp_path / "faults.yaml"
    path.write_text("faults:\n  - {at: 5, target: pretix-web-1, action: pause, duration: 50}\n")
    result = CliRunner().invoke(main, ["load", "--workload", '{"model":"constant","rate":1,"duration":30}',
                                       "--faults", str(path)])
    assert result.exit_code == 2 and "undone at 55 s, after the load's 30 s" in result.output, result.output


def test_analyse_a_study_folder_prints_the_verdicts(tmp_path):
    from study_fixture import build_study

    study = build_study(tmp_path / "study")
    result = CliRunner().invoke(main, ["analyse", str(study), "--target", "300"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("FAIL: study (6 run(s))")  # the api p95 at its best steady step breaks the SLO
    # the claim is the ramp's best step within every SLO (4/s); the 8/s step delivered 360/min, p95 over the SLO
    assert "FAIL    api: sustained within SLO: 240/min (1 run: no interval) (target >= 300/min" in result.output
    assert "capacity api: at most 360/min" in result.output and "total 0.078 s -> 0.56 cores" in result.output
    gated = CliRunner().invoke(main, ["analyse", str(study), "--target", "300", "--fail-on-verdict"])
    assert gated.exit_code == 3 and gated.output.startswith("FAIL: study"), gated.output  # a pipeline can gate
    bad = CliRunner().invoke(main, ["analyse", str(study), "--utilisation", "0"])
    assert bad.exit_code == 2 and "--utilisation" in bad.output and "0<x<=1" in bad.output


def test_compare_refuses_one_run_and_wrong_labels(tmp_path):
    one = tmp_path / "run"
    one.mkdir()
    result = CliRunner().invoke(main, ["compare", str(one)])
    assert result.exit_code == 2 and "two or more run folders" in result.output
    result = CliRunner().invoke(main, ["compare", str(one), str(one), "--label", "a"])
    assert result.exit_code == 2 and "--label given 1 times for 2 folders" in result.output


def test_a_published_fail_verdict_exits_3_only_when_asked(tmp_path):
    """`lab study` and `lab report` read the verdict the study's report published in headline.json."""
    import json

    import click

    from lab.cli.base import verdict_exit
    from lab.report.publish import study_verdict

    assert study_verdict(tmp_path) is None  # a run folder, or a study not yet reported
    (tmp_path / "headline.json").write_text(json.dumps({"verdict": "FAIL"}))
    assert study_verdict(tmp_path) == "FAIL"
    verdict_exit("FAIL", False)
    verdict_exit("UNDECIDED", True)
    verdict_exit("PASS", True)
    with pytest.raises(click.exceptions.Exit) as gated:
        verdict_exit("FAIL", True)
    assert gated.value.exit_code == 3


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS if c not in ("bench", "faults")],
                                     ["bench", "capacity"], ["faults", "undo"]])
def test_every_help_lists_its_exit_codes(command):
    text = CliRunner().invoke(main, [*command, "--help"]).output
    assert "Exit codes:" in text and "0  success" in text, text
    if command and command[0] in ("study", "analyse", "report"):
        assert "--fail-on-verdict" in text and "3  the verdict is FAIL" in text


def test_faults_undo_with_an_empty_journal_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PRETIX_LAB_VAR", str(tmp_path))
    result = CliRunner().invoke(main, ["faults", "undo"])
    assert result.exit_code == 0 and "nothing to undo: the fault journal is empty" in result.output
    assert CliRunner().invoke(main, ["faults", "undo", "--help"]).exit_code == 0
