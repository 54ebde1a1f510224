"""The test suite runs in its own world (tests/conftest.py), so it never touches a user's deployment.

Unit tests: the world is read from the environment, a bad value stops with one line naming the variable. The stack
test: a deployment in the default world (project pretix-lab, var/, ports 8443/8080) is the same, healthy deployment
after the test world was faulted and torn down with its volumes, which used to remove the default one.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from lab.cli import main
from lab.common import world
from lab.faults import run_schedule
from lab.stack import deploy, topology
from lab.stack.compose import Compose
from lab.stack.containers import LABEL_PROJECT
from lab.stack.params import StackParams
from lab.stack.topology import long_running

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENV = {k: v for k, v in os.environ.items() if k not in world.WORLD_VARS}  # the cache stays shared


# --- the world comes from the environment -------------------------------------------------------------------------

def test_the_session_runs_in_a_world_of_its_own():
    assert world.project() == "pretix-lab-test" != world.DEFAULT_PROJECT
    assert world.var_dir() == ROOT / "var-test" and world.data_dir() == ROOT / "var-test" / "data"
    p = StackParams()
    assert (p.https_port, p.http_port) == (18443, 18080)
    default = StackParams(https_port=8443, http_port=8080, edge_subnet="10.213.0.0/24",
                          backend_subnet="10.214.0.0/24")
    for ours in (p.edge_subnet, p.backend_subnet):
        for theirs in (default.edge_subnet, default.backend_subnet):
            assert not ipaddress.ip_network(ours).overlaps(ipaddress.ip_network(theirs))
    command = Compose({}).command("ps")
    assert command[command.index("-p") + 1] == "pretix-lab-test"
    assert topology.PROJECT == "pretix-lab-test"  # the name older code imports reads the world too


def test_unset_variables_give_the_default_world(monkeypatch):
    for name in (*world.WORLD_VARS, world.CACHE_VAR):
        monkeypatch.delenv(name, raising=False)
    assert world.project() == "pretix-lab" and world.var_dir() == ROOT / "var"
    assert world.cache_dir() == ROOT / "var" / "cache"
    p = StackParams()
    assert (p.https_port, p.http_port, p.edge_subnet, p.backend_subnet) == (8443, 8080, "10.213.0.0/24",
                                                                            "10.214.0.0/24")
    assert Compose({}).command("ps")[2] == "pretix-lab"


def test_every_use_reads_the_current_world(monkeypatch):
    monkeypatch.setenv(world.PROJECT_VAR, "another-lab")
    monkeypatch.setenv(world.EDGE_SUBNET_VAR, "10.99.0.0/24")
    assert Compose({}).command("ps")[2] == "another-lab"
    assert StackParams().address(11) == "10.99.0.11"
    assert topology.PROJECT == "another-lab"


@pytest.mark.parametrize("name,value,words", [
    ("PRETIX_LAB_PROJECT", "Pretix Lab", ["PRETIX_LAB_PROJECT", "lowercase letters, digits"]),
    ("PRETIX_LAB_PROJECT", "-lab", ["PRETIX_LAB_PROJECT", "starting with a letter or digit"]),
    ("PRETIX_LAB_HTTPS_PORT", "https", ["PRETIX_LAB_HTTPS_PORT", "1024 to 65535"]),
    ("PRETIX_LAB_HTTP_PORT", "80", ["PRETIX_LAB_HTTP_PORT", "1024 to 65535"]),
    ("PRETIX_LAB_HTTP_PORT", "18443", ["PRETIX_LAB_HTTPS_PORT", "PRETIX_LAB_HTTP_PORT", "must differ"]),
    ("PRETIX_LAB_EDGE_SUBNET", "8.8.8.0/24", ["PRETIX_LAB_EDGE_SUBNET", "private IPv4 network of /28 or larger"]),
    ("PRETIX_LAB_EDGE_SUBNET", "10.224.0.0/25", ["PRETIX_LAB_EDGE_SUBNET", "overlap"]),
    ("PRETIX_LAB_BACKEND_SUBNET", "10.214.0.0/26", ["PRETIX_LAB_BACKEND_SUBNET", "/25 or larger"]),
    ("PRETIX_LAB_VAR", str(ROOT / "pyproject.toml"), ["PRETIX_LAB_VAR", "must be a folder"]),
])
def test_a_bad_world_stops_every_command_with_one_line(monkeypatch, tmp_path, name, value, words):
    # a command that went on would write its secrets here
    result = CliRunner().invoke(main, ["up"], env={world.VAR_VAR: str(tmp_path / "var"), name: value})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "var").exists()


# --- the stack: a user's deployment outlives the test world's teardown and faults --------------------------------

def _lab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "lab.cli", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=900)
    print(f"lab {' '.join(args)} ({'default' if env is DEFAULT_ENV else 'test'} world): exit {proc.returncode} "
          f"in {time.monotonic() - began:.1f} s")
    return proc


def _of(project: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_PROJECT}={project}"]}


def _snapshot(client, project: str) -> dict:
    """Everything a fault or a teardown of the wrong project would change: ids, states, health, start times,
    restart policies, limits, network endpoints; the project's volumes and networks."""
    containers = {}
    for c in client.containers.list(all=True, filters=_of(project)):
        state, host = c.attrs["State"], c.attrs["HostConfig"]
        containers[c.name] = {
            "service": c.labels.get("com.docker.compose.service"), "id": c.id, "status": c.status,
            "health": (state.get("Health") or {}).get("Status"),
            "started": state["StartedAt"], "restarts": c.attrs["RestartCount"],
            "restart_policy": host["RestartPolicy"]["Name"], "cpus": host["NanoCpus"], "memory": host["Memory"],
            "endpoints": {n: e["EndpointID"] for n, e in c.attrs["NetworkSettings"]["Networks"].items()},
        }
    return {"containers": containers,
            "networks": sorted((n.name, n.id) for n in client.networks.list(filters=_of(project))),
            "volumes": sorted(v.name for v in client.volumes.list(filters=_of(project)))}


