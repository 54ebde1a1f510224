"""`lab up/down --engine swarm`: nodes, images, a staged `docker stack deploy`, migrations, pretix's bootstrap.

The stages, and why:
1. data: PostgreSQL and redis first (every other service created at 0 replicas), until healthy. Swarm gives no
   fixed addresses, so the services find each other by name (the redis image turns a name into an address at
   start, lab/stack/images/redis/redis-entrypoint), pretix and the proxy likewise.
2. migrate: pretix's one-shot job as a `docker run` on node 1 (the stack files of docker 20.10 have no one-shot
   service), on the attachable backend network; node 1 also holds the proxy, whose static files the job copies.
3. services: everything, until healthy; then pretix's bootstrap through the same helpers as compose.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import docker
import yaml

from lab.common.paths import CONFIG_DIR, deploy_dir
from lab.pretix.bootstrap import bootstrap
from lab.stack import admission, pybuild, secrets, tuning
from lab.stack.containers import DeployError, container, project_containers, service_of
from lab.stack.deploy_common import (
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
from lab.stack.images import ImageSpec, build, ensure_images
from lab.stack.params import StackParams
from lab.stack.redis_ha import PRIMARY_SERVICE, REPLICA_SERVICE, SENTINEL_SERVICES, RedisTopology
from lab.stack.swarm import nodes
from lab.stack.swarm.definition import generate, job, long_running, node_labels
from lab.stack.topology import project
from lab.stack.topology import services as topology_services

DEFINITION = "swarm-stack.yaml"  # in the deploy folder, 0600: the env files are inlined into it
JOB_ENV = "swarm-job.env"
DATA_SERVICES = ("postgres-primary", "postgres-replica", *REDIS_SERVICES)
WEB_SERVICES = ("pretix-web-1", "pretix-web-2")


def plan_of(params: StackParams, directory: Path) -> nodes.NodePlan:
    return nodes.NodePlan(
        nodes=params.nodes, subnet=params.node_subnet,
        addresses=tuple(params.node_address(i) for i in range(1, params.nodes + 1)),
        published=((params.https_port, 443), (params.http_port, 80)),
        shared=(directory, CONFIG_DIR, template_dir()))


def _node_cli() -> list[str]:
    return ["docker", "-H", f"unix://{nodes.socket_path(1)}"]


def names_topology(params: StackParams) -> RedisTopology:
    """redis and its sentinels addressed by service name (swarm has no fixed addresses)."""
    return RedisTopology(primary=PRIMARY_SERVICE, replica=REPLICA_SERVICE, sentinels=SENTINEL_SERVICES,
                         down_after_ms=params.redis_down_after_ms, reads=params.redis_reads)


def resolved_config(params: StackParams, directory: Path, template: str) -> dict:
    """compose's own resolved view of stack/compose.yaml (anchors, limits override and env files merged), with
    service names in place of compose's fixed addresses."""
    compose = compose_for(params, directory, template)
    compose.env["LAB_WEB_1_ADDR"], compose.env["LAB_WEB_2_ADDR"] = WEB_SERVICES
    compose.env.update(names_topology(params).compose_env())
    out = yaml.safe_load(compose.run("--profile", "jobs", "config", "--format", "json", capture=True).stdout)
    order = list(topology_services())  # compose sorts by name; placement follows compose.yaml's order
    out["services"] = dict(sorted(out["services"].items(), key=lambda kv: order.index(kv[0])))
    return out


