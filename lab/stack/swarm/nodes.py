"""The simulated hosts of a swarm deployment: Docker-in-Docker node containers on a network the lab makes.

Each node runs its own dockerd (Debian's docker.io) with /var/lib/docker on a per-node volume. The inner dockerd
also listens on a socket in a host folder bind-mounted into the node (var/swarm/node-N/docker.sock), so the lab
reaches every node's engine from the host with an ordinary client. `--privileged` is refused on these machines;
the flags below are the ones proven to work (../shared/FACTS.md, 2026-12-03).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, NotFound

from lab.common.paths import STACK_DIR, var_dir
from lab.errors import LabError
from lab.stack.topology import project

NODE_IMAGE = "pretix-lab/swarm-node:local"
NODE_CONTEXT = STACK_DIR / "swarm-node"
OWNER_LABEL = "pretix-lab.swarm"  # value: the project; on the node containers, their network and volumes
API_VERSION = "1.41"  # Debian's dockerd 20.10 inside the nodes; fixed, so making a client contacts nothing
MANAGERS = 3  # raft keeps working when one of three managers is lost
INNER_SOCKET_DIR = "/lab-engine"
Log = Callable[[str], None]


class NodeError(LabError, RuntimeError):
    """A node could not be started, reached or joined; the message names it."""


def node_name(index: int) -> str:
    return f"{project()}-node-{index}"


def network_name() -> str:
    return f"{project()}-nodes"


def volume_name(index: int) -> str:
    return f"{project()}-node-{index}-docker"


def socket_dir(index: int) -> Path:
    return var_dir() / "swarm" / f"node-{index}"


def socket_path(index: int) -> Path:
    return socket_dir(index) / "docker.sock"


def run_flags() -> list[str]:
    """What a Docker-in-Docker node needs short of --privileged (refused here: CAP_SYS_RESOURCE is outside the
    bounding set); without the cgroup bind nested containers fail on a read-only /sys/fs/cgroup."""
    return ["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
            "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
            "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]


@dataclass(frozen=True)
class NodePlan:
    """How many nodes, where they sit, what they publish and which host folders they see (same path inside)."""

    nodes: int
    subnet: str
    addresses: tuple[str, ...]
    published: tuple[tuple[int, int], ...]  # (port on 127.0.0.1 of this machine, port inside node 1)
    shared: tuple[Path, ...]  # host folders bind-mounted read-only at the same path (deploy folder, config, ...)


def run_command(plan: NodePlan, index: int) -> list[str]:
    """The `docker run` of node `index` (1-based): published ports only on 127.0.0.1, and only on node 1."""
    cmd = ["docker", "run", "-d", "--name", node_name(index), "--hostname", node_name(index),
           "--label", f"{OWNER_LABEL}={project()}", "--network", network_name(),
           "--ip", plan.addresses[index - 1], *run_flags(),
           "-v", f"{volume_name(index)}:/var/lib/docker", "-v", f"{socket_dir(index)}:{INNER_SOCKET_DIR}"]
    for folder in plan.shared:
        cmd += ["-v", f"{folder}:{folder}:ro"]
    if index == 1:
        for host_port, inner in plan.published:
            cmd += ["-p", f"127.0.0.1:{host_port}:{inner}"]
    return cmd + [NODE_IMAGE, "-H", "unix:///var/run/docker.sock", "-H", f"unix://{INNER_SOCKET_DIR}/docker.sock"]


def node_client(index: int, timeout: int = 120) -> docker.DockerClient:
    return docker.DockerClient(base_url=f"unix://{socket_path(index)}", version=API_VERSION, timeout=timeout)


def _answers(index: int) -> bool:
    try:
        node_client(index, timeout=5).ping()
        return True
    except (DockerException, OSError):
        return False


def existing_nodes(host: docker.DockerClient) -> dict[int, object]:
    """The node containers of this project (any state), by index."""
    found = host.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={project()}"})
    prefix = f"{project()}-node-"
    return {int(c.name.removeprefix(prefix)): c for c in found if c.name.removeprefix(prefix).isdigit()}


def ensure_network(host: docker.DockerClient, subnet: str) -> None:
    try:
        host.networks.get(network_name())
    except NotFound:
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        host.networks.create(network_name(), driver="bridge", ipam=ipam, labels={OWNER_LABEL: project()})


def start_nodes(host: docker.DockerClient, plan: NodePlan, log: Log, wait_seconds: float = 90) -> None:
    """Start (or restart) every node container and wait until each inner engine answers on its host socket."""
    ensure_network(host, plan.subnet)
    existing = existing_nodes(host)
    for index in range(1, plan.nodes + 1):
        found = existing.get(index)
        if found is not None and found.status == "running" and _answers(index):
            continue
        if found is not None:
            found.remove(force=True)  # a stale socket or changed flags: start it afresh (its volume stays)
        socket_dir(index).mkdir(parents=True, exist_ok=True, mode=0o700)
        socket_path(index).unlink(missing_ok=True)
        proc = subprocess.run(run_command(plan, index), capture_output=True, text=True)
        if proc.returncode != 0:
            raise NodeError(f"node {node_name(index)} did not start: {proc.stderr.strip()[-500:]}")
        log(f"node {node_name(index)} started at {plan.addresses[index - 1]}")
    deadline = time.monotonic() + wait_seconds
    for index in range(1, plan.nodes + 1):
        while not _answers(index):
            if time.monotonic() > deadline:
                raise NodeError(f"the engine inside {node_name(index)} did not answer within {wait_seconds:.0f}s "
                                f"(docker logs {node_name(index)})")
            time.sleep(0.5)


def _reset(client: docker.DockerClient) -> None:
    """Leave whatever swarm the node believes it is in (a node killed mid-deployment keeps a stale membership)."""
    try:
        client.api.leave_swarm(force=True)
    except APIError:
        pass


def form_swarm(plan: NodePlan, labels: Callable[[int], dict[str, str]], log: Log) -> None:
    """Node 1 initialises the swarm, nodes 2-3 join as managers, the rest as workers; every node gets its labels.
    A node whose membership is stale (a swarm without a leader, or another swarm) leaves it first."""
    first = node_client(1)
    try:
        if first.info()["Swarm"]["LocalNodeState"] != "active":
            raise NotFound("no swarm")
        first.api.inspect_swarm()  # fails when node 1 holds a swarm that has no leader any more
    except APIError:
        _reset(first)
        first.api.init_swarm(advertise_addr=plan.addresses[0], listen_addr=f"{plan.addresses[0]}:2377")
        log(f"swarm initialised on {node_name(1)}")
    tokens = first.api.inspect_swarm()["JoinTokens"]
    members = {n["ID"] for n in first.api.nodes()}
    for index in range(2, plan.nodes + 1):
        client = node_client(index)
        state = client.info()["Swarm"]
        if state["LocalNodeState"] == "active" and state.get("NodeID") in members:
            continue
        _reset(client)
        token = tokens["Manager"] if index <= MANAGERS else tokens["Worker"]
        client.api.join_swarm(remote_addrs=[f"{plan.addresses[0]}:2377"], join_token=token,
                              advertise_addr=plan.addresses[index - 1],
                              listen_addr=f"{plan.addresses[index - 1]}:2377")
    by_host: dict[str, object] = {}
    for node in first.nodes.list():  # a host listed twice (an old membership, down): the ready one counts
        host = node.attrs["Description"]["Hostname"]
        if host not in by_host or node.attrs["Status"]["State"] == "ready":
            by_host[host] = node
    for index in range(1, plan.nodes + 1):
        node = by_host.get(node_name(index))
        if node is None:
            raise NodeError(f"{node_name(index)} is not in the swarm")
        spec = dict(node.attrs["Spec"])  # type: ignore[attr-defined]
        spec["Labels"] = {**(spec.get("Labels") or {}), **labels(index)}
        node.update(spec)  # type: ignore[attr-defined]


def leave_swarm(nodes: int) -> None:
    """Every node leaves (force): the next `lab up` forms a new swarm; volumes and images inside stay."""
    for index in range(nodes, 0, -1):
        try:
            node_client(index, timeout=30).api.leave_swarm(force=True)
        except (DockerException, OSError):
            pass


def _image_id(client: docker.DockerClient, tag: str) -> str | None:
    try:
        return client.images.get(tag).id
    except (NotFound, APIError):
        return None


def deliver_images(host: docker.DockerClient, tags: list[str], nodes: int, log: Log) -> dict[int, list[str]]:
    """Copy each image a node lacks (or holds in another version) into it: `docker save | docker exec -i NODE
    docker load`, nodes in parallel. Returns what each node received."""
    wanted = {tag: host.images.get(tag).id for tag in tags}

    def one(index: int) -> list[str]:
        client = node_client(index, timeout=600)
        missing = [tag for tag, image_id in wanted.items() if _image_id(client, tag) != image_id]
        if missing:
            save = subprocess.Popen(["docker", "save", *missing], stdout=subprocess.PIPE)
            load = subprocess.run(["docker", "exec", "-i", node_name(index), "docker", "load", "-q"],
                                  stdin=save.stdout, capture_output=True, text=True)
            save.stdout.close()  # type: ignore[union-attr]
            if save.wait() != 0 or load.returncode != 0:
                raise NodeError(f"loading images into {node_name(index)} failed: {load.stderr.strip()[-500:]}")
        return missing

    with ThreadPoolExecutor(max_workers=nodes) as pool:
        done = dict(zip(range(1, nodes + 1), pool.map(one, range(1, nodes + 1)), strict=True))
    for index, missing in done.items():
        if missing:
            log(f"{node_name(index)}: loaded {', '.join(missing)}")
    return done


def remove_nodes(host: docker.DockerClient, volumes: bool) -> None:
    """Remove the node containers and their network (and with volumes, each node's /var/lib/docker volume)."""
    for found in existing_nodes(host).values():
        found.remove(force=True)
    try:
        host.networks.get(network_name()).remove()
    except NotFound:
        pass
    if volumes:
        for volume in host.volumes.list(filters={"name": f"{project()}-node-"}):
            if volume.name.startswith(f"{project()}-node-") and volume.name.endswith("-docker"):
                volume.remove(force=True)
        for index in range(1, 64):
            folder = socket_dir(index)
            if folder.exists():
                socket_path(index).unlink(missing_ok=True)
                folder.rmdir()
        if (var_dir() / "swarm").exists():
            (var_dir() / "swarm").rmdir()


def leftovers(host: docker.DockerClient, volumes: bool = True) -> list[str]:
    """What of the nodes is still there: containers, the network (and the node volumes, when they should be gone)."""
    left = [f"node container {c.name}" for c in existing_nodes(host).values()]
    left += [f"network {n.name}" for n in host.networks.list(names=[network_name()]) if n.name == network_name()]
    if not volumes:
        return left
    left += [f"volume {v.name}" for v in host.volumes.list(filters={"name": f"{project()}-node-"})
             if v.name.startswith(f"{project()}-node-") and v.name.endswith("-docker")]
    return left


def node_sockets() -> dict[str, Path]:
    """node name -> host socket, for every node folder of this world that holds a socket."""
    root = var_dir() / "swarm"
    if not root.exists():
        return {}
    found = {}
    for folder in sorted(root.glob("node-*")):
        index = folder.name.removeprefix("node-")
        if index.isdigit() and (folder / "docker.sock").exists():
            found[node_name(int(index))] = folder / "docker.sock"
    return found
