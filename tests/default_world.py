"""The default world (project pretix-lab, var/, ports 8443/8080) seen from the test world: what a user's deployment
looks like to a test that must leave it alone, and a stand-in deployment made there when the user has none.

The snapshot holds everything a fault or a teardown aimed at the wrong project would change: container ids, states,
health, start times, restart counts and policies, limits, network endpoints, the project's networks and volumes; the
digest covers every file of the deploy folder (secrets, CA, tokens, parameters).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.common import world
from lab.stack.containers import LABEL_PROJECT, LABEL_SERVICE

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


@dataclass
class DefaultWorld:
    created: bool  # made by the test (and removed by it); False: a user's deployment, left exactly as it is
    before: dict
    secrets: str | None


def _stand_in(client) -> list:
    """A deployment of the default project as the engine sees one (compose's labels and names on a container that
    runs, with a network and a volume attached, and a deploy folder with a secret), without the minute a real
    `lab up` costs: a fault or a teardown aimed at the wrong project acts on these exactly as on a real one."""
    labels = {LABEL_PROJECT: PROJECT}
    network = client.networks.create(f"{PROJECT}_edge", labels={**labels, "com.docker.compose.network": "edge"})
    volume = client.volumes.create(f"{PROJECT}_pg-primary",
                                   labels={**labels, "com.docker.compose.volume": "pg-primary"})
    made = [network, volume]
    try:
        made.insert(0, client.containers.run(
            "pretix-lab/base:bookworm", ["sleep", "900"], name=f"{PROJECT}-pretix-web-1-1", detach=True,
            labels={**labels, LABEL_SERVICE: "pretix-web-1", "com.docker.compose.container-number": "1"},
            network=network.name, volumes={volume.name: {"bind": "/data", "mode": "rw"}}))
        DEPLOY_DIR.mkdir(parents=True)
        (DEPLOY_DIR / "secrets.json").write_text(json.dumps({"stand-in": os.urandom(16).hex()}))
    except BaseException:
        _remove(made)
        raise
    return made


def _remove(made: list) -> None:
    for thing in made:  # container first, then what it used
        try:
            thing.remove(force=True) if hasattr(thing, "kill") else thing.remove()
        except Exception as error:  # noqa: BLE001 - remove the rest, then say what stayed
            print(f"stand-in left behind: {thing}: {error}")
    if DEPLOY_DIR.exists():
        for path in sorted(DEPLOY_DIR.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        DEPLOY_DIR.rmdir()


@contextmanager
def default_world_deployment(client) -> Iterator[DefaultWorld]:
    """A deployment in the default world for the duration: the user's own if any of it exists (running or not),
    else a stand-in made here (_stand_in) and removed afterwards."""
    assert world.project() != PROJECT, "the session must run in its own world (tests/conftest.py)"
    existing = snapshot(client)
    created = not (existing["containers"] or existing["volumes"] or existing["networks"] or DEPLOY_DIR.exists())
    made = _stand_in(client) if created else []
    try:
        seen = DefaultWorld(created=created, before=snapshot(client), secrets=digest())
        if created:
            assert seen.before["containers"] and seen.before["volumes"] and seen.before["networks"], seen.before
        print(f"default world: {len(seen.before['containers'])} containers, {len(seen.before['volumes'])} volumes "
              f"({'a stand-in made by this test' if created else 'a deployment that was already there'})")
        yield seen
    finally:
        if created:  # a user's deployment is never touched
            _remove(made)
