"""redis-failover: kill the redis master; the sentinels promote the replica; the undo rejoins and fails back.

Inject (each step one row in faults.parquet):
  check     the sentinels name the target as the master, and the other data node is a replica with its link up
            (its replication lag in bytes is recorded)
  kill      restart policy "no" first (docker must not bring the old master back as an empty master), SIGKILL
  promote   poll the sentinels (docker exec redis-cli in one, every 0.1 s) until they name the replica:
            `promoted_after_seconds` counts from the kill
  pretix    poll pretix's own /healthcheck/ (the web health check inside pretix-web-1: it asks the database,
            redis and the cache) until it answers 200 again: `healthy_after_seconds` counts from the kill

Undo:
  rejoin    restore the restart policy and start the old master; its entrypoint asks the sentinels who the master
            is and starts as a replica of it; wait until its link is up
  failback  (option, default on; when the killed node was the declared master `redis`) switch back so the stack
            ends as declared: wait until the sentinels list the
            rejoined node as a good replica, pause writes on the current master (CLIENT PAUSE WRITE: nothing
            written after this is lost), wait until the replica has everything, `SENTINEL FAILOVER`, wait until
            the sentinels name the old master again, make the other node its replica (REPLICAOF: a sentinel would
            do it only after failover-timeout, taking writes meanwhile), unpause, wait until it follows.
Replication is asynchronous: a kill may lose writes the replica had not received (cache entries, sessions, celery
messages). pretix's orders live in PostgreSQL: what the lab counts as lost is measured there, by the audit.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lab.faults.catalogue import faults, image_role, long_running_specs
from lab.faults.failover import PrimaryFailover, wait_for
from lab.stack.redis_ha import (
    MASTER_NAME,
    PRIMARY_SERVICE,
    REDIS_PORT,
    SENTINEL_PORT,
    SENTINEL_SERVICES,
    parse_master_addr,
)

WEB_SERVICE = "pretix-web-1"
PAUSE_MS = 10_000  # longest write pause of the failback (it is lifted as soon as the switch is done)
ERROR_REPLIES = ("ERR", "NOGOODSLAVE", "INPROG", "NOAUTH", "WRONGPASS", "READONLY", "LOADING", "Could not connect")

# redis-cli with the container's own password (REDISCLI_AUTH from its environment, never argv)
AUTH_CLI = 'export REDISCLI_AUTH="$REDIS_PASSWORD"; exec redis-cli -h 127.0.0.1 -p 6379 --raw "$@"'


class RedisFailoverOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    failback: bool = Field(default=True, description="the undo also switches the roles back (the stack ends as "
                                                      "declared); false: the old master stays a replica")
    timeout: float = Field(default=60, ge=10, le=600, description="seconds each wait may take")


def parse_info(text: str) -> dict[str, str]:
    """redis INFO text -> {field: value} (sections and comments dropped)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and not key.startswith("#"):
            out[key] = value
    return out


def parse_sentinel_replicas(text: str) -> list[dict[str, str]]:
    """`redis-cli --raw SENTINEL replicas NAME` output (flat name/value lines, one block per replica) -> dicts."""
    lines = [x.strip() for x in text.strip().splitlines()]
    replicas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for name, value in zip(lines[0::2], lines[1::2], strict=False):
        if name == "name" and current:
            replicas.append(current)
            current = {}
        current[name] = value
    if current:
        replicas.append(current)
    return replicas


def follows(info: dict[str, str], master: str | None = None) -> bool:
    """A replica with its link up (to `master`'s address when given), from parse_info's fields."""
    return (info.get("role") == "slave" and info.get("master_link_status") == "up"
            and (master is None or info.get("master_host") == master))


def is_good_replica(entry: dict[str, str], address: str) -> bool:
    """What SENTINEL FAILOVER needs of a replica: known, reachable, linked to its master."""
    flags = set(entry.get("flags", "").split(","))
    return (entry.get("ip") == address and flags == {"slave"} and entry.get("master-link-status") == "ok")


def data_nodes(topology=None) -> list[str]:
    """The redis services that hold data (the sentinels run the same image, named redis-sentinel-N)."""
    return [name for name, spec in long_running_specs(topology).items()
            if image_role(spec) == "redis" and not name.startswith("redis-sentinel")]


