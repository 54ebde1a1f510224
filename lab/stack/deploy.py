"""Bring the stack up and down, and say how it is: the lab's handle on the one compose project (a swarm
deployment is handed to lab/stack/swarm/deploy.py)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker

from lab.common.paths import deploy_dir
from lab.pretix.bootstrap import bootstrap
from lab.stack import admission, alone, pybuild, secrets, tuning
from lab.stack.compose import Compose
from lab.stack.containers import (
    LABEL_PROJECT,
    LABEL_SERVICE,
    DeployError,
    container,
    deployed_engine,
    node_of,
    project_containers,
    remove_fault_helpers,
)
from lab.stack.deploy_common import (  # noqa: F401 - re-exported: the lab and its tests reach them here
    COPY_STATIC,
    MIGRATED_STAMP,
    REDIS_SERVICES,
    Log,
    UpReport,
    check_ports,
    compose_for,
    dump_template,
    migrate_if_needed,
    phase,
    saved_params,
    template_dir,
    wait_https,
    write_limits,
)
from lab.stack.engine import ensure_engine
from lab.stack.images import ensure_images
from lab.stack.params import StackParams
from lab.stack.redis_ha import RedisTopology
from lab.stack.topology import long_running, project


def _volume_exists(client: docker.DockerClient, name: str) -> bool:
    return bool(client.volumes.list(filters={"name": f"^{project()}_{name}$"}))


def _migrate(compose: Compose, directory: Path, pretix_id: str, fresh_db: bool, from_template: bool,
             log: Log) -> str:
    """deploy_common.migrate_if_needed with compose running the role."""
    return migrate_if_needed(lambda cmd: compose.run("run", "--rm", "--no-deps", "pretix-migrate", *(cmd or [])),
                             directory, pretix_id, fresh_db, from_template, log)


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
    if params.engine != deployed_engine() and (deploy_dir() / "params.json").exists():
        raise DeployError(f"engine={params.engine}: this world's deployment was made with engine "
                          f"{deployed_engine()}; remove it first (`lab down --volumes`), or deploy with --engine "
                          f"{deployed_engine()}")
    if params.engine == "swarm":
        from lab.stack.swarm import deploy as swarm

        return swarm.up(params, log)
    report = UpReport(cold=False)
    with phase(report, "engine", log):
        client = ensure_engine(log=log)
        report.restored += _undo_faults_left(client, log)  # before compose looks at the containers
        check_ports(client, params)
        directory = deploy_dir()
        fresh_db = not _volume_exists(client, "pg-primary")
        foreign = foreign_deployment(client)
        if foreign:
            raise DeployError(foreign)
    with phase(report, "images", log):
        image_ids = ensure_images(client, log, params.python)
    with phase(report, "secrets", log):
        found = secrets.load_or_create(directory)
        secrets.write_env_files(found, directory, RedisTopology.of(params))
        tls = secrets.ensure_tls(directory)
        secrets.write_private(directory / "params.json", params.model_dump_json(indent=2))
        write_limits(params, directory / "compose.limits.yaml")
        secrets.write_private(directory / "pretix-tuning.env", tuning.env_file_text(params))  # no secret in it
        admission.ensure(directory)  # the proxy mounts it; off unless a configuration is already there
        pretix_id = image_ids[pybuild.pretix_tag(params.python)].split(":")[-1][:16]
        template = template_dir() / f"pretix-{pretix_id}.dump"
        use_template = fresh_db and template.exists()
        report.cold = fresh_db and not use_template
        compose = compose_for(params, directory, f"/template/{template.name}" if use_template else "")
    with phase(report, "database", log):
        compose.run("up", "-d", "--wait", "--wait-timeout", "300", "postgres-primary", *REDIS_SERVICES)
    with phase(report, "migrate", log):
        report.migrations = _migrate(compose, directory, pretix_id, fresh_db, use_template, log)
        if report.cold:
            dump_template(client, template)
    with phase(report, "services", log):
        compose.run("up", "-d", "--wait", "--wait-timeout", "300", *long_running())
        report.restored += _undo_faults_left(client, log, again=True)
    with phase(report, "bootstrap", log):
        base_url = f"https://127.0.0.1:{params.https_port}"
        report.access = bootstrap(container(client, "pretix-web-1"), base_url, tls / "ca.crt", directory)
        wait_https(report.access)
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
    from lab.stack.swarm import nodes

    if deployed_engine() == "swarm" or nodes.existing_nodes(client):
        from lab.stack.swarm import deploy as swarm

        return swarm.down(volumes=volumes, log=log)
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
    node: str = ""  # the swarm node it runs on ("" on the compose engine)


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
        node=node_of(c),
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
