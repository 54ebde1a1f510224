"""Finding the deployment's containers by their compose labels: the one thing most of the lab needs from the stack,
kept apart from deploy.py so that reading a container never imports the machinery that brings the stack up."""

from __future__ import annotations

import json
from pathlib import Path

import docker
from docker.errors import DockerException

from lab.common.paths import deploy_dir
from lab.errors import LabError
from lab.stack.topology import project

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_FAULT_HELPER = "pretix-lab.fault-helper"  # a fault's throw-away container (value: the fault's id)


class DeployError(LabError, RuntimeError):
    """The stack cannot be brought up or used as asked; the message says why and what to do."""


class ContainerMissing(DeployError):
    """A service the lab needs has no running container."""


NODE_ATTRIBUTE = "lab_node"  # set on a container found on a swarm node: the node's name
SOCKET_ATTRIBUTE = "lab_engine_socket"  # and the host socket of that node's engine
_node_clients: dict[Path, docker.DockerClient] = {}


def deployed_engine(directory: Path | None = None) -> str:
    """The engine the deployment was made with ("compose" or "swarm"), from its saved parameters."""
    path = (directory or deploy_dir()) / "params.json"
    try:
        return str(json.loads(path.read_text()).get("engine") or "compose")
    except (OSError, ValueError):
        return "compose"


def engines(client: docker.DockerClient) -> list[tuple[str, str, docker.DockerClient]]:
    """(node name, socket url, client) of every engine the deployment's containers live on: this machine's, or
    each swarm node's inner engine through its host socket."""
    if deployed_engine() != "swarm":
        return [("", "", client)]
    from lab.stack.swarm.nodes import API_VERSION, node_sockets

    found = []
    for name, sock in node_sockets().items():
        if sock not in _node_clients:
            _node_clients[sock] = docker.DockerClient(base_url=f"unix://{sock}", version=API_VERSION, timeout=60)
        found.append((name, f"unix://{sock}", _node_clients[sock]))
    return found


def project_containers(client: docker.DockerClient, service: str | None = None) -> list:
    """The deployment's containers (of one service), on whichever engine or swarm node they run."""
    filters = {"label": [f"{LABEL_PROJECT}={project()}"]}
    if service:
        filters["label"].append(f"{LABEL_SERVICE}={service}")
    found = []
    for node, sock, engine in engines(client):
        try:
            listed = engine.containers.list(all=True, filters=filters)
        except (DockerException, OSError):
            if not node:
                raise
            continue  # a killed node: its containers are gone from the deployment's view
        for c in listed:
            setattr(c, NODE_ATTRIBUTE, node)
            if node:
                setattr(c, SOCKET_ATTRIBUTE, sock)
        found += listed
    return found


def docker_cli(c) -> list[str]:
    """The docker CLI's argv start that reaches container `c` (`docker exec` a swarm node's container with -H)."""
    sock = getattr(c, SOCKET_ATTRIBUTE, "")
    return ["docker", "-H", sock] if sock else ["docker"]


def node_of(c) -> str:
    """The swarm node a container runs on ("" on the compose engine)."""
    return getattr(c, NODE_ATTRIBUTE, "")


def container(client: docker.DockerClient, service: str):
    found = [c for c in project_containers(client, service) if c.status == "running"]
    if not found:
        raise ContainerMissing(f"service {service!r} has no running container; is the stack up (`lab status`)?")
    return found[0]


def service_of(c) -> str:
    return c.labels.get(LABEL_SERVICE, c.name)


def remove_fault_helpers(client: docker.DockerClient, fault_id: str | None = None) -> list[str]:
    """Remove the project's fault helper containers (of one fault, or all): a run killed while a helper ran leaves
    it behind, holding the data volume it mounts. Returns the names removed."""
    label = f"{LABEL_FAULT_HELPER}={fault_id}" if fault_id else LABEL_FAULT_HELPER
    found = client.containers.list(all=True, filters={"label": [f"{LABEL_PROJECT}={project()}", label]})
    for helper in found:
        helper.remove(force=True)
    return [helper.name for helper in found]
