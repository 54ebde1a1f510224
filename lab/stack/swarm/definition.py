"""The swarm definition, generated from compose's resolved configuration of stack/compose.yaml (never a copy).

`docker-compose config --format json` has already merged the anchors, the limits override and the env files; this
module keeps what `docker stack deploy` understands, drops what it cannot do (build, depends_on, fixed addresses,
profiles: one-shot jobs run apart), labels each service's containers as compose would (so the lab finds them the
same way on either engine) and adds the placement rules:

- instances of one module (pretix-web-1/-2, postgres-primary/-replica, redis/redis-replica, the sentinels) are
  held on disjoint sets of nodes (node label `pretix-lab.mod<k>`, k = the module's instance count), so no two of
  them ever share a node and a stateless instance may still move within its own set;
- a service with a volume of its own (PostgreSQL's data) is pinned to one node: a local volume does not travel;
- services are found by name (endpoint_mode dnsrr: swarm's virtual IPs need IPVS, which this machine's kernel
  lacks; swarm puts a task into its service's DNS once the task is healthy);
- the service that publishes ports (the proxy) is pinned to node 1, the node container that publishes them on
  127.0.0.1 of this machine (host-mode ports inside the node, never the routing mesh).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
NODE_LABEL = "pretix-lab.node"  # 1..N: which simulated host a node is
CLASS_LABEL = "pretix-lab.mod{k}"  # (node - 1) % k: the node's class for a module of k instances
PUBLISHING_NODE = 1
FILE_VERSION = "3.8"
_INSTANCE_SUFFIX = re.compile(r"-(\d+|primary|replica)$")


def module_of(service: str) -> str:
    """pretix-web-2 -> pretix-web, postgres-replica -> postgres, redis -> redis (the module an instance is of)."""
    return _INSTANCE_SUFFIX.sub("", service)


def node_labels(index: int, nodes: int, largest_module: int = 3) -> dict[str, str]:
    """The labels node `index` (1-based) carries, which the placement constraints read."""
    labels = {NODE_LABEL: str(index)}
    for k in range(2, max(largest_module, 2) + 1):
        labels[CLASS_LABEL.format(k=k)] = str((index - 1) % k)
    del nodes
    return labels


@dataclass(frozen=True)
class Placement:
    """Where each long-running service may run: constraints per service, and which modules have how many."""

    constraints: dict[str, list[str]]
    modules: dict[str, list[str]]

    def largest_module(self) -> int:
        return max((len(v) for v in self.modules.values()), default=1)


def _own_volumes(services: dict[str, dict]) -> dict[str, list[str]]:
    """Per service, the named volumes no other service mounts (its state lives on one node)."""
    users: Counter[str] = Counter()
    named: dict[str, list[str]] = {}
    for name, spec in services.items():
        named[name] = [v["source"] for v in spec.get("volumes") or [] if v.get("type") == "volume"]
        users.update(set(named[name]))
    return {name: [v for v in vols if users[v] == 1] for name, vols in named.items()}


def placement(services: dict[str, dict], nodes: int) -> Placement:
    """The placement rules for the long-running services (see the module's docstring)."""
    modules: dict[str, list[str]] = {}
    for name in services:
        modules.setdefault(module_of(name), []).append(name)
    own = _own_volumes(services)
    constraints: dict[str, list[str]] = {}
    pinned_next = 2 if nodes > 1 else 1  # stateful services start off node 1, which holds the proxy
    for ordinal, (_module, members) in enumerate(modules.items()):
        k = len(members)
        if k > nodes:
            raise ValueError(f"module {_module} has {k} instances but the swarm only {nodes} nodes")
        for i, name in enumerate(members):
            if services[name].get("ports"):
                constraints[name] = [f"node.labels.{NODE_LABEL} == {PUBLISHING_NODE}"]
            elif own[name]:
                constraints[name] = [f"node.labels.{NODE_LABEL} == {pinned_next}"]
                pinned_next = pinned_next % nodes + 1
            elif k > 1:
                constraints[name] = [f"node.labels.{CLASS_LABEL.format(k=k)} == {(i + ordinal) % k}"]
            else:
                constraints[name] = []
    return Placement(constraints=constraints, modules=modules)


def _volumes(spec: dict) -> list[dict]:
    out = []
    for v in spec.get("volumes") or []:
        entry = {key: v[key] for key in ("type", "source", "target", "read_only") if key in v}
        out.append(entry)
    return out


def _ports(spec: dict) -> list[dict]:
    """Host-mode ports inside the node (target = published); the node container publishes them on 127.0.0.1."""
    return [{"target": int(p["target"]), "published": int(p["target"]), "protocol": p.get("protocol", "tcp"),
             "mode": "host"} for p in spec.get("ports") or []]


def _deploy(spec: dict, constraints: list[str], replicas: int, project: str, name: str) -> dict:
    limits = ((spec.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    resources = {}
    if limits:
        resources["limits"] = {key: str(limits[key]) for key in ("cpus", "memory") if key in limits}
    out: dict[str, Any] = {
        "mode": "replicated", "replicas": replicas,
        "endpoint_mode": "dnsrr",  # a name resolves to the task itself: no IPVS virtual IP (the kernel here lacks it)
        "restart_policy": {"condition": "any", "delay": "2s"},
        "labels": {LABEL_PROJECT: project, LABEL_SERVICE: name},
        "placement": {"constraints": constraints},
    }
    if resources:
        out["resources"] = resources
    return out


KEPT = ("image", "command", "entrypoint", "environment", "healthcheck", "stop_grace_period", "logging")


def service(spec: dict, *, name: str, project: str, constraints: list[str], replicas: int = 1) -> dict:
    """One compose service as a swarm service."""
    out = {key: spec[key] for key in KEPT if spec.get(key) is not None}
    out["networks"] = sorted(spec.get("networks") or {})
    if spec.get("volumes"):
        out["volumes"] = _volumes(spec)
    if spec.get("ports"):
        out["ports"] = _ports(spec)
    out["labels"] = {LABEL_PROJECT: project, LABEL_SERVICE: name}  # container labels: how the lab finds them
    out["deploy"] = _deploy(spec, constraints, replicas, project, name)
    return out


def _networks(config: dict) -> dict:
    out = {}
    for name, spec in (config.get("networks") or {}).items():
        subnets = [{"subnet": c["subnet"]} for c in (spec.get("ipam") or {}).get("config") or [] if "subnet" in c]
        entry: dict[str, Any] = {"driver": "overlay", "attachable": True}  # attachable: one-shot jobs join it
        if spec.get("internal"):
            entry["internal"] = True
        if subnets:
            entry["ipam"] = {"config": subnets}
        out[name] = entry
    return out


def long_running(config: dict) -> dict[str, dict]:
    """The services that stay up (compose profiles hold the one-shot jobs)."""
    return {name: spec for name, spec in config["services"].items() if not spec.get("profiles")}


def generate(config: dict, *, project: str, nodes: int, running: set[str] | None = None) -> dict:
    """The `docker stack deploy` definition. `running`: services at one replica (the others at 0, so that a
    staged deployment still creates every service, and its addresses, up front); None runs all."""
    services = long_running(config)
    rules = placement(services, nodes)
    return {
        "version": FILE_VERSION,
        "services": {
            name: service(spec, name=name, project=project, constraints=rules.constraints[name],
                          replicas=1 if running is None or name in running else 0)
            for name, spec in services.items()
        },
        "networks": _networks(config),
        "volumes": {name: {} for name in config.get("volumes") or {}},
    }


@dataclass(frozen=True)
class Job:
    """A one-shot job (compose profile) as a `docker run` on a node: what it runs, mounts and needs."""

    name: str
    image: str
    command: list[str]
    environment: dict[str, str]
    volumes: list[dict]
    networks: list[str]
    memory: str | None
    cpus: str | None


def job(config: dict, name: str) -> Job:
    spec = config["services"][name]
    limits = ((spec.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    return Job(name=name, image=spec["image"], command=list(spec.get("command") or []),
               environment={k: str(v) for k, v in (spec.get("environment") or {}).items() if v is not None},
               volumes=_volumes(spec), networks=sorted(spec.get("networks") or {}),
               memory=str(limits["memory"]) if "memory" in limits else None,
               cpus=str(limits["cpus"]) if "cpus" in limits else None)
