"""Bring the stack up and down, and say how it is: the lab's handle on the one compose project."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import yaml

from lab.common.paths import cache_dir, deploy_dir
from lab.pretix.bootstrap import PretixAccess, bootstrap
from lab.stack import admission, alone, hacost, pybuild, secrets, tuning
from lab.stack.compose import Compose
from lab.stack.containers import (
    LABEL_PROJECT,
    LABEL_SERVICE,
    DeployError,
    container,
    project_containers,
    remove_fault_helpers,
)
from lab.stack.engine import ensure_engine
from lab.stack.images import ensure_images
from lab.stack.params import StackParams, parse_memory
from lab.stack.pgstat import PG_STAT_STATEMENTS
from lab.stack.redis_ha import PRIMARY_SERVICE, REPLICA_SERVICE, SENTINEL_SERVICES, RedisTopology
from lab.stack.topology import long_running, project

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
def _phase(report: UpReport, name: str, log: Log) -> Iterator[None]:
    log(f"[{name}] ...")
    start = time.monotonic()
    yield
    report.phases[name] = time.monotonic() - start


def _volume_exists(client: docker.DockerClient, name: str) -> bool:
    return bool(client.volumes.list(filters={"name": f"^{project()}_{name}$"}))


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


def _write_limits(params: StackParams, path: Path) -> None:
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


def _port_owner(client: docker.DockerClient, port: int) -> str | None:
    for c in client.containers.list(filters={"publish": str(port)}):
        return c.name
    return None


def check_ports(client: docker.DockerClient, params: StackParams) -> None:
    """A published port already taken by something else stops us before anything changes."""
    for name in ("https_port", "http_port"):
        port = getattr(params, name)
        owner = _port_owner(client, port)
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


def _wait_https(access: PretixAccess, timeout: float = 60) -> None:
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


def _migrate(compose: Compose, directory: Path, pretix_id: str, fresh_db: bool, from_template: bool,
             log: Log) -> str:
    """Run pretix's migrate role only when the database may lack what this image needs (~10-30 s saved).

    A database restored from this image's template holds exactly what its migrate role left (only the static
    volume is new, so it gets the files); a kept database whose stamp names this image was migrated by it.
    The stamp lives in the deploy folder, which goes with the volumes (`lab down --volumes`). Returns which case.
    """
    stamp = directory / MIGRATED_STAMP
    if fresh_db and from_template:
        compose.run("run", "--rm", "--no-deps", "pretix-migrate", "sh", "-c", COPY_STATIC)
        log("migrate: skipped (database restored from this image's migrated template); static files copied")
        done = "template"
    elif not fresh_db and stamp.exists() and stamp.read_text().strip() == pretix_id:
        log("migrate: skipped (this database was migrated by this pretix image)")
        return "kept"
    else:
        stamp.unlink(missing_ok=True)
        compose.run("run", "--rm", "--no-deps", "pretix-migrate")
        done = "ran"
    stamp.write_text(pretix_id + "\n")
    return done


def _dump_template(client: docker.DockerClient, target: Path) -> None:
    """Keep the freshly migrated (still empty) database so later deployments skip migrations."""
    primary = container(client, "postgres-primary")
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # worlds may share the cache
    with partial.open("wb") as out:
        subprocess.run(["docker", "exec", primary.id, "pg_dump", "-Fc", "-U", "postgres", "pretix"],
                       stdout=out, check=True)
    partial.rename(target)


def foreign_deployment(client: docker.DockerClient) -> str | None:
    """Why the compose project holds a deployment that is not this checkout's (its database volume exists but the
    secrets that open it are not in this deploy folder), or None. Nothing may deploy over it or tear it down."""
    directory = deploy_dir()
    if _volume_exists(client, "pg-primary") and not (directory / "secrets.json").exists():
        return ("the database volume of an earlier deployment exists but its secrets are gone "
                f"({directory}): another checkout's deployment, or a folder removed by hand; remove it with "
                "`lab down --volumes` (from its own checkout if it has one) and deploy again")
    return None


def up(params: StackParams, log: Log = print) -> UpReport:
    """Deploy (or converge) the stack: engine, images, secrets, database, migrations, services, pretix."""
    report = UpReport(cold=False)
    with _phase(report, "engine", log):
        client = ensure_engine(log=log)
        report.restored += _undo_faults_left(client, log)  # before compose looks at the containers
        check_ports(client, params)
        directory = deploy_dir()
        fresh_db = not _volume_exists(client, "pg-primary")
        foreign = foreign_deployment(client)
        if foreign:
            raise DeployError(foreign)
    with _phase(report, "images", log):
        image_ids = ensure_images(client, log, params.python)
    with _phase(report, "secrets", log):
        found = secrets.load_or_create(directory)
        secrets.write_env_files(found, directory, RedisTopology.of(params))
        tls = secrets.ensure_tls(directory)
        secrets.write_private(directory / "params.json", params.model_dump_json(indent=2))
        _write_limits(params, directory / "compose.limits.yaml")
        secrets.write_private(directory / "pretix-tuning.env", tuning.env_file_text(params))  # no secret in it
        admission.ensure(directory)  # the proxy mounts it; off unless a configuration is already there
        pretix_id = image_ids[pybuild.pretix_tag(params.python)].split(":")[-1][:16]
        template = template_dir() / f"pretix-{pretix_id}.dump"
        use_template = fresh_db and template.exists()
        report.cold = fresh_db and not use_template
        compose = compose_for(params, directory, f"/template/{template.name}" if use_template else "")
    with _phase(report, "database", log):
        compose.run("up", "-d", "--wait", "--wait-timeout", "300", "postgres-primary", *REDIS_SERVICES)
    with _phase(report, "migrate", log):
        report.migrations = _migrate(compose, directory, pretix_id, fresh_db, use_template, log)
        if report.cold:
            _dump_template(client, template)
    with _phase(report, "services", log):
        compose.run("up", "-d", "--wait", "--wait-timeout", "300", *long_running())
        report.restored += _undo_faults_left(client, log, again=True)
    with _phase(report, "bootstrap", log):
        base_url = f"https://127.0.0.1:{params.https_port}"
        report.access = bootstrap(container(client, "pretix-web-1"), base_url, tls / "ca.crt", directory)
        _wait_https(report.access)
        # a deployment starts with admission control off, whatever an interrupted run left configured
        admission.apply(admission.OFF, docker_client=client, access=report.access, directory=directory,
                        log=lambda _m: None, if_changed=True)
    return report


def _undo_faults_left(client: docker.DockerClient, log: Log, again: bool = False) -> list[str]:
    """Replay what a killed run left in the fault journal (a paused container, a lowered limit, a cut network, a
    restart policy at "no"); records of a run that still goes on are left to it. After the deployment (`again`)
    only when records are still there (one that failed before, now that compose started its container)."""
    from lab.faults.journal import FaultJournal
    from lab.faults.replay import replay

    journal = FaultJournal()
    if again and not journal.entries()[0]:
        return []
    lines = [outcome.line() for outcome in replay(client, journal) if not (again and outcome.status == "held")]
    for line in lines:
        log(f"[faults] {line}")
    return lines


def down(volumes: bool = False, log: Log = print) -> list[str]:
    """Stop and remove this project's containers and networks (and volumes and secrets with volumes).

    Returns what of the project is still left (empty when clean), secret files that could not be removed included.
    """
    client = ensure_engine(log=log)
    directory = deploy_dir()
    params = saved_params(directory) or StackParams()
    scratch = None
    if not (directory / "pretix.env").exists():  # never deployed here: compose still needs the files
        scratch = directory.parent / "deploy-scratch"
        secrets.write_env_files(secrets.load_or_create(scratch), scratch, RedisTopology.of(params))
        directory = scratch
    compose = compose_for(params, directory)
    alone.remove(client)  # a bench's pretix-alone containers, had one been killed before its own cleanup
    remove_fault_helpers(client)  # a fault's helper, had its run been killed while it ran (holds a volume)
    args = ["down", "--remove-orphans", "--timeout", "20"] + (["--volumes"] if volumes else [])
    compose.run("--profile", "jobs", *args)
    not_removed = secrets.remove_secrets(scratch) if scratch is not None else []
    if volumes:
        not_removed += secrets.remove_secrets(deploy_dir())
    for problem in not_removed:
        log(f"could not remove secrets: {problem}")
    return leftovers(client, volumes) + [f"secrets {problem}" for problem in not_removed]


def leftovers(client: docker.DockerClient, volumes: bool = True) -> list[str]:
    label = {"label": f"{LABEL_PROJECT}={project()}"}
    left = [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
    left += [f"network {n.name}" for n in client.networks.list(filters=label)]
    if volumes:
        left += [f"volume {v.name}" for v in client.volumes.list(filters=label)]
    return left + alone.found(client)


@dataclass
class ServiceStatus:
    service: str
    container: str
    state: str
    health: str
    cpu_percent: float | None
    memory_mib: float | None
    memory_limit_mib: float | None
    addresses: dict[str, str]


def _cpu_percent(stats: dict) -> float | None:
    try:
        now, before = stats["cpu_stats"], stats["precpu_stats"]
        cpu = now["cpu_usage"]["total_usage"] - before["cpu_usage"]["total_usage"]
        system = stats["cpu_stats"]["system_cpu_usage"] - stats["precpu_stats"]["system_cpu_usage"]
        cores = stats["cpu_stats"].get("online_cpus") or 1
        return round(100.0 * cpu / system * cores, 1) if system > 0 else 0.0
    except KeyError:
        return None


def _status_of(c) -> ServiceStatus:
    attrs = c.attrs
    health = (attrs["State"].get("Health") or {}).get("Status", "-")
    cpu = mem = limit = None
    if c.status == "running":
        stats = c.stats(stream=False)
        cpu = _cpu_percent(stats)
        usage = stats.get("memory_stats", {})
        if "usage" in usage:
            cache = usage.get("stats", {}).get("cache", 0)
            mem = round((usage["usage"] - cache) / 2**20, 1)
            limit = round(usage.get("limit", 0) / 2**20, 1)
    nets = attrs["NetworkSettings"]["Networks"] or {}
    return ServiceStatus(
        service=c.labels.get(LABEL_SERVICE, "?"), container=c.name, state=c.status, health=health,
        cpu_percent=cpu, memory_mib=mem, memory_limit_mib=limit,
        addresses={name.removeprefix(f"{project()}_"): n.get("IPAddress", "") for name, n in nets.items()},
    )


def status(client: docker.DockerClient | None = None) -> list[ServiceStatus]:
    """Each container of the project: state, health, CPU, memory (sampled in parallel)."""
    client = client or ensure_engine()
    found = project_containers(client)
    with ThreadPoolExecutor(max_workers=max(1, len(found))) as pool:
        rows = list(pool.map(_status_of, found))
    return sorted(rows, key=lambda s: s.service)


def logs(service: str, tail: int = 200, since: float | None = None) -> str:
    client = ensure_engine()
    found = project_containers(client, service)
    if not found:
        raise DeployError(f"no container for service {service!r}")
    parts = []
    for c in found:
        kwargs = {"tail": tail} if since is None else {"since": int(since)}
        parts.append(c.logs(timestamps=True, **kwargs).decode(errors="replace"))
    return "".join(parts)


def environment_record(client: docker.DockerClient) -> dict:
    """What a run records about the deployment it measured (no secrets)."""
    from lab.stack.images import digests

    params = saved_params()
    return {
        "images": digests(client, params.python if params else pybuild.DEFAULT),
        "engine": client.version().get("Version"),
        "stack_params": json.loads(params.model_dump_json()) if params else None,
    }