def stack_deploy(definition: dict, directory: Path) -> None:
    path = directory / DEFINITION
    secrets.write_private(path, yaml.safe_dump(definition, sort_keys=False))
    proc = subprocess.run([*_node_cli(), "stack", "deploy", "--detach=true", "--resolve-image", "never",
                           "-c", str(path), project()], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeployError(f"docker stack deploy failed: {proc.stderr.strip()[-1500:]}")


def wait_healthy(host: docker.DockerClient, services: list[str], timeout: float, log: Log) -> None:
    """Until each service has a running, healthy container on some node."""
    deadline = time.monotonic() + timeout
    waiting = list(services)
    while waiting:
        up = {service_of(c) for c in project_containers(host) if c.status == "running"
              and (c.attrs["State"].get("Health") or {}).get("Status", "healthy") == "healthy"}
        waiting = [s for s in services if s not in up]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise DeployError(f"not healthy within {timeout:.0f}s: {', '.join(waiting)} (`lab status`, "
                              f"`docker -H unix://{nodes.socket_path(1)} service ps {project()}_<service>`)")
        time.sleep(2)
    del log


def run_job(config: dict, name: str, directory: Path, command: list[str] | None = None) -> None:
    """A one-shot compose job as `docker run --rm` on node 1, on the stack's networks, with its volumes."""
    spec = job(config, name)
    env_file = directory / JOB_ENV
    secrets.write_private(env_file, "".join(f"{k}={v}\n" for k, v in spec.environment.items()))
    cmd = [*_node_cli(), "run", "--rm", "--name", f"{project()}-{name}", "--env-file", str(env_file),
           "--label", f"com.docker.compose.project={project()}", "--label", f"com.docker.compose.service={name}"]
    for network in spec.networks:
        cmd += ["--network", f"{project()}_{network}"]
    for v in spec.volumes:
        source = f"{project()}_{v['source']}" if v["type"] == "volume" else v["source"]
        cmd += ["-v", f"{source}:{v['target']}" + (":ro" if v.get("read_only") else "")]
    cmd += [*(["--memory", spec.memory] if spec.memory else []), *(["--cpus", spec.cpus] if spec.cpus else [])]
    try:
        proc = subprocess.run([*cmd, spec.image, *(command if command is not None else spec.command)],
                              capture_output=True, text=True)
    finally:
        env_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise DeployError(f"{name} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _volume_on_nodes(params: StackParams, name: str) -> bool:
    for index in range(1, params.nodes + 1):
        if nodes.node_client(index).volumes.list(filters={"name": f"^{project()}_{name}$"}):
            return True
    return False


def _migrate(config: dict, directory: Path, pretix_id: str, fresh_db: bool, from_template: bool, log: Log) -> str:
    """deploy_common.migrate_if_needed with the role run as a job on node 1."""
    return migrate_if_needed(lambda cmd: run_job(config, "pretix-migrate", directory, *([cmd] if cmd else [])),
                             directory, pretix_id, fresh_db, from_template, log)


def _check_ports(host: docker.DockerClient, params: StackParams) -> None:
    owner = nodes.existing_nodes(host).get(1)
    if owner is None or owner.status != "running":
        check_ports(host, params)


def up(params: StackParams, log: Log = print) -> UpReport:
    """Deploy the stack on a swarm of `params.nodes` simulated hosts (see the module's docstring)."""
    report = UpReport(cold=False)
    directory = deploy_dir()
    with phase(report, "engine", log):
        host = ensure_engine(log=log)
        _check_ports(host, params)
    with phase(report, "images", log):
        image_ids = ensure_images(host, log, params.python)
        build(host, ImageSpec(name="swarm-node", tag=nodes.NODE_IMAGE, context=nodes.NODE_CONTEXT), log)
    with phase(report, "secrets", log):
        found = secrets.load_or_create(directory)
        secrets.write_env_files(found, directory, names_topology(params))
        tls = secrets.ensure_tls(directory)
        secrets.write_private(directory / "params.json", params.model_dump_json(indent=2))
        write_limits(params, directory / "compose.limits.yaml")
        secrets.write_private(directory / "pretix-tuning.env", tuning.env_file_text(params))
        admission.ensure(directory)
    with phase(report, "nodes", log):
        plan = plan_of(params, directory)
        nodes.start_nodes(host, plan, log)
        nodes.form_swarm(plan, lambda i: node_labels(i, params.nodes), log)
    with phase(report, "delivery", log):
        nodes.deliver_images(host, list(image_ids), params.nodes, log)
    with phase(report, "database", log):
        fresh_db = not _volume_on_nodes(params, "pg-primary")
        pretix_id = image_ids[pybuild.pretix_tag(params.python)].split(":")[-1][:16]
        template = template_dir() / f"pretix-{pretix_id}.dump"
        use_template = fresh_db and template.exists()
        report.cold = fresh_db and not use_template
        config = resolved_config(params, directory, f"/template/{template.name}" if use_template else "")
        stack_deploy(generate(config, project=project(), nodes=params.nodes, running=set(DATA_SERVICES)), directory)
        wait_healthy(host, list(DATA_SERVICES), 300, log)
    with phase(report, "migrate", log):
        report.migrations = _migrate(config, directory, pretix_id, fresh_db, use_template, log)
        if report.cold:
            dump_template(host, template)
    with phase(report, "services", log):
        stack_deploy(generate(config, project=project(), nodes=params.nodes), directory)
        wait_healthy(host, list(long_running(config)), 300, log)
    with phase(report, "bootstrap", log):
        base_url = f"https://127.0.0.1:{params.https_port}"
        report.access = bootstrap(container(host, "pretix-web-1"), base_url, tls / "ca.crt", directory)
        wait_https(report.access, timeout=120)
        admission.apply(admission.OFF, docker_client=host, access=report.access, directory=directory,
                        log=lambda _m: None, if_changed=True)
    return report


def down(volumes: bool = False, log: Log = print) -> list[str]:
    """Remove the stack, the swarm, the node containers and their network; with volumes also the node volumes
    (every image and data volume inside the nodes) and this deployment's secrets. Returns what is left."""
    host = ensure_engine(log=log)
    params = saved_params() or StackParams(engine="swarm")
    running = nodes.existing_nodes(host)
    if 1 in running and running[1].status == "running":
        subprocess.run([*_node_cli(), "stack", "rm", project()], capture_output=True, text=True)
        deadline = time.monotonic() + 60
        while project_containers(host) and time.monotonic() < deadline:
            time.sleep(1)
    nodes.leave_swarm(max(params.nodes, max(running, default=0)))
    nodes.remove_nodes(host, volumes)
    not_removed = secrets.remove_secrets(deploy_dir()) if volumes else []
    for problem in not_removed:
        log(f"could not remove secrets: {problem}")
    return nodes.leftovers(host, volumes) + [f"secrets {problem}" for problem in not_removed]