@faults.register("redis-failover")
class RedisFailover(PrimaryFailover):
    summary = ("kill the redis master, the sentinels promote the replica; undo: the old master rejoins as a replica, "
               "then (failback) the roles switch back")
    Options = RedisFailoverOptions

    @classmethod
    def allowed_targets(cls, topology=None) -> list[str]:
        return data_nodes(topology)

    node_kind = "redis data node"

    # -- docker exec helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _exec(container: Any, args: list[str]) -> str:
        result = container.exec_run(args)
        text = (result.output or b"").decode(errors="replace")
        if result.exit_code != 0 or text.lstrip().startswith(ERROR_REPLIES):
            raise RuntimeError(f"{' '.join(args[-3:])} in {container.name} (exit {result.exit_code}): {text[-300:]}")
        return text

    def redis_cli(self, node: Any, *args: str) -> str:
        return self._exec(node, ["bash", "-c", AUTH_CLI, "redis-cli", *args])

    def _ask_sentinel(self, service: str, *args: str) -> str:
        from lab.stack.containers import container

        node = container(self.ctx.docker, service)
        return self._exec(node, ["redis-cli", "-h", "127.0.0.1", "-p", str(SENTINEL_PORT), "--raw", *args])

    def sentinel_cli(self, *args: str) -> str:
        """Ask the first sentinel that answers."""
        errors = []
        for service in SENTINEL_SERVICES:
            try:
                return self._ask_sentinel(service, *args)
            except Exception as error:  # noqa: BLE001 - try the next sentinel
                errors.append(f"{service}: {error}")
        raise RuntimeError("no sentinel answered: " + "; ".join(errors))

    def master_addr(self) -> str | None:
        return parse_master_addr(self.sentinel_cli("sentinel", "get-master-addr-by-name", MASTER_NAME))

    def masters_named(self) -> dict[str, str | None]:
        """Whom each sentinel names as the master (None: it did not answer). A client asks whichever sentinel
        answered it last, so the roles have switched for every client only once all of them agree."""
        named: dict[str, str | None] = {}
        for service in SENTINEL_SERVICES:
            try:
                named[service] = parse_master_addr(self._ask_sentinel(service, "sentinel", "get-master-addr-by-name",
                                                                      MASTER_NAME))
            except Exception:  # noqa: BLE001 - a sentinel that does not answer names nobody
                named[service] = None
        return named

    def replication(self, node: Any) -> dict[str, str]:
        return parse_info(self.redis_cli(node, "info", "replication"))

    @staticmethod
    def address(node: Any) -> str:
        node.reload()
        for endpoint in (node.attrs["NetworkSettings"]["Networks"] or {}).values():
            fixed = (endpoint.get("IPAMConfig") or {}).get("IPv4Address")
            if fixed:
                return fixed
        raise LookupError(f"{node.name} has no fixed address (the redis nodes are addressed by IP)")

    def _nodes(self) -> tuple[Any, Any]:
        from lab.stack.containers import container

        return container(self.ctx.docker, self.instance.target), container(self.ctx.docker, self._other_service())

    def _web_healthy(self) -> bool:
        from lab.stack.containers import container

        return container(self.ctx.docker, WEB_SERVICE).exec_run(["pretix-lab-health", "web"]).exit_code == 0

    # -- inject -------------------------------------------------------------------------------------------------
    def inject(self) -> None:
        with self._lock:
            nodes = self._start_inject(self._nodes)
            if nodes is None:
                return
            old, new = nodes
            st = self.state
            timeout = self.options.timeout

            def check() -> dict[str, Any]:
                st["old_addr"], st["new_addr"] = self.address(old), self.address(new)
                master = self.master_addr()
                if master != st["old_addr"]:
                    raise ValueError(f"the sentinels name {master} as the master, not {old.name} "
                                     f"({st['old_addr']}); target the current master")
                info = self.replication(new)
                if not follows(info):
                    raise ValueError(f"{new.name} is not a replica with its link up: role={info.get('role')} "
                                     f"link={info.get('master_link_status')}")
                master_offset = int(self.replication(old).get("master_repl_offset", 0))
                return {"master": master, "replica_lag_bytes": master_offset - int(info.get("slave_repl_offset", 0))}

            self._step("inject", "check", old, check)

            self._step("inject", "kill", old, lambda: self._kill(old))

            def promote() -> dict[str, Any]:
                wait_for(lambda: self.master_addr() == st["new_addr"], timeout,
                      f"the sentinels to promote {new.name}", pause=0.1)
                st["promoted"] = True
                return {"promoted_after_seconds": round(time.monotonic() - st["killed_at"], 2),
                        "master": st["new_addr"]}

            self._step("inject", "promote", new, promote)

            def pretix() -> dict[str, Any]:
                wait_for(self._web_healthy, timeout, "pretix's /healthcheck/ to answer 200", pause=0.2)
                return {"healthy_after_seconds": round(time.monotonic() - st["killed_at"], 2)}

            self._step("inject", "pretix", new, pretix)

    # -- undo ---------------------------------------------------------------------------------------------------
    def _bring_back(self, old: Any, new: Any, timeout: float, reason: str) -> None:
        self._step("undo", "rejoin", old, lambda: self._rejoin(old, timeout), reason=reason)
        # failback: the declared master (`redis`) ends as the master; when the killed node was the replica
        # acting as master (after an earlier hang), the promotion already restored that
        if (self.options.failback and self.instance.target == PRIMARY_SERVICE
                and self.master_addr() == self.state["new_addr"]):
            self._step("undo", "failback", old, lambda: self._failback(old, new, timeout), reason=reason)

    def _rejoin(self, old: Any, timeout: float) -> dict[str, Any]:
        """Start the old master; its entrypoint asks the sentinels and follows the promoted node."""
        st = self.state
        began = time.monotonic()
        old.update(restart_policy=st["policy"])
        old.reload()
        if old.status != "running":
            old.start()
        master = self.master_addr()
        if master == st["old_addr"]:  # never promoted: it is the master again (empty: no persistence)
            wait_for(lambda: self.replication(old).get("role") == "master", timeout, f"{old.name} to answer", pause=0.2)
            return {"role": "master", "seconds": round(time.monotonic() - began, 2)}
        wait_for(lambda: follows(self.replication(old), master), timeout, f"{old.name} to replicate from {master}",
                 pause=0.2)
        return {"role": "replica", "master": master, "seconds": round(time.monotonic() - began, 2)}

    def _failback(self, old: Any, new: Any, timeout: float) -> dict[str, Any]:
        """Controlled switch back: writes paused on the current master until the rejoined node has everything."""
        st = self.state
        began = time.monotonic()
        wait_for(lambda: any(is_good_replica(r, st["old_addr"]) for r in parse_sentinel_replicas(
            self.sentinel_cli("sentinel", "replicas", MASTER_NAME))), timeout,
            f"the sentinels to list {old.name} as a good replica", pause=0.5)
        paused_at = time.monotonic()
        self.redis_cli(new, "client", "pause", str(PAUSE_MS), "WRITE")
        try:
            target = int(self.replication(new)["master_repl_offset"])
            wait_for(lambda: int(self.replication(old).get("slave_repl_offset", -1)) >= target, PAUSE_MS / 1000 / 2,
                  f"{old.name} to reach offset {target}", pause=0.05)
            self.sentinel_cli("sentinel", "failover", MASTER_NAME)
            wait_for(lambda: self.master_addr() == st["old_addr"], timeout, f"the sentinels to name {old.name}",
                  pause=0.1)
            # a sentinel turns a live demoted master into a replica only after failover-timeout: until then it
            # would take writes from clients still connected to it. Demote it now, while its writes are paused.
            self.redis_cli(new, "replicaof", st["old_addr"], str(REDIS_PORT))
            switched = time.monotonic() - paused_at
        finally:
            try:
                self.redis_cli(new, "client", "unpause")
            except Exception:  # noqa: BLE001 - the pause ends by itself after PAUSE_MS
                pass
        wait_for(lambda: follows(self.replication(new), st["old_addr"]), timeout,
                 f"{new.name} to replicate from {old.name}", pause=0.2)
        # the other sentinels learn of the switch from the one that made it a second or two later; until they do,
        # a client that asks one of them reconnects to the demoted node and its writes fail (READONLY)
        wait_for(lambda: set(self.masters_named().values()) == {st["old_addr"]}, timeout,
                 f"every sentinel to name {old.name}", pause=0.1)
        return {"synced_offset": target, "write_pause_seconds": round(switched, 2),
                "sentinels_agree_after_seconds": round(time.monotonic() - paused_at, 2),
                "seconds": round(time.monotonic() - began, 2)}

    def health_services(self) -> list[str]:
        return [*self.allowed_targets(self.ctx.topology), *SENTINEL_SERVICES]


__all__ = ["RedisFailover", "RedisFailoverOptions", "data_nodes", "is_good_replica", "parse_info",
           "parse_sentinel_replicas"]
