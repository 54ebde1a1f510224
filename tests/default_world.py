"""The default world (project pretix-lab, var/, ports 8443/8080) seen from the test world: what a user's deployment
looks like to a test that must leave it alone, and a deployment made there when the user has none.

The snapshot holds everything a fault or a teardown aimed at the wrong project would change: container ids, states,
health, start times, restart counts and policies, limits, network endpoints, the project's networks and volumes; the
digest covers every file of the deploy folder (secrets, CA, tokens, parameters).
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from lab.common import world
from lab.stack.containers import LABEL_PROJECT, LABEL_SERVICE
from lab.stack.topology import long_running

ROOT = Path(__file__).resolve().parents[1]
PROJECT = world.DEFAULT_PROJECT
DEPLOY_DIR = ROOT / "var" / "deploy"
# the environment without the session's world: a `lab` started with it acts on the default world (cache shared)
DEFAULT_ENV = {k: v for k, v in os.environ.items() if k not in world.WORLD_VARS}


def lab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The `lab` CLI in a fresh process, as a user runs it."""
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "lab.cli", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=900)
    print(f"lab {' '.join(args)} ({'default' if env is DEFAULT_ENV else 'test'} world): exit {proc.returncode} "
          f"in {time.monotonic() - began:.1f} s")
    return proc


def _of(project: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_PROJECT}={project}"]}


def snapshot(client, project: str = PROJECT) -> dict:
    containers = {}
    for c in client.containers.list(all=True, filters=_of(project)):
        state, host = c.attrs["State"], c.attrs["HostConfig"]
        containers[c.name] = {
            "service": c.labels.get(LABEL_SERVICE), "id": c.id, "status": c.status,
            "health": (state.get("Health") or {}).get("Status"), "started": state["StartedAt"],
            "restarts": c.attrs["RestartCount"], "restart_policy": host["RestartPolicy"]["Name"],
            "cpus": host["NanoCpus"], "memory": host["Memory"],
            "endpoints": {n: e["EndpointID"] for n, e in c.attrs["NetworkSettings"]["Networks"].items()},
        }
    return {"containers": containers,
            "networks": sorted((n.name, n.id) for n in client.networks.list(filters=_of(project))),
            "volumes": sorted(v.name for v in client.volumes.list(filters=_of(project)))}


def digest(folder: Path = DEPLOY_DIR) -> str | None:
    if not folder.exists():
        return None
    found = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        found.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return found.hexdigest()


def healthy(seen: dict) -> bool:
    """Every long-running service has a running container, healthy where it has a health check."""
    by_service = {c["service"]: c for c in seen["containers"].values()}
    return all(by_service.get(s, {}).get("status") == "running" and by_service[s]["health"] in ("healthy", None)
               for s in long_running())


def https_answers(folder: Path = DEPLOY_DIR) -> bool:
    """/healthcheck/ through the default world's proxy on its own port, verified with its own CA."""
    port = json.loads((folder / "params.json").read_text())["https_port"]
    tls = ssl.create_default_context(cafile=str(folder / "tls" / "ca.crt"))
    r = httpx.get(f"https://127.0.0.1:{port}/healthcheck/", verify=tls, timeout=10)
    return r.status_code == 200


@dataclass
class DefaultWorld:
    created: bool  # made by the test (and removed by it); False: a user's deployment, left exactly as it is
    before: dict
    secrets: str | None


@contextmanager
def default_world_deployment(client) -> Iterator[DefaultWorld]:
    """A deployment in the default world for the duration: the user's own if any of it exists (running or not),
    else one made with `lab up` and removed with `lab down --volumes` afterwards."""
    assert world.project() != PROJECT, "the session must run in its own world (tests/conftest.py)"
    existing = snapshot(client)
    created = not (existing["containers"] or existing["volumes"] or existing["networks"] or DEPLOY_DIR.exists())
    try:
        if created:
            up = lab(DEFAULT_ENV, "up")
            assert up.returncode == 0, up.stderr[-3000:]
        seen = DefaultWorld(created=created, before=snapshot(client), secrets=digest())
        if created:
            assert healthy(seen.before) and https_answers(), seen.before
        print(f"default world: {len(seen.before['containers'])} containers, {len(seen.before['volumes'])} volumes "
              f"({'made by this test' if created else 'a deployment that was already there'})")
        yield seen
    finally:
        if created:
            gone = lab(DEFAULT_ENV, "down", "--volumes")
            assert gone.returncode == 0, gone.stderr[-3000:]