def _digest(folder: Path) -> str | None:
    """Every file of the deploy folder (secrets, CA, tokens, params) by name and content."""
    if not folder.exists():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _healthy(snapshot: dict) -> bool:
    by_service = {c["service"]: c for c in snapshot["containers"].values()}
    return all(by_service.get(s, {}).get("status") == "running" and by_service[s]["health"] in ("healthy", None)
               for s in long_running())


def _https_answers(deploy_folder: Path) -> bool:
    """/healthcheck/ through the default world's proxy, verified with its own CA (when this clone made it)."""
    params = json.loads((deploy_folder / "params.json").read_text())
    r = httpx.get(f"https://127.0.0.1:{params['https_port']}/healthcheck/", verify=str(deploy_folder / "tls/ca.crt"),
                  timeout=10)
    return r.status_code == 200


@pytest.mark.stack
@pytest.mark.teardown
def test_a_default_world_deployment_outlives_the_test_worlds_faults_and_teardown(docker_client, tmp_path):
    default_project, default_deploy = world.DEFAULT_PROJECT, ROOT / "var" / "deploy"
    assert world.project() != default_project
    existing = _snapshot(docker_client, default_project)
    # a user's deployment, running or stopped, is left exactly as it is; the test makes one only where none is
    created = not (existing["containers"] or existing["volumes"] or existing["networks"] or default_deploy.exists())
    try:
        if created:
            up = _lab(DEFAULT_ENV, "up")
            assert up.returncode == 0, up.stderr[-3000:]
        before, secrets_before = _snapshot(docker_client, default_project), _digest(default_deploy)
        if created:
            assert _healthy(before) and _https_answers(default_deploy), before
        print(f"default world: {len(before['containers'])} containers, {len(before['volumes'])} volumes "
              f"({'made by this test' if created else 'a deployment that was already there'})")

        # the test world: up (unless the session's stack still runs), a kill and a partition, then down --volumes
        ours = _snapshot(docker_client, world.project())
        if not (_healthy(ours) and (world.var_dir() / "deploy" / "pretix.json").exists()):
            began = time.monotonic()
            deploy.up(StackParams(), log=lambda _m: None)
            print(f"test world deployed in {time.monotonic() - began:.1f} s")
        ours = _snapshot(docker_client, world.project())
        assert not {c["id"] for c in ours["containers"].values()} & {c["id"] for c in before["containers"].values()}
        assert {f"{world.project()}_edge", f"{world.project()}_backend"} <= {n for n, _ in ours["networks"]}
        schedule = {"faults": [{"at": 0, "target": "pretix-web-1", "action": "kill", "duration": 2},
                               {"at": 0, "target": "pretix-web-2", "action": "partition", "duration": 2}],
                    "steady_state": {"health": False, "containers": False, "throughput": False, "shop": False,
                                     "settle": 0}}
        result = asyncio.run(run_schedule(schedule, docker_client, tmp_path, log=print))
        assert result.ok and all(o.undone_at for o in result.faults), result.describe()
        hurt = _snapshot(docker_client, world.project())["containers"][f"{world.project()}-pretix-web-1-1"]
        assert hurt["started"] != ours["containers"][f"{world.project()}-pretix-web-1-1"]["started"]  # it acted
        down = _lab(dict(os.environ), "down", "--volumes")
        assert down.returncode == 0, down.stderr[-3000:]
        assert deploy.leftovers(docker_client) == [] and not (world.var_dir() / "deploy").exists()

        after = _snapshot(docker_client, default_project)
        assert after == before
        assert _digest(default_deploy) == secrets_before
        if created:
            assert _healthy(after) and _https_answers(default_deploy)
    finally:
        if created:
            gone = _lab(DEFAULT_ENV, "down", "--volumes")
            assert gone.returncode == 0, gone.stderr[-3000:]
