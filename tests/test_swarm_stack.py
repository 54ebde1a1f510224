"""`lab up --engine swarm --nodes 3` for real, in a world of its own (its own project, var folder, ports and
subnets, next to the session's compose stack): placement, the shop through the proxy on 127.0.0.1, `lab status`
naming each container's node, and `lab down --volumes` leaving nothing behind."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "pretix-lab-swarmtest"
VAR = ROOT / "var-test-swarm"
WORLD = {
    "PRETIX_LAB_PROJECT": PROJECT,
    "PRETIX_LAB_VAR": str(VAR),
    "PRETIX_LAB_DATA": str(VAR / "data"),
    "PRETIX_LAB_REPORTS": str(VAR / "reports"),
    "PRETIX_LAB_HTTPS_PORT": "19443",
    "PRETIX_LAB_HTTP_PORT": "19080",
    "PRETIX_LAB_EDGE_SUBNET": "10.226.0.0/24",
    "PRETIX_LAB_BACKEND_SUBNET": "10.227.0.0/24",
    "PRETIX_LAB_NODE_SUBNET": "10.228.0.0/24",
}

pytestmark = [pytest.mark.stack]


def lab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **WORLD, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], env=env, text=True, capture_output=True,
                          timeout=timeout, cwd=ROOT)


def status_rows(out: str) -> dict[str, set[str]]:
    """service -> the nodes its running containers are on, from `lab status`."""
    rows: dict[str, set[str]] = {}
    for line in out.splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 7 and parts[2] == "running":
            node = next((p for p in parts if p.startswith(f"{PROJECT}-node-")), "")
            rows.setdefault(parts[0], set()).add(node)
    return rows


def host_leftovers() -> list[str]:
    client = docker.from_env()
    left = [c.name for c in client.containers.list(all=True) if c.name.startswith(PROJECT)]
    left += [n.name for n in client.networks.list() if n.name.startswith(PROJECT)]
    left += [v.name for v in client.volumes.list() if v.name.startswith(PROJECT)]
    return left


@pytest.fixture(scope="module")
def swarm():
    start = time.monotonic()
    up = lab("up", "--engine", "swarm", "--nodes", "3")
    print(f"swarm up: {time.monotonic() - start:.0f}s\n{up.stdout}\n{up.stderr[-3000:]}")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield up
    finally:
        if not os.environ.get("PRETIX_LAB_KEEP_STACK") and host_leftovers():
            down = lab("down", "--volumes")
            print(down.stdout, down.stderr[-2000:])
            shutil.rmtree(VAR, ignore_errors=True)


def test_swarm_deploys_places_serves_and_goes_without_a_trace(swarm):
    status = lab("status")
    assert status.returncode == 0, status.stderr
    rows = status_rows(status.stdout)
    assert "node" in status.stdout.splitlines()[1]  # the header names the node column
    one = {service: next(iter(found)) for service, found in rows.items() if len(found) == 1}
    for pair in (("pretix-web-1", "pretix-web-2"), ("pretix-worker-1", "pretix-worker-2"),
                 ("postgres-primary", "postgres-replica"), ("redis", "redis-replica")):
        assert one[pair[0]] and one[pair[1]] and one[pair[0]] != one[pair[1]], (pair, rows)
    assert len({one[f"redis-sentinel-{i}"] for i in (1, 2, 3)}) == 3, rows
    assert one["proxy"] == f"{PROJECT}-node-1"

    ca = VAR / "deploy" / "tls" / "ca.crt"
    tls = ssl.create_default_context(cafile=str(ca))
    r = httpx.get(f"https://127.0.0.1:{WORLD['PRETIX_LAB_HTTPS_PORT']}/healthcheck/", verify=tls, timeout=10)
    assert r.status_code == 200

    node1 = docker.from_env().containers.get(f"{PROJECT}-node-1")
    bindings = [b for found in (node1.attrs["HostConfig"]["PortBindings"] or {}).values() for b in found]
    assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}

    down = lab("down", "--volumes")
    assert down.returncode == 0, down.stderr[-2000:]
    assert host_leftovers() == []
