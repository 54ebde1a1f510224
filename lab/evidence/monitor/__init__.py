"""The stack over time: samplers write what every service does into `run_dir/metrics.parquet` as it happens.

One job per module:
    writer.py          metrics.parquet: its schema, the part-file writer, read_metrics()
    parsers.py         text and JSON a sampler reads -> (metric, labels, value) rows (pure functions)
    base.py            the sampler template (one thread per service, restart, error rows) and its registry
    docker_sampler.py  per container CPU, memory, network (docker SDK, public API)
    exec_samplers.py   nginx, redis, sentinels, PostgreSQL: one long-lived exec'd script per node
    pretix_sampler.py  pretix's Prometheus /metrics of each web instance
    execstream.py      one long-lived `docker exec`, read line by line, stopped by closing its stdin
    scripts.py         the scripts those execs run (scripts/*.sh, scripts/postgres.sql, shipped as package data)
    monitor.py         the Monitor: starts, flushes, watches and stops them, and counts its own cost
    names.py           the services and queues the samplers look at

Cheap by construction (the stack it measures has two cores): docker stats by one small request per container and
tick, PostgreSQL, redis and nginx from ONE long-lived `docker exec` per node whose script loops and prints a
sample a tick, and pretix's /metrics from a plain HTTP GET to each web instance (every 5 s by default). The
monitor's own CPU and that of its exec'd loops are recorded as rows of service `monitor`.

This package re-exports what callers use; new code imports from the module that owns a name.
"""

from __future__ import annotations

from lab.evidence.monitor.base import (
    Emit,
    Sampler,
    SamplerRegistry,
    StreamEnded,
    Target,
    UnknownSamplerError,
    samplers,
)
from lab.evidence.monitor.docker_sampler import DockerSampler
from lab.evidence.monitor.exec_samplers import (
    ExecSampler,
    NginxSampler,
    PostgresSampler,
    RedisSampler,
    SentinelSampler,
)
from lab.evidence.monitor.execstream import ExecStream
from lab.evidence.monitor.monitor import DEFAULT_SAMPLERS, SAMPLER_ERROR, Monitor
from lab.evidence.monitor.names import CELERY_PRIORITY_SUFFIXES, CELERY_QUEUES, MONITOR_SERVICE
from lab.evidence.monitor.parsers import (
    docker_stats_rows,
    parse_prometheus,
    parse_psql_row,
    parse_redis_info,
    parse_redis_queues,
    parse_sentinel_block,
    parse_stub_status,
    pretix_subset,
)
from lab.evidence.monitor.pretix_sampler import PretixSampler
from lab.evidence.monitor.writer import METRIC_SCHEMA, METRICS, MetricWriter, read_metrics
from lab.evidence.secretscan import Scrubber

__all__ = [
    "CELERY_PRIORITY_SUFFIXES", "CELERY_QUEUES", "DEFAULT_SAMPLERS", "DockerSampler", "Emit", "ExecSampler",
    "ExecStream", "METRICS", "METRIC_SCHEMA", "MONITOR_SERVICE", "MetricWriter", "Monitor", "NginxSampler",
    "PostgresSampler", "PretixSampler", "RedisSampler", "SAMPLER_ERROR", "Sampler", "SamplerRegistry", "Scrubber",
    "SentinelSampler", "StreamEnded", "Target", "UnknownSamplerError", "docker_stats_rows", "parse_prometheus",
    "parse_psql_row", "parse_redis_info", "parse_redis_queues", "parse_sentinel_block", "parse_stub_status",
    "pretix_subset", "read_metrics", "samplers",
]
