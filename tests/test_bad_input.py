"""Bad input, from every parameter source, for every command: one line on stderr naming the field and the allowed
values, exit code 2, and nothing changed: the var, data and reports folders are as they were and Docker was never
asked (DOCKER_HOST points at a closed local port, and the docker SDK's client factory is a tripwire)."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from lab.cli import main

WORKLOAD = '{"model": "constant", "rate": 1, "duration": 30}'

# (id, argv with @file placeholders, files to write {name: text}, words the one line must contain)
CASES = [
    # --- CLI flags -------------------------------------------------------------------------------------------
    ("up-port", ["up", "--https-port", "80"], {}, ["--https-port", "1024<=x<=65535"]),
    ("up-replication", ["up", "--replication", "maybe"], {}, ["--replication", "'async'", "'sync'"]),
    ("up-workers", ["up", "--web-workers", "0"], {}, ["--web-workers", "1<=x<=16"]),
    ("up-limit-key", ["up", "--limit", "pretix-web-1:colour=blue"], {}, ["--limit", "colour", "allowed: cpus, memory"]),
    ("up-limit-service", ["up", "--limit", "pretix-web-9:cpus=1"], {}, ["limits", "pretix-web-9", "pretix-web-1"]),
    ("up-limit-memory", ["up", "--limit", "pretix-web-1:memory=200M"], {},
     ["limits.pretix-web-1.memory", "at least"]),
    ("up-engine", ["up", "--engine", "kube"], {}, ["--engine", "'compose'", "'swarm'"]),
    ("up-nodes", ["up", "--engine", "swarm", "--nodes", "2"], {}, ["nodes", ">= 3", "got 2"]),
    ("up-same-ports", ["up", "--https-port", "9000", "--http-port", "9000"], {}, ["http_port", "must differ"]),
    ("logs-service", ["logs", "pretix-web-9"], {}, ["SERVICE", "pretix-web-9", "the services are", "proxy"]),
    ("seed-customers", ["seed", "--customers", "0"], {}, ["--customers", "1<=x<=200000"]),
    ("seed-pool", ["seed", "--customers", "5", "--login-pool", "9"], {}, ["seed.customers.login_pool", "exceeds"]),
    ("load-journey", ["load", "--journey", "bus"], {}, ["journey", "No journey named 'bus'; known: api, shop"]),
    ("load-name", ["load", "--name", "Bad Name"], {}, ["name", "pattern", "a-z0-9"]),
    ("load-admission-mode", ["load", "--admission", '{"mode": "gatekeeper"}'], {},
     ["admission.mode", "'off'", "'waiting-room'"]),
    ("load-admission-shape", ["load", "--admission", "{[1]"], {}, ["--admission", "not JSON"]),
    ("load-admission-name", ["load", "--admission", "moat"], {}, ["admission.mode", "'off'", "(got 'moat')"]),
    ("load-queue", ["load", "--queue-max-wait", "-1"], {}, ["queue.max_wait", ">= 0"]),
    ("bench-loadgen-generators", ["bench", "loadgen", "--generators", "99"], {},
     ["--generators", "99 is not between 1 and", "allowed: 1.."]),
    ("load-generators", ["load", "--generators", "0"], {}, ["generators", "not between 1 and", "allowed: 1.."]),
    ("load-generators-closed", ["load", "--generators", "2", "--workload",
                                '{"model": "closed", "users": 2, "duration": 5}'], {},
     ["generators", "open workload", "use generators 1"]),
    ("load-faults-target", ["load", "--workload", WORKLOAD, "--faults",
                            '[{"at": 5, "target": "pretix-web-9", "action": "kill", "duration": 5}]'], {},
     ["faults.0.target", "'pretix-web-9' is not a target", "allowed: proxy"]),
    ("load-faults-action", ["load", "--workload", WORKLOAD, "--faults",
                            '[{"at": 5, "target": "redis", "action": "explode", "duration": 5}]'], {},
     ["faults.0.action", "known: cpu-throttle, kill"]),
    ("load-faults-late", ["load", "--workload", WORKLOAD, "--faults", "@faults"],
     {"faults": "faults:\n  - {at: 5, target: pretix-web-1, action: pause, duration: 50}\n"},
     ["faults.faults.0", "undone at 55 s, after the load's 30 s"]),
    ("load-faults-shape", ["load", "--faults", "just kill it"], {}, ["--faults", "a list of fault steps"]),
    ("faults-verb", ["faults", "redo"], {}, ["No such command 'redo'", "faults --help"]),
    ("analyse-utilisation", ["analyse", "@empty", "--utilisation", "0"], {}, ["--utilisation", "0<x<=1"]),
    ("analyse-not-a-run", ["analyse", "@empty"], {}, ["no run folder"]),
    ("report-not-a-run", ["report", "@empty", "--no-pdf"], {}, ["no run folder"]),
    ("audit-not-a-run", ["audit", "@empty"], {}, ["not a run folder", "run.json"]),
    ("compare-one", ["compare", "@empty"], {}, ["FOLDERS", "two or more run folders"]),
    ("compare-labels", ["compare", "@empty", "@empty", "--label", "a"], {}, ["--label", "given 1 times for 2"]),
    ("capacity-journey", ["capacity", "--journey", "bus"], {}, ["--journey", "'api'", "'shop'"]),
    ("capacity-p95", ["capacity", "--p95", "-1"], {}, ["slo_p95", "must be > 0"]),
    ("capacity-order", ["capacity", "--start", "50", "--max-rate", "10"], {}, ["start 50 is above max_rate 10"]),
    ("bench-rates", ["bench", "capacity", "--rates", "5,-1"], {}, ["--rates", "every rate must be > 0"]),
    ("bench-overload", ["bench", "admission", "--overload", "20"], {}, ["--overload", "1<=x<=10"]),
    ("bench-control", ["bench", "admission", "--control", "moat"], {}, ["--control", "'waiting-room'"]),
    ("bench-tuning-file", ["bench", "efficiency", "--compare-tuning", "@empty"], {},
     ["--compare-tuning", "is not a file", "allowed: stock, deployed or a parameter file"]),
    ("bench-tuning-knob", ["bench", "efficiency", "--compare-tuning", "@p"],
     {"p": "stack:\n  worker_prefetch_multiplier: 0\n"}, ["worker_prefetch_multiplier", "must be >= 1"]),
    ("bench-stack-file", ["bench", "efficiency", "--compare-stack", "@empty"], {},
     ["--compare-stack", "is not a file", "allowed: defaults or a parameter file"]),
    ("bench-stack-durability", ["bench", "efficiency", "--compare-stack", "@p"], {"p": "stack:\n  replication: sync\n"},
     ["stack.replication", "cannot vary replication", "allowed: health_interval, cron_interval"]),
    ("bench-stack-knob", ["bench", "efficiency", "--compare-stack", "@p"], {"p": "stack:\n  cron_interval: 1\n"},
     ["cron_interval", "must be >= 10"]),
    ("bench-stack-both", ["bench", "efficiency", "--compare-stack", "defaults", "--compare-tuning", "stock"], {},
     ["--compare-stack", "not both"]),
    ("bench-idle-seconds", ["bench", "idle", "--seconds", "1"], {}, ["--seconds", "5<=x<=600"]),
    ("params-stack-threads", ["up", "--params", "@p"], {"p": "stack:\n  web_threads: 4\n"},
     ["web_threads", "need web_worker_class gthread", "allowed: 1 with sync"]),
    ("bench-replication", ["bench", "failover", "--replication", "semi"], {}, ["--replication", "async, sync"]),
    ("bench-kill-at", ["bench", "failover", "--kill-at", "60"], {}, ["--kill-at", "0 < kill-at < 45"]),
    ("bench-loadgen", ["bench", "loadgen", "--rates", "fast"], {}, ["--rates", "comma-separated numbers"]),
    ("bench-efficiency-journey", ["bench", "efficiency", "--journey", "bus"], {}, ["--journey", "'api'", "'shop'"]),
    ("bench-efficiency-rates", ["bench", "efficiency", "--rates", "3,0"], {}, ["--rates", "every rate must be > 0"]),
    ("bench-efficiency-repeats", ["bench", "efficiency", "--repeats", "0"], {}, ["--repeats", "1<=x<=10"]),
    ("bench-efficiency-seconds", ["bench", "efficiency", "--seconds", "-5"], {}, ["--seconds", "x>0"]),
    ("bench-alone-host-journey", ["bench", "alone-host", "--journey", "bus"], {}, ["--journey", "'api'", "'shop'"]),
    ("bench-alone-host-rates", ["bench", "alone-host", "--rates", "0"], {}, ["--rates", "every rate must be > 0"]),
    ("bench-alone-host-repeats", ["bench", "alone-host", "--repeats", "11"], {}, ["--repeats", "1<=x<=10"]),
    ("study-preset", ["study", "--preset", "huge"], {},
     ["preset", "no preset named 'huge'", "known: default, ", "quick"]),
    ("study-both", ["study", "@study_ok", "--preset", "quick"], {"study_ok": "preset: mine\n"},
     ["--preset", "either PARAMS_FILE or --preset"]),
    ("jupyter-port", ["lab", "--port", "80"], {}, ["--port", "1024<=x<=65535"]),
    ("unknown-command", ["deploy"], {}, ["No such command 'deploy'"]),
    # --- --params files ----------------------------------------------------------------------------------------
    ("params-empty-stack", ["up", "--params", "@p"], {"p": "stack:\n"},
     ["stack", "the section is empty", "allowed: https_port, http_port"]),
    ("params-list", ["up", "--params", "@p"], {"p": "- web_workers: 2\n"}, ["expected a mapping", "got a list"]),
    ("params-stack-list", ["up", "--params", "@p"], {"p": "stack:\n  - 1\n"},
     ["stack", "got a list", "allowed parameters: https_port"]),
    ("params-stack-value", ["up", "--params", "@p"], {"p": "stack:\n  web_workers: 99\n"},
     ["web_workers", "must be >= 1 and <= 16 (got 99)"]),
    ("params-stack-unknown", ["up", "--params", "@p"], {"p": "stack:\n  colour: blue\n"},
     ["colour", "unknown parameter; allowed: https_port"]),
    ("params-not-yaml", ["up", "--params", "@p"], {"p": "stack: [\n"}, ["not a readable YAML file"]),
    ("params-empty-load", ["load", "--params", "@p"], {"p": "load:\n"}, ["load", "the section is empty", "journey"]),
    ("params-load-list", ["load", "--params", "@p"], {"p": "- 1\n"}, ["expected a mapping", "got a list"]),
    ("params-load-generators", ["load", "--params", "@p"], {"p": yaml.safe_dump({"load": {"generators": 99}})},
     ["generators", "99 is not between 1 and"]),
    ("params-load-mix", ["load", "--params", "@p"],
     {"p": yaml.safe_dump({"load": {"product_mix": {"Camarote": 1}}})},
     ["product_mix", "unknown product 'Camarote'", "the catalogue has: Bilhete Geral"]),
    # the file's own catalogue is the one a run buys from: the default mix names products it does not have
    ("params-load-catalogue", ["load", "--params", "@p"],
     {"p": yaml.safe_dump({"seed": {"catalogue": {"slug": "mine", "products": [
         {"name": "Early bird", "price": 10, "quota": 50}]}}, "load": {"journey": "api"}})},
     ["product_mix", "unknown product 'Bilhete Geral'", "the catalogue has: Early bird"]),
    ("params-load-catalogue-bad", ["load", "--params", "@p"],
     {"p": yaml.safe_dump({"seed": {"catalogue": {"slug": "Not A Slug"}}})}, ["seed.catalogue.slug", "pattern"]),
    ("params-seed-count", ["seed", "--params", "@p"], {"p": yaml.safe_dump({"seed": {"customers": {"count": 0}}})},
     ["seed.customers.count", "must be >= 1 and <= 200000"]),
    ("params-seed-list", ["seed", "--params", "@p"], {"p": "seed:\n  - catalogue\n"},
     ["seed", "got a list", "allowed parameters: catalogue, customers"]),
    ("params-seed-empty", ["seed", "--params", "@p"], {"p": "seed:\n"}, ["seed", "the section is empty"]),
    # --- study YAML ----------------------------------------------------------------------------------------------
    ("study-users", ["study", "@s"], {"s": yaml.safe_dump({"preset": "bad", "capacity_shop": {"users": [0]}})},
     ["capacity_shop.users", "every step needs 1 to 200 users"]),
    ("study-empty-stack", ["study", "@s"], {"s": "preset: bad\nstack:\n"},
     ["stack", "the section is empty", "allowed:"]),
    ("study-list", ["study", "@s"], {"s": "- preset\n"}, ["study parameters", "expected a mapping", "got a list"]),
    ("study-unknown", ["study", "--check", "@s"], {"s": "bogus: 1\n"},
     ["bogus", "unknown parameter; allowed: preset, description"]),
    ("study-fault", ["study", "@s"], {"s": yaml.safe_dump({"faults": {"steps": [
        {"at": 1, "target": "nope", "action": "kill", "duration": 1}]}})},
     ["faults.steps.0.target", "'nope' is not a target of 'kill'", "allowed: proxy"]),
    ("study-replication", ["study", "@s"], {"s": "stack:\n  replication: maybe\n"},
     ["stack.replication", "must be one of 'async', 'sync' (got 'maybe')"]),
    # --- workload JSON -------------------------------------------------------------------------------------------
    ("workload-model", ["load", "--workload", '{"model": "tsunami"}'], {},
     ["workload.model", "No workload model named 'tsunami'", "constant, ramp, spike, closed"]),
    ("workload-json", ["load", "--workload", "rate=5"], {}, ["--workload", "not JSON"]),
    ("workload-shape", ["load", "--workload", "[1, 2]"], {}, ["workload", "valid dictionary"]),
    ("workload-rate", ["load", "--workload", '{"model": "constant", "rate": 0, "duration": 5}'], {},
     ["workload.rate", "must be > 0 and <= 5000 (got 0)"]),
    ("workload-unknown", ["load", "--workload", '{"model": "constant", "rate": 1, "duration": 1, "users": 3}'], {},
     ["workload.users", "unknown parameter; allowed:", "rate"]),
    ("workload-stages", ["load", "--workload", '{"model": "ramp", "stages": []}'], {},
     ["workload.stages", "needs at least 1 item"]),
    ("workload-peak", ["load", "--workload", '{"model": "spike", "buyers": 50000, "within": 1}'], {},
     ["workload.within", "above the 5000/s limit"]),
    ("workload-in-params", ["load", "--params", "@p"],
     {"p": yaml.safe_dump({"load": {"workload": {"model": "closed", "users": 0, "duration": 5}}})},
     ["workload.users", "must be >= 1 and <= 10000 (got 0)"]),
]


def _tree(root) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The lab's folders in tmp (an earlier deployment's secrets included) and a Docker that must not be asked."""
    import docker

    lab_root = tmp_path / "lab"
    for name, env in (("var", "PRETIX_LAB_VAR"), ("data", "PRETIX_LAB_DATA"), ("reports", "PRETIX_LAB_REPORTS")):
        (lab_root / name).mkdir(parents=True)
        monkeypatch.setenv(env, str(lab_root / name))
    (lab_root / "var" / "deploy").mkdir()
    (lab_root / "var" / "deploy" / "secrets.json").write_text(json.dumps({"django_secret": "x"}))
    # a closed local port: a docker call would fail as "no engine" (exit 1), never as bad input; and as root the
    # lab would never try to start a dockerd for a tcp:// DOCKER_HOST
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    asked: list[str] = []

    def tripwire(*args, **kwargs):
        asked.append("docker")
        raise docker.errors.DockerException("the test forbids Docker")

    monkeypatch.setattr(docker, "from_env", tripwire)
    monkeypatch.setattr(docker, "DockerClient", tripwire)
    (tmp_path / "empty").mkdir()
    return tmp_path, lab_root, asked


