"""What both engines' deployments share (lab/stack/deploy.py for compose, lab/stack/swarm/deploy.py for swarm):
the report and its phases, the saved parameters, compose's resolved configuration, ports, the migrated template."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import yaml

from lab.common.paths import cache_dir, deploy_dir
from lab.pretix.bootstrap import PretixAccess
from lab.stack import hacost, pybuild, secrets
from lab.stack.compose import Compose
from lab.stack.containers import DeployError, container, docker_cli
from lab.stack.params import StackParams, parse_memory
from lab.stack.pgstat import PG_STAT_STATEMENTS
from lab.stack.redis_ha import PRIMARY_SERVICE, REPLICA_SERVICE, SENTINEL_SERVICES, RedisTopology
from lab.stack.topology import project

REDIS_SERVICES = (PRIMARY_SERVICE, REPLICA_SERVICE, *SENTINEL_SERVICES)
Log = Callable[[str], None]


@dataclass
class UpReport:
    cold: bool
    phases: dict[str, float] = field(default_factory=dict)
    migrations: str = ""  # "ran", "template" (restored, already migrated) or "kept" (migrated by this image)
    access: PretixAccess | None = None
    restored: list[str] = field(default_factory=list)  # what the fault journal restored (lines to print)

    @property
    def total(self) -> float:
        return sum(self.phases.values())

    def describe(self) -> str:
        kind = "cold (migrations from scratch)" if self.cold else "warm (migrated state reused)"
        parts = ", ".join(f"{name} {secs:.1f}s" for name, secs in self.phases.items())
        return f"deploy {kind}: {self.total:.1f}s total ({parts}; migrations: {self.migrations})"


@contextmanager
def phase(report: UpReport, name: str, log: Log) -> Iterator[None]:
    log(f"[{name}] ...")
    start = time.monotonic()
    yield
    report.phases[name] = time.monotonic() - start



def saved_params(directory: Path | None = None) -> StackParams | None:
    path = (directory or deploy_dir()) / "params.json"
    return StackParams.model_validate_json(path.read_text()) if path.exists() else None


def compose_for(params: StackParams, directory: Path | None = None, template: str = "") -> Compose:
    directory = directory or deploy_dir()
    env = {
        "LAB_DEPLOY_DIR": str(directory),
        "LAB_PRETIX_IMAGE": pybuild.pretix_tag(params.python),
        "LAB_HTTPS_PORT": str(params.https_port),
        "LAB_HTTP_PORT": str(params.http_port),
        "LAB_WEB_WORKERS": str(params.web_workers),
        "LAB_WORKER_CONCURRENCY": str(params.worker_concurrency),
        "LAB_PG_REPLICATION_MODE": params.replication,
        "LAB_PG_PRELOAD": PG_STAT_STATEMENTS if params.pg_stat_statements else "",
        "LAB_EDGE_SUBNET": params.edge_subnet,
        "LAB_PROXY_ADDR": params.address(10),
        "LAB_WEB_1_ADDR": params.address(11),
        "LAB_WEB_2_ADDR": params.address(12),
        "LAB_PG_TEMPLATE_DIR": str(template_dir()),
        "LAB_PG_TEMPLATE_DUMP": template,
        "LAB_BACKEND_SUBNET": params.backend_subnet,
        "LAB_BACKEND_DYNAMIC_RANGE": params.backend_dynamic_range(),
        **RedisTopology.of(params).compose_env(),
    }
    return Compose(env, override=directory / "compose.limits.yaml")


def template_dir() -> Path:
    path = cache_dir() / "pg-template"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_limits(params: StackParams, path: Path) -> None:
    """The chosen limits and HA/lab knobs (lab/stack/hacost.py) as a compose override: compose.yaml stays the one
    topology."""
    services: dict = {}
    for name in params.limits:
        limits = params.effective_limits(name)
        entry = {}
        if limits.cpus is not None:
            entry["cpus"] = str(limits.cpus)
        if limits.memory is not None:
            entry["memory"] = f"{parse_memory(limits.memory)}b"
        services[name] = {"deploy": {"resources": {"limits": entry}}}
    services = hacost.merge(services, hacost.override(params))
    secrets.write_private(path, yaml.safe_dump({"services": services} if services else {"services": {}}))



def port_owner(client: docker.DockerClient, port: int) -> str | None:
    for c in client.containers.list(filters={"publish": str(port)}):
        return c.name
    return None


def check_ports(client: docker.DockerClient, params: StackParams) -> None:
    """A published port already taken by something else stops us before anything changes."""
    for name in ("https_port", "http_port"):
        port = getattr(params, name)
        owner = port_owner(client, port)
        if owner is not None:
            if owner.startswith(f"{project()}-proxy"):
                continue
            raise DeployError(
                f"{name}={port}: 127.0.0.1:{port} is already published by container {owner}; "
                f"choose another port (e.g. --{name.replace('_', '-')} {port + 1}) or stop that container")
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise DeployError(
                    f"{name}={port}: 127.0.0.1:{port} is already in use by another program; "
                    f"choose another port (e.g. --{name.replace('_', '-')} {port + 1}) or stop that program"
                ) from None


def wait_https(access: PretixAccess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{access.base_url}/healthcheck/", verify=access.tls(), timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(1)
    raise DeployError(f"pretix did not answer /healthcheck/ through the proxy within {timeout:.0f}s: {last}")


MIGRATED_STAMP = "migrated-by"  # in the deploy folder: the pretix image whose migrate role last completed
COPY_STATIC = 'cp -R --preserve=mode,timestamps "$PRETIX_LAB_STATIC_DIST/." /static/'



def dump_template(client: docker.DockerClient, target: Path) -> None:
    """Keep the freshly migrated (still empty) database so later deployments skip migrations."""
    primary = container(client, "postgres-primary")
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # worlds may share the cache
    with partial.open("wb") as out:
        subprocess.run([*docker_cli(primary), "exec", primary.id, "pg_dump", "-Fc", "-U", "postgres", "pretix"],
                       stdout=out, check=True)
    partial.rename(target)




def migrate_if_needed(run_migrate: Callable[[list[str] | None], None], directory: Path, pretix_id: str,
                      fresh_db: bool, from_template: bool, log: Log) -> str:
    """Run pretix's migrate role only when the database may lack what this image needs (~10-30 s saved); either
    engine passes how it runs the role (`run_migrate(None)`: migrate, `run_migrate(cmd)`: that command instead).

    A database restored from this image's template holds exactly what its migrate role left (only the static
    volume is new, so it gets the files); a kept database whose stamp names this image was migrated by it.
    The stamp lives in the deploy folder, which goes with the volumes (`lab down --volumes`). Returns which case.
    """
    stamp = directory / MIGRATED_STAMP
    if fresh_db and from_template:
        run_migrate(["sh", "-c", COPY_STATIC])
        log("migrate: skipped (database restored from this image's migrated template); static files copied")
        done = "template"
    elif not fresh_db and stamp.exists() and stamp.read_text().strip() == pretix_id:
        log("migrate: skipped (this database was migrated by this pretix image)")
        return "kept"
    else:
        stamp.unlink(missing_ok=True)
        run_migrate(None)
        done = "ran"
    stamp.write_text(pretix_id + "\n")
    return done
