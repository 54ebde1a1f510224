"""Stack parameters, validated once and up front: a bad value stops here, before anything changes."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab.common import world
from lab.common.validation import problems
from lab.errors import InputError, field_error
from lab.stack.topology import services

MIB = 1024 * 1024
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNIT = {"b": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}
MAX_NODES = 9  # Docker-in-Docker nodes on one machine: each holds a copy of the images (about 1.5 GB)


class ParamsError(InputError):
    """A parameter a user gave is wrong; the message names the field and what is allowed."""


def parse_memory(text: str | int) -> int:
    """'1536M', '1.5G', '512MiB' or bytes -> bytes (compose's binary units)."""
    if isinstance(text, int):
        return text
    match = _MEMORY.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a memory size; use e.g. 512M, 1536M or 2G")
    number, unit = match.groups()
    return int(float(number) * _UNIT[(unit or "b")[0].lower()])


def format_memory(size: int) -> str:
    return f"{size // MIB}M"


def minimum_memory(service: str, web_workers: int, worker_concurrency: int) -> int:
    """What pretix needs to start and serve (measured: ~280 MB per gunicorn worker, ~250 MB per celery)."""
    if service.startswith("pretix-web"):
        return (128 + 256 * web_workers) * MIB
    if service.startswith("pretix-worker"):
        return (256 + 64 * worker_concurrency) * MIB
    if service.startswith("pretix-"):
        return 320 * MIB
    if service.startswith("postgres"):
        return 128 * MIB
    if service.startswith("redis-sentinel"):
        return 16 * MIB
    if service.startswith("redis"):
        return 64 * MIB
    return 32 * MIB


class ServiceLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpus: float | None = Field(default=None, gt=0)
    memory: str | None = None

    @field_validator("memory")
    @classmethod
    def _memory_is_a_size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_memory(value)
        return value


class StackParams(BaseModel):
    """Everything `lab up` can be told. Defaults are the seed's plan (about 8 GB in all)."""

    model_config = ConfigDict(extra="forbid")

    # the defaults of the ports and subnets are the world's (PRETIX_LAB_HTTPS_PORT ..., lab/common/world.py)
    https_port: int = Field(default_factory=world.https_port, ge=world.PORT_MIN, le=world.PORT_MAX)
    http_port: int = Field(default_factory=world.http_port, ge=world.PORT_MIN, le=world.PORT_MAX)
    web_workers: int = Field(default=2, ge=1, le=16, description="gunicorn workers per web instance")
    worker_concurrency: int = Field(default=2, ge=1, le=16, description="celery processes per worker")
    replication: Literal["async", "sync"] = "async"
    edge_subnet: str = Field(default_factory=world.edge_subnet)
    backend_subnet: str = Field(default_factory=world.backend_subnet, description=(
        "the internal backend network; redis and its sentinels have fixed addresses in its lower half, "
        "docker hands out the upper half"))
    redis_down_after_ms: int = Field(default=1500, ge=200, le=60000, description=(
        "milliseconds without an answer before a sentinel calls the redis master down (failover starts then)"))
    redis_reads: Literal["primary", "replica"] = Field(default="primary", description=(
        "where pretix reads its cache and sessions: primary (read-your-writes), or replica (pretix's own sentinel "
        "set-up: a request right after a write can read the session from before it, and bounce a buyer back a "
        "checkout step)"))
    # pretix tuning without patching pretix (lab/stack/tuning.py turns them into the pretix containers' env); the
    # defaults are the stock settings: the image's own command and pretix's own settings
    web_worker_class: Literal["sync", "gthread"] = Field(default="sync", description=(
        "gunicorn worker class: sync (one request per process) or gthread (threads per process)"))
    web_threads: int = Field(default=1, ge=1, le=16, description="gunicorn threads per worker (above 1: gthread only)")
    web_max_requests: int = Field(default=1200, ge=0, le=1_000_000, description=(
        "requests after which gunicorn restarts a worker (0: never); each restart loads pretix again"))
    web_access_log: bool = Field(default=True, description="gunicorn writes one access-log line per request")
    pretix_loglevel: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description=(
        "pretix.cfg [pretix] loglevel: pretix's and Django's log level (console and /data/logs/pretix.log)"))
    pretix_metrics: bool = Field(default=True, description=(
        "pretix's own Prometheus metrics (a redis write per request and task); the monitor samples them"))
    worker_loglevel: Literal["debug", "info", "warning", "error"] = Field(default="info", description=(
        "celery worker log level (info logs every task received and done)"))
    worker_prefetch_multiplier: int = Field(default=4, ge=1, le=64, description=(
        "celery tasks each worker process reserves ahead (celery's default 4)"))
    db_conn_health_checks: bool = Field(default=True, description=(
        "Django pings a persistent database connection before each request reuses it (pretix: on)"))
    db_conn_max_age: int = Field(default=120, ge=0, le=3600, description=(
        "seconds Django keeps a database connection (pretix: 120; 0: a new one per request)"))
    postgres_jit: bool = Field(default=True, description=(
        "PostgreSQL's JIT compilation for pretix's sessions (libpq PGOPTIONS; PostgreSQL's default on)"))
    python_optimize: bool = Field(default=False, description=(
        "PYTHONOPTIMIZE=1 in the pretix containers: asserts skipped (bytecode compiled at each start)"))
    python: Literal["3.11", "3.13"] = Field(default="3.11", description=(
        "the Python the pretix image runs: Debian's own python3 (PGO+LTO) of bookworm (3.11) or trixie (3.13); "
        "another than 3.11 builds its own pretix image (lab/stack/pybuild.py)"))
    pg_stat_statements: bool = Field(default=False, description=(
        "load pg_stat_statements into PostgreSQL at server start (`lab bench efficiency --profile` needs it); "
        "off by default, so studies do not pay for the bookkeeping"))
    # what HA and the lab add beside pretix (lab/stack/hacost.py turns them into the compose override); defaults:
    # measured cuts (docs/findings.md), compose.yaml's own health-check intervals
    health_interval: int | None = Field(default=None, ge=1, le=300, description=(
        "at least this many seconds between two of docker's health checks of any service (None: compose.yaml's own, "
        "3-30 s by service; a longer own interval stays); each check execs processes in the container, and `lab up` "
        "waits one interval at least per dependency level"))
    cron_interval: int = Field(default=300, ge=10, le=3600, description=(
        "seconds between two runs of pretix's periodic jobs (`runperiodic`) in the cron service; each run starts "
        "Django afresh (pretix's docs: anything between every minute and every hour)"))
    worker_gossip: bool = Field(default=False, description=(
        "celery workers' gossip, mingle and event heartbeats (celery's default: on; pretix uses none of them)"))
    limits: dict[str, ServiceLimits] = Field(default_factory=dict)
    engine: Literal["compose", "swarm"] = Field(default="compose", description=(
        "compose: every container on this machine's engine; swarm: a Docker Swarm of `nodes` simulated hosts "
        "(Docker-in-Docker containers the lab starts), the definition generated from stack/compose.yaml"))
    nodes: int = Field(default=3, ge=3, le=MAX_NODES, description=(
        "swarm nodes (engine swarm): at least 3, so that losing one keeps a sentinel quorum and a second instance "
        "of every module"))
    node_subnet: str = Field(default_factory=world.node_subnet, description=(
        "the bridge network the lab makes for the swarm nodes (engine swarm); nodes at .11 upwards"))

    @field_validator("python", mode="before")
    @classmethod
    def _python_as_text(cls, value: Any) -> Any:
        # YAML reads `python: 3.13` as a number
        return format(value, "g") if isinstance(value, float) else value

    @field_validator("edge_subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        return world.check_subnet(value, world.EDGE_LARGEST_PREFIX, world.DEFAULT_EDGE_SUBNET)

    @field_validator("backend_subnet")
    @classmethod
    def _backend_subnet(cls, value: str) -> str:
        return world.check_subnet(value, world.BACKEND_LARGEST_PREFIX, world.DEFAULT_BACKEND_SUBNET, world.BACKEND_WHY)

    @field_validator("node_subnet")
    @classmethod
    def _node_subnet(cls, value: str) -> str:
        return world.check_subnet(value, world.NODE_LARGEST_PREFIX, world.DEFAULT_NODE_SUBNET)

    @field_validator("limits")
    @classmethod
    def _known_services(cls, value: dict[str, ServiceLimits]) -> dict[str, ServiceLimits]:
        known = services()
        for name in value:
            if name not in known:
                raise ValueError(f"unknown service {name!r}; the services are: {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StackParams:
        if self.https_port == self.http_port:
            raise field_error("http_port", f"https_port and http_port must differ (both {self.http_port})")
        if ipaddress.ip_network(self.edge_subnet).overlaps(ipaddress.ip_network(self.backend_subnet)):
            raise field_error("backend_subnet", f"edge_subnet {self.edge_subnet} and backend_subnet "
                              f"{self.backend_subnet} overlap")
        for name in ("edge_subnet", "backend_subnet"):
            if self.engine == "swarm" and ipaddress.ip_network(self.node_subnet).overlaps(
                    ipaddress.ip_network(getattr(self, name))):
                raise field_error("node_subnet", f"node_subnet {self.node_subnet} and {name} "
                                  f"{getattr(self, name)} overlap")
        if self.web_threads > 1 and self.web_worker_class != "gthread":
            raise field_error("web_threads", f"{self.web_threads} threads need web_worker_class gthread "
                              f"(got {self.web_worker_class}); allowed: 1 with sync, 1-16 with gthread",
                              ("1 with sync", "1-16 with gthread"))
        cores = os.cpu_count() or 1
        for name, spec in services().items():
            limits = self.effective_limits(name)
            cpus, memory = limits.cpus, limits.memory
            if cpus is not None and cpus > cores:
                raise field_error(f"limits.{name}.cpus", f"{cpus} exceeds the {cores} cores of this machine",
                                  (f"<= {cores}",))
            if memory is not None:
                floor = minimum_memory(name, self.web_workers, self.worker_concurrency)
                if parse_memory(memory) < floor:
                    raise field_error(
                        f"limits.{name}.memory", f"{memory} is below what it needs "
                        f"({format_memory(floor)} with web_workers={self.web_workers}, "
                        f"worker_concurrency={self.worker_concurrency}); give at least {format_memory(floor)}",
                        (f">= {format_memory(floor)}",))
            del spec
        return self

    def effective_limits(self, service: str) -> ServiceLimits:
        """The parameter where one is given, else compose.yaml's default."""
        spec = services()[service]
        given = self.limits.get(service, ServiceLimits())
        return ServiceLimits(
            cpus=given.cpus if given.cpus is not None else spec.default_cpus,
            memory=given.memory if given.memory is not None else spec.default_memory,
        )

    def address(self, host: int) -> str:
        """A fixed address on the edge network (the proxy maps instances by address)."""
        return str(ipaddress.ip_network(self.edge_subnet)[host])

    def node_address(self, index: int) -> str:
        """The fixed address of swarm node `index` (1-based) on the node network."""
        return str(ipaddress.ip_network(self.node_subnet)[10 + index])

    def backend_address(self, host: int) -> str:
        """A fixed address on the backend network (redis and its sentinels: nothing resolves them by name)."""
        return str(ipaddress.ip_network(self.backend_subnet)[host])

    def backend_dynamic_range(self) -> str:
        """The upper half of the backend network: where docker puts containers without a fixed address."""
        return str(list(ipaddress.ip_network(self.backend_subnet).subnets(prefixlen_diff=1))[1])


def validate(raw: dict[str, Any]) -> StackParams:
    """Raw mapping -> StackParams, or ParamsError with one readable line per bad field."""
    try:
        return StackParams.model_validate(raw)
    except ValidationError as error:
        raise ParamsError("stack parameters", problems(error, StackParams)) from None


def load(path: Path | None, overrides: dict[str, Any] | None = None) -> StackParams:
    """Parameters from a YAML file (its `stack:` section, or the whole file), then overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        from lab.common import paramfile

        raw = paramfile.section(paramfile.read(path), "stack", StackParams.model_fields, whole_file=True)
    for key, value in (overrides or {}).items():
        if key == "limits":
            merged = dict(raw.get("limits") or {})
            for service, limit in value.items():
                merged[service] = {**(merged.get(service) or {}), **limit}
            raw["limits"] = merged
        elif value is not None:
            raw[key] = value
    return validate(raw)
