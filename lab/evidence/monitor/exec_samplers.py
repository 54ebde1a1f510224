"""Samplers fed by one long-lived exec'd script per service: nginx, redis, the sentinels, PostgreSQL.

Cheap by construction (the stack they measure has two cores): ONE `docker exec` per node for the whole run, whose
script loops and prints a sample per tick (bash builtins, no fork where it can be avoided); see scripts/.
"""

from __future__ import annotations

from collections.abc import Iterable

from lab.evidence.monitor.base import Emit, Sampler, StreamEnded, Target, samplers
from lab.evidence.monitor.execstream import feed_lines
from lab.evidence.monitor.names import POSTGRES_PREFIX, PROXY_SERVICE, REDIS_PREFIX, SENTINEL_PREFIX
from lab.evidence.monitor.parsers import (
    Blocks,
    MetricRow,
    PsqlRows,
    parse_redis_info,
    parse_redis_queues,
    parse_sentinel_block,
    parse_stub_status,
)
from lab.evidence.monitor.scripts import (
    NGINX_SCRIPT,
    POSTGRES_QUERY,
    POSTGRES_SCRIPT,
    REDIS_SCRIPT,
    SENTINEL_SCRIPT,
)


class ExecSampler(Sampler):
    """A sampler fed by one long-lived exec'd script per service (a subclass gives script, env and a parser)."""

    script = ""

    def exec_env(self) -> dict[str, str]:
        return {}

    def parse_block(self, lines: list[str]) -> Iterable[MetricRow]:
        raise NotImplementedError

    def reader(self, emit: Emit):
        return Blocks(self.parse_block, emit)

    def stream(self, target: Target, emit: Emit) -> None:
        c = self.running_container(target)
        ex = self.monitor.open_exec(c, self.script, self.interval, self.exec_env())
        target.closer, target.aborter = ex.close, ex.abort
        feed_lines(ex, self.reader(emit), self.stopping)


@samplers.register("nginx")
class NginxSampler(ExecSampler):
    """stub_status of the proxy, read by a bash loop inside its container (bash's /dev/tcp: no fork)."""

    script = NGINX_SCRIPT

    def targets(self) -> list[str]:
        return [s for s in self.monitor.services if s == PROXY_SERVICE]

    def parse_block(self, lines: list[str]) -> Iterable[MetricRow]:
        return parse_stub_status("\n".join(lines))


@samplers.register("redis")
class RedisSampler(ExecSampler):
    """Each data node (master and replica): INFO (role, replicas, link, offset, clients, memory, ops/s, hits/misses,
    redis' CPU, keys) and the celery queue lengths (broker db; a replica's copy of them)."""

    script = REDIS_SCRIPT

    def targets(self) -> list[str]:
        return [s for s in self.monitor.services if s.startswith(REDIS_PREFIX) and not s.startswith(SENTINEL_PREFIX)]

    def parse_block(self, lines: list[str]) -> Iterable[MetricRow]:
        lines = [x.rstrip("\r") for x in lines]
        if "#Q" not in lines:
            raise StreamEnded("redis-cli: " + " ".join(lines)[:200])
        cut = lines.index("#Q")
        return parse_redis_info("\n".join(lines[:cut])) + parse_redis_queues(x for x in lines[cut + 1:] if x)


@samplers.register("sentinel")
class SentinelSampler(ExecSampler):
    """Each redis sentinel: which address it names as master (and whether that is the declared one), whether it
    sees the master down, how many replicas and other sentinels it knows."""

    script = SENTINEL_SCRIPT

    def targets(self) -> list[str]:
        return [s for s in self.monitor.services if s.startswith(SENTINEL_PREFIX)]

    def parse_block(self, lines: list[str]) -> Iterable[MetricRow]:
        return parse_sentinel_block([x.rstrip("\r") for x in lines])


@samplers.register("postgres")
class PostgresSampler(ExecSampler):
    """Per node: transactions, connections by state, lock waits, deadlocks, replication (primary: state and
    lag of each standby; standby: replay delay and backlog), in-recovery flag. One psql per node repeats the
    query with \\watch."""

    script = POSTGRES_SCRIPT

    def targets(self) -> list[str]:
        return [s for s in self.monitor.services if s.startswith(POSTGRES_PREFIX)]

    def exec_env(self) -> dict[str, str]:
        return {"LAB_QUERY": POSTGRES_QUERY}

    def reader(self, emit: Emit):
        return PsqlRows(emit)


__all__ = ["ExecSampler", "NginxSampler", "PostgresSampler", "RedisSampler", "SentinelSampler"]
