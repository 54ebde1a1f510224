"""Make sure a Docker engine answers: install and start Debian's when we may, else say what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import docker
from docker.errors import DockerException

from lab.errors import LabError

DOCKERD_LOG = Path("/var/log/pretix-lab-dockerd.log")


class EngineError(LabError, RuntimeError):
    """No engine, and we cannot (or may not) provide one; the message says what to install."""


def _client(timeout: int = 120) -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except DockerException:
        return None


def _is_debian() -> bool:
    return Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def ensure_engine(
    *, is_root: bool | None = None, wait_seconds: float = 60.0, log=print
) -> docker.DockerClient:
    """Return a client of a running engine, starting (and installing) dockerd when root on Debian.

    Idempotent: when `docker info` already answers nothing is touched.
    """
    client = _client()
    if client is not None:
        return client
    root = os.geteuid() == 0 if is_root is None else is_root
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not root:
        raise EngineError(
            f"no Docker engine answers at {where}, and pretix-lab is not running as root so it cannot "
            "start one. Fix: install and start Docker (Debian: `sudo apt-get install docker.io && "
            "sudo systemctl start docker`), add yourself to the docker group, or run as root."
        )
    if not _is_debian():
        raise EngineError(
            f"no Docker engine answers at {where} and this is not Debian, so the lab will not install one. "
            "Fix: install Docker Engine (20.10 or newer) and start it, then run again."
        )
    if os.environ.get("DOCKER_HOST", "unix://").startswith(("tcp://", "ssh://")):
        raise EngineError(f"DOCKER_HOST={where} does not answer; start that engine or unset DOCKER_HOST")
    if shutil.which("dockerd") is None:
        log("installing Debian's docker.io (no engine on this machine) ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "docker.io"], check=True, env=env)
    log(f"starting dockerd (log: {DOCKERD_LOG}) ...")
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with DOCKERD_LOG.open("ab") as out:
        subprocess.Popen(
            ["dockerd"], stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        client = _client()
        if client is not None:
            return client
        time.sleep(0.5)
    raise EngineError(f"dockerd did not answer within {wait_seconds:.0f} s; see {DOCKERD_LOG}")
