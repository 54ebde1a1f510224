"""The built-in faults, each with its undo. They register exactly like a plugin would.

  kill            SIGKILL (a crash) or SIGTERM (a stop) the target's container(s); undo: start them again
  pause           freeze the target (a hang: connections open, nothing answers); undo: unpause
  restart         restart the target (e.g. the proxy); undo: start it if it is not running
  partition       disconnect the target from a compose network (default `backend`: the database side);
                  undo: reconnect it with the aliases (and fixed address) it had
  cpu-throttle    lower the target's CPU limit (NanoCpus, or CFS quota/period where that was set); undo: restore
  memory-squeeze  lower the memory limit to the current usage plus a headroom (no swap); undo: restore both
The PostgreSQL failover lives in lab/faults/postgres.py, the redis failover in lab/faults/redis.py. A `pause` of the
redis master longer than the sentinels' down-after time (redis_down_after_ms) is a failover too: after the unpause the
old master rejoins as a replica (the roles stay switched; `redis-failover` is the fault that switches them back).

`kill` sets the restart policy to "no" while the fault lasts (restored by the undo), so a killed container stays
down for exactly `duration` whatever docker's restart policy would do.

Each fault's `capture` reads the old values its undo needs before anything changes: they go to the fault journal
(lab/faults/journal.py) first, and `revert` restores them from that data alone, in this process or a fresh one.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from lab.common.paths import COMPOSE_FILE
from lab.errors import InputError
from lab.faults.catalogue import Fault, faults
from lab.faults.failover import restart_policy
from lab.stack.containers import LABEL_PROJECT
from lab.stack.topology import project

MIB = 2**20
MIN_MEMORY = 8 * MIB  # docker refuses limits below 6 MiB


def _wait_state(container: Any, done, timeout: float, what: str) -> None:
    """Poll the container (0.2 s) until done(container) or timeout; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        if done(container):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{container.name} did not {what} within {timeout:.0f} s (status {container.status})")
        time.sleep(0.2)


def update_resources(client: Any, container: Any, body: dict[str, int]) -> None:
    """POST /containers/{id}/update with raw fields. docker-py's Container.update() has no NanoCpus, and compose
    sets the CPU limit as NanoCpus (which the engine refuses to combine with a CFS quota)."""
    api = client.api
    api._result(api._post_json(api._url("/containers/{0}/update", container.id), data=body), True)


# ----------------------------------------------------------------------------------------------------------- kill
class KillOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    signal: Literal["SIGKILL", "SIGTERM"] = Field(
        default="SIGKILL", description="SIGKILL: a crash; SIGTERM: a graceful stop (docker stop)")
    stop_timeout: int = Field(default=20, ge=0, le=120, description="SIGTERM: seconds before docker kills it")


@faults.register("kill")
class Kill(Fault):
    summary = "kill the target's container(s); undo: start them again"
    Options = KillOptions

    def capture(self, container: Any) -> dict[str, Any]:
        return {"restart_policy": restart_policy(container), "signal": self.options.signal}

    def apply(self, container: Any) -> dict[str, Any]:
        policy = restart_policy(container)
        container.update(restart_policy={"Name": "no"})
        try:
            if self.options.signal == "SIGKILL":
                container.kill(signal="SIGKILL")
            else:
                container.stop(timeout=self.options.stop_timeout)
            _wait_state(container, lambda c: c.status != "running", 30, "stop")
        except Exception:
            container.update(restart_policy=policy)
            raise
        return {"restart_policy": policy, "signal": self.options.signal}

    def revert(self, container: Any, state: dict[str, Any]) -> dict[str, Any]:
        container.reload()
        started = container.status != "running"
        if started:
            container.start()
        container.update(restart_policy=state["restart_policy"])
        return {"started": started}


# ---------------------------------------------------------------------------------------------------------- pause
@faults.register("pause")
class Pause(Fault):
    summary = "freeze the target's processes (a hang); undo: unpause"

    def apply(self, container: Any) -> None:
        container.pause()

    def revert(self, container: Any, state: Any) -> dict[str, Any]:
        container.reload()
        paused = container.status == "paused"
        if paused:
            container.unpause()
        return {"unpaused": paused}


