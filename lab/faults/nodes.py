"""Whole-node faults of a swarm deployment (`lab up --engine swarm`): what HA is for, a host that goes away.

  node-kill       the node's container is killed: its engine and every container on it stop at once;
                  undo: start it again (it rejoins the swarm on its own) and wait for every service to be healthy
  node-partition  disconnect the node from the lab's node network (cut off from the other nodes, its overlay
                  traffic included); undo: reconnect it at its fixed address
  node-drain      `docker node update --availability drain`: swarm moves the node's tasks elsewhere where the
                  placement rules allow; undo: availability active

The target is a node, `node-1` .. `node-N`. Each undo measures the recovery: seconds from the undo until every
long-running service has a running, healthy container again (`recovery_s` in the undo record; None when that did
not happen within RECOVERY_TIMEOUT).
"""

from __future__ import annotations

import time
from typing import Any

from lab.faults.catalogue import Fault, faults, long_running_specs
from lab.stack.params import MAX_NODES
from lab.stack.topology import ServiceSpec, project

RECOVERY_TIMEOUT = 240.0


def healthy_after(docker_client: Any, services: list[str], timeout: float = RECOVERY_TIMEOUT) -> float | None:
    """Seconds until each service has a running, healthy container on a node that answers (None: not in time)."""
    from lab.stack.containers import project_containers, service_of

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        up = {service_of(c) for c in project_containers(docker_client) if c.status == "running"
              and (c.attrs["State"].get("Health") or {}).get("Status", "healthy") == "healthy"}
        if all(s in up for s in services):
            return round(time.monotonic() - start, 1)
        time.sleep(1)
    return None


class NodeFault(Fault):
    """A fault whose target is a swarm node: acts on the node container on this machine's engine."""

    @classmethod
    def allowed_targets(cls, topology: dict[str, ServiceSpec] | None = None) -> list[str]:
        return [f"node-{i}" for i in range(1, MAX_NODES + 1)]

    @classmethod
    def services_of(cls, target: str, topology: dict[str, ServiceSpec] | None = None) -> list[str]:
        return [target]

    def containers(self) -> list[tuple[str, Any]]:
        from docker.errors import NotFound

        from lab.stack.containers import ContainerMissing

        name = f"{project()}-{self.instance.target}"
        try:
            return [(self.instance.target, self.ctx.docker.containers.get(name))]
        except NotFound:
            raise ContainerMissing(f"no node container {name}: is the deployment a swarm (`lab up --engine swarm`) "
                                   "with that many nodes?") from None

    def health_services(self) -> list[str]:
        return list(long_running_specs(self.ctx.topology))

    def _recovered(self) -> dict[str, Any]:
        return {"recovery_s": healthy_after(self.ctx.docker, self.health_services())}


def _index(container: Any) -> int:
    return int(container.name.rsplit("-", 1)[-1])


@faults.register("node-kill")
class NodeKill(NodeFault):
    summary = "kill a swarm node (its engine and all its containers); undo: start it, it rejoins"

    def apply(self, container: Any) -> dict[str, Any]:
        container.kill(signal="SIGKILL")
        return {"node": container.name}

    def revert(self, container: Any, state: Any) -> dict[str, Any]:
        from lab.stack.swarm.nodes import node_client

        container.reload()
        if container.status != "running":
            container.start()
        deadline = time.monotonic() + 90
        while True:
            try:
                node_client(_index(container), timeout=5).ping()
                break
            except Exception:  # noqa: BLE001 - the inner engine is still starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        return self._recovered()


@faults.register("node-partition")
class NodePartition(NodeFault):
    summary = "cut a swarm node off the node network; undo: reconnect it at its address"

    def capture(self, container: Any) -> dict[str, Any]:
        from lab.stack.swarm.nodes import network_name

        nets = container.attrs["NetworkSettings"]["Networks"]
        return {"network": network_name(), "address": nets[network_name()]["IPAddress"]}

    def apply(self, container: Any) -> dict[str, Any]:
        state = self.capture(container)
        self.ctx.docker.networks.get(state["network"]).disconnect(container, force=True)
        return state

    def revert(self, container: Any, state: Any) -> dict[str, Any]:
        network = self.ctx.docker.networks.get(state["network"])
        container.reload()
        if state["network"] not in container.attrs["NetworkSettings"]["Networks"]:
            network.connect(container, ipv4_address=state["address"])
        return self._recovered()


def _set_availability(target: Any, availability: str) -> None:
    """Through a manager that is not the target (the target may be the one that cannot answer)."""
    from lab.stack.swarm.nodes import MANAGERS, node_client

    index = _index(target)
    last: Exception | None = None
    for manager in [i for i in range(1, MANAGERS + 1) if i != index]:
        try:
            client = node_client(manager, timeout=20)
            node = next(n for n in client.nodes.list() if n.attrs["Description"]["Hostname"] == target.name)
            spec = dict(node.attrs["Spec"])
            spec["Availability"] = availability
            node.update(spec)
            return
        except Exception as error:  # noqa: BLE001 - try the next manager
            last = error
    raise RuntimeError(f"no manager could set {target.name} to {availability}: {last}")


@faults.register("node-drain")
class NodeDrain(NodeFault):
    summary = "drain a swarm node (its tasks move where placement allows); undo: make it active again"

    def apply(self, container: Any) -> dict[str, Any]:
        _set_availability(container, "drain")
        return {"node": container.name}

    def revert(self, container: Any, state: Any) -> dict[str, Any]:
        _set_availability(container, "active")
        return self._recovered()
