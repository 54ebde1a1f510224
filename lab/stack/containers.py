"""Finding the deployment's containers by their compose labels: the one thing most of the lab needs from the stack,
kept apart from deploy.py so that reading a container never imports the machinery that brings the stack up."""

from __future__ import annotations

import docker

from lab.errors import LabError
from lab.stack.topology import project

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_FAULT_HELPER = "pretix-lab.fault-helper"  # a fault's throw-away container (value: the fault's id)


class DeployError(LabError, RuntimeError):
    """The stack cannot be brought up or used as asked; the message says why and what to do."""


class ContainerMissing(DeployError):
    """A service the lab needs has no running container."""


def project_containers(client: docker.DockerClient, service: str | None = None) -> list:
    filters = {"label": [f"{LABEL_PROJECT}={project()}"]}
    if service:
        filters["label"].append(f"{LABEL_SERVICE}={service}")
    return client.containers.list(all=True, filters=filters)


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