# -------------------------------------------------------------------------------------------------------- restart
class RestartOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    timeout: int = Field(default=10, ge=0, le=120, description="seconds to stop gracefully before a kill")


@faults.register("restart")
class Restart(Fault):
    summary = "restart the target's container(s); undo: start them if they are not running"
    Options = RestartOptions

    def apply(self, container: Any) -> dict[str, Any]:
        began = time.time()
        container.restart(timeout=self.options.timeout)
        return {"restart_seconds": round(time.time() - began, 3)}

    def revert(self, container: Any, state: Any) -> dict[str, Any]:
        container.reload()
        started = container.status != "running"
        if started:
            container.start()
        return {"started": started}


# ------------------------------------------------------------------------------------------------------ partition
def compose_networks() -> list[str]:
    """The networks stack/compose.yaml declares (the one topology)."""
    return list((yaml.safe_load(COMPOSE_FILE.read_text()) or {}).get("networks") or {})


class PartitionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    network: str = Field(default="backend", description="the compose network to cut the target from")


@faults.register("partition")
class Partition(Fault):
    summary = "disconnect the target from a compose network (default: backend, the database side); undo: reconnect"
    Options = PartitionOptions

    @classmethod
    def check_options(cls, options: dict[str, Any], topology=None) -> None:
        network = options.get("network", "backend")
        known = compose_networks()
        if network not in known:
            raise InputError.of("fault options", "options.network",
                                f"no network {network!r} in stack/compose.yaml; known: {', '.join(known)}", known)

    def _network(self):
        found = self.ctx.docker.networks.list(filters={"label": [
            f"{LABEL_PROJECT}={project()}", f"com.docker.compose.network={self.options.network}"]})
        if not found:
            raise LookupError(f"network {self.options.network!r} of project {project()} does not exist; is the "
                              "stack up?")
        return found[0]

    def capture(self, container: Any) -> dict[str, Any]:
        network = self._network()
        endpoints = container.attrs["NetworkSettings"]["Networks"] or {}
        if network.name not in endpoints:
            on = ", ".join(n.removeprefix(f"{project()}_") for n in endpoints)
            raise ValueError(f"{container.name} is not on network {self.options.network!r}; it is on: {on}")
        endpoint = endpoints[network.name]
        return {
            "network": network.name,
            "aliases": [a for a in endpoint.get("Aliases") or [] if a not in (container.id[:12], container.id)],
            "ipv4_address": (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None,
            "address": endpoint.get("IPAddress"),
        }

    def apply(self, container: Any) -> dict[str, Any]:
        state = self.capture(container)
        self.ctx.docker.networks.get(state["network"]).disconnect(container)
        return state

    def revert(self, container: Any, state: dict[str, Any]) -> dict[str, Any]:
        container.reload()
        if state["network"] in (container.attrs["NetworkSettings"]["Networks"] or {}):
            return {"reconnected": False}
        network = self.ctx.docker.networks.get(state["network"])
        network.connect(container, aliases=state["aliases"] or None, ipv4_address=state["ipv4_address"])
        container.reload()
        now = (container.attrs["NetworkSettings"]["Networks"] or {}).get(state["network"], {})
        return {"reconnected": True, "address": now.get("IPAddress")}


# --------------------------------------------------------------------------------------------------- cpu-throttle
class CpuOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cpus: float = Field(default=0.1, gt=0.01, le=64, description="CPUs the target may use while the fault lasts")


@faults.register("cpu-throttle")
class CpuThrottle(Fault):
    summary = "lower the target's CPU limit; undo: restore the limit it had"
    Options = CpuOptions

    def capture(self, container: Any) -> dict[str, Any]:
        host = container.attrs["HostConfig"]
        return {"NanoCpus": int(host.get("NanoCpus") or 0), "CpuQuota": int(host.get("CpuQuota") or 0),
                "CpuPeriod": int(host.get("CpuPeriod") or 0)}

    def apply(self, container: Any) -> dict[str, Any]:
        state = self.capture(container)
        if state["CpuQuota"] > 0 and state["NanoCpus"] == 0:
            period = state["CpuPeriod"] or 100_000
            update_resources(self.ctx.docker, container,
                             {"CpuPeriod": period, "CpuQuota": max(1000, int(self.options.cpus * period))})
        else:
            update_resources(self.ctx.docker, container, {"NanoCpus": int(self.options.cpus * 1e9)})
        return {**state, "cpus": self.options.cpus}

    def revert(self, container: Any, state: dict[str, Any]) -> dict[str, Any]:
        if state["CpuQuota"] > 0 and state["NanoCpus"] == 0:
            update_resources(self.ctx.docker, container,
                             {"CpuPeriod": state["CpuPeriod"] or 100_000, "CpuQuota": state["CpuQuota"]})
        else:
            # NanoCpus 0 = no limit (what a container without one had)
            update_resources(self.ctx.docker, container, {"NanoCpus": state["NanoCpus"]})
        container.reload()
        return {"NanoCpus": container.attrs["HostConfig"].get("NanoCpus")}


# ------------------------------------------------------------------------------------------------- memory-squeeze
class MemoryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    headroom_mib: float = Field(default=16, gt=0, le=4096,
                                description="MiB above the current usage (page cache excluded) for the new limit")


def memory_in_use(stats: dict) -> int:
    """Bytes in use without the reclaimable page cache (what `docker stats` shows; cgroup v1 and v2)."""
    mem = stats.get("memory_stats") or {}
    if "usage" not in mem:
        raise ValueError("the engine reports no memory usage for this container")
    detail = mem.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", detail.get("cache", 0)))
    return int(mem["usage"] - cache)


@faults.register("memory-squeeze")
class MemorySqueeze(Fault):
    summary = "lower the target's memory limit to its usage plus a headroom (no swap); undo: restore the limits"
    Options = MemoryOptions

    def capture(self, container: Any) -> dict[str, Any]:
        host = container.attrs["HostConfig"]
        return {"Memory": int(host.get("Memory") or 0), "MemorySwap": int(host.get("MemorySwap") or 0),
                "RestartCount": int(container.attrs.get("RestartCount") or 0)}

    def apply(self, container: Any) -> dict[str, Any]:
        state = self.capture(container)
        if not state["Memory"]:
            raise ValueError(f"{container.name} has no memory limit: the engine could not take a lowered one back")
        used = memory_in_use(container.stats(stream=False, one_shot=True))
        limit = max(MIN_MEMORY, used + int(self.options.headroom_mib * MIB))
        if limit >= state["Memory"]:
            raise ValueError(f"{container.name} uses {used / MIB:.0f} MiB: usage + headroom "
                             f"({limit / MIB:.0f} MiB) is not below its limit ({state['Memory'] / MIB:.0f} MiB)")
        update_resources(self.ctx.docker, container, {"Memory": limit, "MemorySwap": limit})
        return {**state, "used_mib": round(used / MIB, 1), "limit_mib": round(limit / MIB, 1)}

    def revert(self, container: Any, state: dict[str, Any]) -> dict[str, Any]:
        swap = state["MemorySwap"] if state["MemorySwap"] else -1  # -1: no swap limit
        update_resources(self.ctx.docker, container, {"Memory": state["Memory"], "MemorySwap": swap})
        container.reload()
        return {"Memory": container.attrs["HostConfig"].get("Memory"),
                "MemorySwap": container.attrs["HostConfig"].get("MemorySwap"),
                "oom_killed": bool(container.attrs["State"].get("OOMKilled")),
                "restarts_during_fault": int(container.attrs.get("RestartCount") or 0) - state["RestartCount"]}


__all__ = ["CpuThrottle", "Kill", "MemorySqueeze", "Partition", "Pause", "Restart", "compose_networks",
           "memory_in_use", "update_resources"]