@pytest.mark.parametrize(("argv", "files", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_field_exit_2_and_changes_nothing(sandbox, argv, files, words):
    tmp_path, lab_root, asked = sandbox
    paths = {"empty": str(tmp_path / "empty")}
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
        paths[name] = str(tmp_path / f"{name}.yaml")
    argv = [paths[a[1:]] if a.startswith("@") else a for a in argv]
    before = _tree(lab_root)
    result = CliRunner().invoke(main, argv)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert _tree(lab_root) == before, "bad input changed the lab's folders"
    assert asked == [], "bad input reached Docker"


def test_every_command_is_in_the_table():
    """A new command gets its bad-input rows here (lab down, status and engine take no value that can be bad)."""
    no_values = {"down", "status", "engine", "smoke"}
    covered = {c[1][0] for c in CASES}
    assert set(main.commands) - no_values <= covered, set(main.commands) - no_values - covered
    bench = {c[1][1] for c in CASES if c[1][0] == "bench"}
    assert set(main.commands["bench"].commands) <= bench


def test_smoke_refuses_an_existing_deployment_without_force(sandbox):
    """The deployment folder holds secrets: `lab smoke` stops before asking Docker anything (exit 2)."""
    tmp_path, lab_root, asked = sandbox
    before = _tree(lab_root)
    result = CliRunner().invoke(main, ["smoke"])
    assert result.exit_code == 2, result.output
    assert "--force" in result.stderr and "secrets" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _tree(lab_root) == before and asked == []


def test_smoke_with_force_goes_on_to_the_engine(sandbox):
    """With --force the refusal is lifted: the next step asks for the engine, which the sandbox refuses (exit 1)."""
    tmp_path, lab_root, asked = sandbox
    result = CliRunner().invoke(main, ["smoke", "--force"])
    assert result.exit_code == 1 and asked, result.output
    assert "error: " in result.stderr and "127.0.0.1:9" in result.stderr


def test_runtime_failure_exits_1_and_bad_input_2(sandbox):
    """The same command: bad input (2) before anything, a missing engine (1) after validation passed."""
    tmp_path, lab_root, asked = sandbox
    assert CliRunner().invoke(main, ["up", "--web-workers", "0"]).exit_code == 2 and asked == []
    result = CliRunner().invoke(main, ["engine"])
    assert result.exit_code == 1 and asked and len(result.stderr.strip().splitlines()) == 1
