"""pretix alone: the stack's own images and pretix.cfg minus the HA parts, as containers beside the deployment.

One gunicorn (the stack's web workers per instance), one celery worker, one PostgreSQL without a replica, one redis
without sentinels; no proxy, no metrics, no health checks, no CPU or memory limits. Its database is a copy of the
stack's (pg_dump piped into pg_restore), so it sells the same seeded event with the same API token without
migrations. Everything carries the label ALONE_LABEL=<project> on a network it makes itself, so `lab down` and the
tests find and remove it; gunicorn is published on 127.0.0.1 only, on a free port.

This module only knows Docker; the bench that measures it (start, wait, measure, remove) is
lab.experiments.bench_efficiency.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass, field

import docker
import httpx

from lab.common.paths import deploy_dir
from lab.stack import pybuild
from lab.stack.containers import DeployError, container
from lab.stack.cpu import container_seconds
from lab.stack.pgstat import PRELOAD_ARGS
from lab.stack.topology import project

ALONE_LABEL = "org.pretix-lab.alone"  # value: the project the alone side belongs to
SERVICE_LABEL = "org.pretix-lab.alone.service"
VARIANT_LABEL = "org.pretix-lab.alone.variant"  # two alone sides at once (stock and tuned) differ by it
# the alone side's services, named like the stack's so lab.analysis.efficiency.module_of maps both
WEB, WORKER, POSTGRES, REDIS = "pretix-web", "pretix-worker", "postgres-primary", "redis"
IMAGES = {WEB: "pretix-lab/pretix:local", WORKER: "pretix-lab/pretix:local", POSTGRES: "pretix-lab/postgres:local",
          REDIS: "pretix-lab/redis:local"}
NO_HEALTHCHECK = {"test": ["NONE"]}  # the images' own checks would be CPU the alone side does not pay for


def name(part: str, variant: str = "") -> str:
    """Container, network and volume names: <project>-alone[-<variant>]-<part>."""
    return f"{project()}-alone{'-' + variant if variant else ''}-{part}"


def labels(service: str | None = None, variant: str = "") -> dict[str, str]:
    out = {ALONE_LABEL: project(), **({VARIANT_LABEL: variant} if variant else {})}
    if service:
        out[SERVICE_LABEL] = service
    return out


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class AloneSide:
    """The running alone side: where its gunicorn answers and its containers by service."""

    base_url: str
    containers: dict[str, object] = field(default_factory=dict)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per service from the containers' cgroups (the only thing sampled on this side)."""
        out = {}
        for service, c in self.containers.items():
            used = container_seconds(c.id)  # type: ignore[attr-defined]
            if used is not None:
                out[service] = used
        return out


def _secrets() -> dict[str, str]:
    path = deploy_dir() / "secrets.json"
    if not path.exists():
        raise DeployError(f"no deployment secrets in {path}: deploy the stack first (`lab up`)")
    return json.loads(path.read_text())


def _exec_ok(c, command: list[str]) -> bool:
    return c.exec_run(command).exit_code == 0


