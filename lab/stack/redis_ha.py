"""redis with a replica and three sentinels: the fixed addresses, and how pretix and celery are told about them.

pretix (django-redis) and celery (kombu's `sentinel://` transport and celery's sentinel result backend) ask the
sentinels who the master is, and ask again when a connection to it breaks: killing the master fails over without a
redeploy. Everything is addressed by IP: docker 20.10's embedded DNS stalls for seconds when it resolves the name
of a stopped container, which stretched every failover (the sentinels and clients kept asking for the dead master).

Read by pretix/settings.py (2026.8): [redis] location + sentinels (JSON list of [host, port]) selects django-redis'
SentinelClient; the location's host is the sentinel master name. [celery] broker/backend `sentinel://...;...` with
broker/backend_transport_options {"master_name": ...}. pretix sets celery priorities only for `redis://` broker
URLs, so with sentinels every task runs at the same priority (a documented cost).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

MASTER_NAME = "lab-redis"
REDIS_PORT = 6379
SENTINEL_PORT = 26379
SOCKET_TIMEOUT = 2.0  # seconds a redis client waits for an answer before it asks the sentinels again
CONNECT_TIMEOUT = 1.0

# host numbers on the backend network (its lower half; docker hands out the upper half)
PRIMARY_HOST = 21
REPLICA_HOST = 22
SENTINEL_HOSTS = (31, 32, 33)

# the compose services, in the order of the hosts above
PRIMARY_SERVICE = "redis"
REPLICA_SERVICE = "redis-replica"
SENTINEL_SERVICES = tuple(f"redis-sentinel-{i}" for i in range(1, len(SENTINEL_HOSTS) + 1))

DB_CACHE, DB_BROKER, DB_RESULTS = 0, 1, 2


@dataclass(frozen=True)
class RedisTopology:
    """Where the redis nodes and sentinels live (fixed addresses) and how fast a sentinel calls the master down."""

    primary: str
    replica: str
    sentinels: tuple[str, ...]
    down_after_ms: int = 1500
    reads: str = "primary"  # where pretix reads its cache and sessions: "primary" or "replica" (pretix's own)

    @classmethod
    def of(cls, params) -> RedisTopology:
        """From StackParams (backend_subnet, redis_down_after_ms, redis_reads)."""
        return cls(primary=params.backend_address(PRIMARY_HOST), replica=params.backend_address(REPLICA_HOST),
                   sentinels=tuple(params.backend_address(h) for h in SENTINEL_HOSTS),
                   down_after_ms=params.redis_down_after_ms, reads=params.redis_reads)

    def sentinel_list(self) -> str:
        """"ip:port ip:port ..." (what a restarting data node asks before it decides whom to follow)."""
        return " ".join(f"{a}:{SENTINEL_PORT}" for a in self.sentinels)

    def compose_env(self) -> dict[str, str]:
        """The LAB_* variables stack/compose.yaml reads for the redis side (no secrets)."""
        env = {"LAB_REDIS_ADDR": self.primary, "LAB_REDIS_REPLICA_ADDR": self.replica,
               "LAB_REDIS_SENTINELS": self.sentinel_list(), "LAB_REDIS_DOWN_AFTER_MS": str(self.down_after_ms)}
        for i, address in enumerate(self.sentinels, start=1):
            env[f"LAB_REDIS_SENTINEL_{i}_ADDR"] = address
        return env

    def pretix_env(self, password: str) -> dict[str, str]:
        """pretix's [redis] and [celery] settings as PRETIX_* variables (these carry the password)."""
        secret = quote(password, safe="")
        # the broker's socket timeouts: a dead master's address leaves half-open sockets (no RST) that would block
        # a publish for good; the result backend's come from pretix_lab_settings.py (PRETIX_LAB_REDIS_TIMEOUT)
        broker_options = json.dumps({"master_name": MASTER_NAME, "socket_timeout": SOCKET_TIMEOUT,
                                     "socket_connect_timeout": CONNECT_TIMEOUT, "socket_keepalive": True})
        backend_options = json.dumps({"master_name": MASTER_NAME})

        def via_sentinels(db: int) -> str:
            return ";".join(f"sentinel://:{secret}@{a}:{SENTINEL_PORT}/{db}" for a in self.sentinels)

        return {
            "PRETIX_REDIS_LOCATION": f"redis://:{secret}@{MASTER_NAME}/{DB_CACHE}",
            "PRETIX_REDIS_SENTINELS": json.dumps([[a, SENTINEL_PORT] for a in self.sentinels]),
            "PRETIX_REDIS_SESSIONS": "true",
            "PRETIX_CELERY_BROKER": via_sentinels(DB_BROKER),
            "PRETIX_CELERY_BACKEND": via_sentinels(DB_RESULTS),
            "PRETIX_CELERY_BROKER_TRANSPORT_OPTIONS": broker_options,
            "PRETIX_CELERY_BACKEND_TRANSPORT_OPTIONS": backend_options,
            "PRETIX_LAB_REDIS_TIMEOUT": str(SOCKET_TIMEOUT),
            "PRETIX_LAB_REDIS_READS": self.reads,
        }


def default_topology() -> RedisTopology:
    from lab.stack.params import StackParams

    return RedisTopology.of(StackParams())


def parse_master_addr(reply: str) -> str | None:
    """`redis-cli --raw SENTINEL get-master-addr-by-name` output ("ip\\nport") -> "ip" (None: no master known)."""
    lines = [x.strip() for x in reply.strip().splitlines() if x.strip()]
    if len(lines) != 2 or not lines[1].isdigit():
        return None
    return lines[0]


__all__ = ["DB_BROKER", "DB_CACHE", "DB_RESULTS", "MASTER_NAME", "PRIMARY_SERVICE", "REPLICA_SERVICE",
           "SENTINEL_PORT", "SENTINEL_SERVICES", "RedisTopology", "default_topology", "parse_master_addr"]