def _wait(check, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise DeployError(f"pretix alone: {what} was not ready within {timeout:.0f}s")


def _run(client: docker.DockerClient, service: str, command: list[str] | None, env: dict[str, str], variant: str,
         **extra):
    volumes = extra.pop("volumes", None)
    image = extra.pop("image", None) or IMAGES[service]
    return client.containers.run(
        image, command, name=name(service, variant), detach=True, environment=env,
        labels=labels(service, variant), network=name("net", variant), healthcheck=NO_HEALTHCHECK, volumes=volumes,
        **extra)


def start(client: docker.DockerClient, web_workers: int, worker_concurrency: int, log=print, *,
          tuning_env: dict[str, str] | None = None, variant: str = "", pg_stat_statements: bool = False,
          python: str = pybuild.DEFAULT) -> AloneSide:
    """Start the alone side from a copy of the stack's database and wait until gunicorn answers /healthcheck/.
    `pg_stat_statements`: its PostgreSQL preloads the module (a profiled bench reads it; off, nothing pays for it).
    `python`: which pretix image its web and worker run (the stack parameter; lab/stack/pybuild.py), built first
    when missing or stale.

    `tuning_env`: the pretix containers' tuning knobs (lab.stack.tuning.pretix_env; none: the image's stock
    command). `variant` names a second alone side beside the first (stock and tuned at once). Leftovers of an
    earlier alone side of this project and variant are removed first. On failure what was started stays for the
    caller's `remove` (call it in a finally).
    """
    remove(client, variant or None)
    s = _secrets()
    if python != pybuild.DEFAULT:  # the default's image is the stack's own, made by `lab up`
        from lab.stack.images import ensure_pretix

        ensure_pretix(client, python, log)
    pretix_image = pybuild.pretix_tag(python)
    primary = container(client, "postgres-primary")  # the stack must be up: its database is the copy's source
    client.networks.create(name("net", variant), driver="bridge", labels=labels(variant=variant))
    for volume in ("pgdata", "data"):
        client.volumes.create(name(volume, variant), labels=labels(variant=variant))
    side = AloneSide(base_url="")
    pg = _run(client, POSTGRES, PRELOAD_ARGS if pg_stat_statements else None, {
        "PG_ROLE": "primary", "PG_REPLICATION_MODE": "async", "POSTGRES_PASSWORD": s["postgres_password"],
        "PRETIX_DB_NAME": "pretix", "PRETIX_DB_USER": "pretix", "PRETIX_DB_PASSWORD": s["pretix_db_password"],
        "REPLICATION_PASSWORD": s["replication_password"]}, variant, shm_size="256m",
        volumes={name("pgdata", variant): {"bind": "/var/lib/postgresql/data", "mode": "rw"}})
    side.containers[POSTGRES] = pg
    redis = _run(client, REDIS, None, {"REDIS_ROLE": "primary", "REDIS_PASSWORD": s["redis_password"],
                                        "REDIS_MAXMEMORY": "160mb"}, variant)
    side.containers[REDIS] = redis
    # initdb runs a socket-only server first: ready means the final server was started and answers
    _wait(lambda: b"starting postgres" in pg.logs() and _exec_ok(pg, ["pg-health"]), "PostgreSQL", 180)
    _wait(lambda: _exec_ok(redis, ["redis-health"]), "redis", 60)
    started = time.monotonic()
    copy_database(primary.id, pg.id)
    log(f"pretix alone: the stack's database copied in {time.monotonic() - started:.1f}s")
    port = free_port()
    side.base_url = f"http://127.0.0.1:{port}"
    secret = s["redis_password"]
    redis_url = f"redis://:{secret}@{name(REDIS, variant)}:6379"
    env = {"PRETIX_DJANGO_SECRET": s["django_secret"], "PRETIX_PRETIX_URL": side.base_url,
           "PRETIX_DATABASE_BACKEND": "postgresql", "PRETIX_DATABASE_NAME": "pretix",
           "PRETIX_DATABASE_USER": "pretix", "PRETIX_DATABASE_PASSWORD": s["pretix_db_password"],
           "PRETIX_DATABASE_HOST": name(POSTGRES, variant), "PRETIX_REDIS_LOCATION": f"{redis_url}/0",
           "PRETIX_REDIS_SESSIONS": "true", "PRETIX_CELERY_BROKER": f"{redis_url}/1",
           "PRETIX_CELERY_BACKEND": f"{redis_url}/2", "PRETIX_LAB_REDIS_TIMEOUT": "0",
           "WEB_WORKERS": str(web_workers), "WORKER_CONCURRENCY": str(worker_concurrency), **(tuning_env or {})}
    data = {name("data", variant): {"bind": "/data", "mode": "rw"}}
    side.containers[WEB] = _run(client, WEB, ["web"], env, variant, volumes=data, image=pretix_image,
                                ports={"8000/tcp": ("127.0.0.1", port)})
    side.containers[WORKER] = _run(client, WORKER, ["worker"], env, variant, volumes=data, image=pretix_image)
    _wait(lambda: _answers(f"{side.base_url}/healthcheck/"), "gunicorn /healthcheck/", 120)
    _wait(lambda: _exec_ok(side.containers[WORKER], ["pretix-lab-health", "worker"]), "celery", 60)
    return side


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def copy_database(source_id: str, target_id: str) -> None:
    """pg_dump of the stack primary's pretix database piped into pg_restore on the alone PostgreSQL (no file on
    disk: the copy holds the API token), then ANALYZE so its planner starts with the same statistics."""
    dump = subprocess.Popen(["docker", "exec", source_id, "pg_dump", "-Fc", "-U", "postgres", "pretix"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    restore = subprocess.run(["docker", "exec", "-i", target_id, "pg_restore", "--no-owner", "--no-acl",
                              "--role=pretix", "--exit-on-error", "--single-transaction", "-U", "postgres",
                              "-d", "pretix"], stdin=dump.stdout, capture_output=True, timeout=600)
    assert dump.stdout is not None
    dump.stdout.close()
    dump_err = dump.stderr.read() if dump.stderr else b""
    if dump.wait(timeout=60) != 0 or restore.returncode != 0:
        why = (dump_err or restore.stderr).decode(errors="replace").strip().splitlines()
        raise DeployError(f"pretix alone: copying the stack's database failed: {why[-1] if why else 'no message'}")
    analyze = subprocess.run(["docker", "exec", target_id, "vacuumdb", "--analyze-only", "--quiet", "-U",
                              "postgres", "-d", "pretix"], capture_output=True, timeout=300)
    if analyze.returncode != 0:
        raise DeployError(f"pretix alone: ANALYZE failed: {analyze.stderr.decode(errors='replace').strip()}")


def found(client: docker.DockerClient, variant: str | None = None) -> list[str]:
    """What of this project's alone sides (`variant`: that one) exists (containers, networks, volumes), as
    'kind name'."""
    label = {"label": [f"{ALONE_LABEL}={project()}"] + ([] if variant is None else [f"{VARIANT_LABEL}={variant}"])}
    left = [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
    left += [f"network {n.name}" for n in client.networks.list(filters=label)]
    left += [f"volume {v.name}" for v in client.volumes.list(filters=label)]
    return left


def remove(client: docker.DockerClient, variant: str | None = None) -> list[str]:
    """Remove this project's alone sides (only what carries its label; `variant`: only that one); returns what of
    them is still left."""
    label = {"label": [f"{ALONE_LABEL}={project()}"] + ([] if variant is None else [f"{VARIANT_LABEL}={variant}"])}
    for c in client.containers.list(all=True, filters=label):
        try:
            c.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
    for n in client.networks.list(filters=label):
        try:
            n.remove()
        except docker.errors.NotFound:
            pass
    for v in client.volumes.list(filters=label):
        try:
            v.remove(force=True)
        except docker.errors.NotFound:
            pass
    return found(client, variant)


__all__ = ["ALONE_LABEL", "AloneSide", "copy_database", "found", "free_port", "remove", "start"]
