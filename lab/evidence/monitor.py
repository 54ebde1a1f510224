"""The stack over time: samplers write what every service does into `run_dir/metrics.parquet` as it happens.

Long format, one row per (time, service, container, metric, labels) value; `time` is epoch seconds on the same
clock as the request records (time.time(); containers share the host's clock, so a timestamp taken inside a
container by a sampler script is on it too). Counters are stored as counters (rates are derived in analysis).

Samplers live in a small registry (papermill-style): the built-ins register exactly like a plugin would
(`samplers.register("name", SamplerClass)`, or the entry point group `pretix_lab.samplers`), and an unknown name
fails with "No sampler named 'x'; known: ...". A template-method base class (`Sampler`) does the bookkeeping for
every target (one thread per service): start the stream, turn a failure into a `sampler_error` row, wait and
restart it once the container is back, count its own CPU; a subclass implements `stream()`.

Cheap by construction (the stack it measures has two cores): docker stats come from ONE streaming request per
container (the engine pushes a sample a second), PostgreSQL, redis and nginx from ONE long-lived `docker exec`
per node whose script loops and prints a sample a second (bash builtins, no fork where it can be avoided), and
pretix's /metrics from a plain HTTP GET to each web instance's edge address (every 5 s by default: see Monitor).
The monitor's own CPU (its threads) and the CPU of the exec'd loops inside the containers are recorded as rows of
service `monitor`. Measured here over 60 s at 1 Hz (9 containers, ~180 rows/s): the monitor's threads 1.0 % of
one core, the exec'd loops 0.5 %, the docker engine +4.5 % (its stats streams: the largest share), pretix's
/metrics about 1.6 % (two instances every 5 s, ~40 ms of gunicorn + PostgreSQL CPU per scrape).

Stopping: every exec'd script reads its stdin and ends at EOF; stop() half-closes each exec connection, so the
loop (and the psql it started) ends inside the container, then joins every thread. The scripts are also bounded
by a maximum duration, so nothing outlives a crashed monitor for long (a dropped connection is an EOF too).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from docker.types.daemon import CancellableStream
from docker.utils.socket import frames_iter

from lab.common.registry import Registry
from lab.errors import LabError, UnknownNameError
from lab.stack.containers import project_containers
from lab.stack.topology import PROJECT, long_running

log = logging.getLogger(__name__)

METRICS = "metrics.parquet"
METRIC_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("time", pa.float64()), ("service", pa.string()), ("container", pa.string()),
    ("metric", pa.string()), ("value", pa.float64()), ("labels", pa.string()),
])
SAMPLER_ERROR = "sampler_error"
MONITOR_SERVICE = "monitor"

# Which services a sampler looks at: named by role here, checked against stack/compose.yaml (the one topology).
WEB_PREFIX = "pretix-web-"
POSTGRES_PREFIX = "postgres-"
REDIS_PREFIX = "redis"  # the data nodes: redis (the declared master) and redis-replica
SENTINEL_PREFIX = "redis-sentinel-"
PROXY_SERVICE = "proxy"
PRETIX_HOST = "127.0.0.1:8443"  # fallback; the real value is the host of PRETIX_PRETIX_URL in the container
CELERY_QUEUES = ("default", "checkout", "mail", "background", "notifications")  # pretix/settings.py
CELERY_PRIORITY_SUFFIXES = ("", ":4", ":8")  # kombu redis priority_steps [0, 4, 8] with sep ":" (pretix)

Emit = Callable[..., None]


class UnknownSamplerError(UnknownNameError):
    """No sampler of that name is registered."""


class StreamEnded(LabError, RuntimeError):
    """A sampler's stream ended while the monitor still runs (container stopped, exec ended)."""


# ------------------------------------------------------------------------------------------------------ registry


# --------------------------------------------------------------------------------------------------- the writer
class _MetricWriter:
    """Rows in memory, flushed as complete Parquet part files (see lab/load/recorder.py for why part files)."""

    def __init__(self, path: Path, run_id: str):
        self.path = path
        self.run_id = run_id
        self.rows_written = 0
        self.parts_written = 0
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"{path} already holds data; a run folder is written once")
        path.mkdir(parents=True, exist_ok=True)

    def add(self, row: tuple) -> None:
        with self._lock:
            self._rows.append(row)

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            if not rows:
                return
            t, service, container, metric, value, labels = (list(c) for c in zip(*rows, strict=True))
            table = pa.Table.from_arrays([
                pa.array([self.run_id] * len(rows), pa.string()), pa.array(t, pa.float64()),
                pa.array(service, pa.string()), pa.array(container, pa.string()), pa.array(metric, pa.string()),
                pa.array(value, pa.float64(), from_pandas=True), pa.array(labels, pa.string()),
            ], schema=METRIC_SCHEMA)
            final = self.path / f"part-{self.parts_written:06d}.parquet"
            temporary = self.path / f".{final.name}.tmp"
            pq.write_table(table, temporary, compression="zstd")
            os.replace(temporary, final)  # a part exists complete or not at all
            self.parts_written += 1
            self.rows_written += len(rows)


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """Every metric row of a run (whatever was flushed, even when the run was interrupted)."""
    path = Path(run_dir) / METRICS
    parts = sorted(path.glob("part-*.parquet")) if path.is_dir() else []
    if not parts:
        return METRIC_SCHEMA.empty_table().to_pandas()
    return pq.read_table(parts, schema=METRIC_SCHEMA).to_pandas()


# ---------------------------------------------------------------------------------------------------- scrubbing
class Scrubber:
    """Replace every known secret value by *** (longest first, so a secret inside another is not half-left)."""

    def __init__(self, values: Iterable[str]):
        found = sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in found)) if found else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub("***", text) if self._pattern is not None else text


def default_scrubber() -> Scrubber:
    from lab.stack.secrets import secret_values
    try:
        return Scrubber(secret_values())
    except (OSError, ValueError):
        return Scrubber([])


# ------------------------------------------------------------------------------------------------------ parsers
def _label_text(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in pairs)


_PROM_LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_PROM_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> Iterator[tuple[str, str, float]]:
    """(metric, labels "k=v,k=v" sorted by key, value) for each sample line of Prometheus text."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _PROM_LINE.match(line)
        if not m:
            continue
        name, labels, raw = m.groups()
        try:
            value = float(raw)
        except ValueError:
            continue
        pairs = sorted(_PROM_LABEL.findall(labels or ""))
        yield name, _label_text(pairs), value


# pretix's /metrics (pretix/base/metrics.py): everything but histogram buckets of these, and the model counts of
# the objects a purchase makes (the others are pg_class estimates of ~200 tables, of little use here).
PRETIX_KEEP_PREFIXES = (
    "pretix_view_duration_seconds_count", "pretix_view_duration_seconds_sum", "pretix_view_requests_total",
    "pretix_task_runs_total", "pretix_task_duration_seconds_count", "pretix_task_duration_seconds_sum",
    "pretix_celery_tasks_queued_count", "pretix_celery_tasks_queued_age_seconds",
    "pretix_logins_successful", "pretix_logins_failed",
)
PRETIX_KEEP_MODELS = frozenset({"pretixbase.order", "pretixbase.orderposition", "pretixbase.cartposition",
                                "pretixbase.customer", "pretixbase.invoice"})


def pretix_subset(samples: Iterable[tuple[str, str, float]], buckets: bool = False
                  ) -> Iterator[tuple[str, str, float]]:
    for name, labels, value in samples:
        if name == "pretix_model_instances":
            if labels.removeprefix("model=").lower() in PRETIX_KEEP_MODELS:
                yield name, labels, value
        elif name.startswith(PRETIX_KEEP_PREFIXES) or (buckets and name.endswith("_bucket")):
            yield name, labels, value


STUB_STATUS = re.compile(
    r"Active connections:\s*(\d+).*?\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n.*?"
    r"Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)", re.S)


def parse_stub_status(text: str) -> list[tuple[str, str, float]]:
    """nginx stub_status -> connections (active, reading, writing, waiting) and the accepts/handled/requests
    counters (the monitor's own status request is counted in them: one a second)."""
    m = STUB_STATUS.search(text)
    if not m:
        raise ValueError(f"not a stub_status page: {text[:80]!r}")
    a, acc, han, req, rd, wr, wt = (float(x) for x in m.groups())
    return [("connections_active", "", a), ("accepts", "", acc), ("handled", "", han), ("requests", "", req),
            ("connections_reading", "", rd), ("connections_writing", "", wr), ("connections_waiting", "", wt)]


REDIS_INFO_KEEP = {
    "connected_clients": "connected_clients", "blocked_clients": "blocked_clients",
    "used_memory": "used_memory_bytes", "used_memory_rss": "used_memory_rss_bytes",
    "maxmemory": "maxmemory_bytes", "instantaneous_ops_per_sec": "ops_per_sec",
    "total_commands_processed": "commands_processed", "total_connections_received": "connections_received",
    "rejected_connections": "rejected_connections", "keyspace_hits": "keyspace_hits",
    "keyspace_misses": "keyspace_misses", "evicted_keys": "evicted_keys", "expired_keys": "expired_keys",
    "used_cpu_sys": "cpu_sys_seconds", "used_cpu_user": "cpu_user_seconds",
    "connected_slaves": "connected_replicas", "master_repl_offset": "repl_offset",
}


def parse_redis_info(text: str) -> list[tuple[str, str, float]]:
    """redis INFO text -> a fixed subset (REDIS_INFO_KEEP) plus keys per db ("db0:keys=1,expires=0,...")."""
    out = []
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        if key == "role":
            out.append(("is_master", "", 1.0 if value.strip() == "master" else 0.0))
        elif key == "master_link_status":
            out.append(("master_link_up", "", 1.0 if value.strip() == "up" else 0.0))
        elif key in REDIS_INFO_KEEP:
            try:
                out.append((REDIS_INFO_KEEP[key], "", float(value)))
            except ValueError:
                pass
        elif re.fullmatch(r"db\d+", key):
            fields = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
            if "keys" in fields:
                out.append(("keys", f"db={key[2:]}", float(fields["keys"])))
    return out


def parse_sentinel_block(lines: list[str]) -> list[tuple[str, str, float]]:
    """One sentinel's view: `declared <addr>`, then `SENTINEL get-master-addr-by-name` (ip, port) and
    `SENTINEL master` (flat name/value lines) -> who is master, whether it is the declared one, what it sees."""
    lines = [x.strip() for x in lines if x.strip()]
    if len(lines) < 3 or not lines[0].startswith("declared ") or not lines[2].isdigit():
        raise StreamEnded("redis-sentinel: " + " ".join(lines)[:200])
    declared, master = lines[0].split(" ", 1)[1], lines[1]
    fields = dict(zip(lines[3::2], lines[4::2], strict=False))
    out = [("master", f"addr={master}", 1.0), ("master_is_declared", "", 1.0 if master == declared else 0.0)]
    flags = set(fields.get("flags", "").split(","))
    out.append(("master_down", "", 1.0 if flags & {"s_down", "o_down"} else 0.0))
    for name, metric in (("num-slaves", "replicas_known"), ("num-other-sentinels", "other_sentinels"),
                         ("config-epoch", "config_epoch")):
        if fields.get(name, "").isdigit():
            out.append((metric, "", float(fields[name])))
    return out


def parse_redis_queues(lines: Iterable[str]) -> list[tuple[str, str, float]]:
    """`LLEN` results in CELERY_QUEUES x CELERY_PRIORITY_SUFFIXES order -> celery_queue_length per queue."""
    values = [float(x) for x in lines]
    expected = len(CELERY_QUEUES) * len(CELERY_PRIORITY_SUFFIXES)
    if len(values) != expected:
        raise ValueError(f"expected {expected} queue lengths, got {len(values)}")
    step = len(CELERY_PRIORITY_SUFFIXES)
    out = [("celery_queue_length", f"queue={q}", sum(values[i * step:(i + 1) * step]))
           for i, q in enumerate(CELERY_QUEUES)]
    out.append(("celery_queue_length_total", "", sum(values)))
    return out


def parse_psql_row(line: str) -> tuple[str, str, float] | None:
    """One `psql -At -F'|'` row of POSTGRES_QUERY: metric|labels|value (value empty for SQL NULL -> None)."""
    parts = line.rstrip("\r\n").split("|")
    if len(parts) != 3 or not parts[0]:
        return None
    metric, labels, raw = parts
    if raw == "":
        return (metric, labels, float("nan")) if metric.startswith("#") else None
    try:
        return metric, labels, float(raw)
    except ValueError:
        return None


# -------------------------------------------------------------------------------------------- the base sampler
@dataclass(eq=False)
class _Target:
    """One service as one sampler sees it: its thread, its current stream, its counts."""

    sampler: str
    service: str
    container: str = ""
    thread: threading.Thread | None = None
    closer: Callable[[], None] | None = None  # ends the current stream gently (stdin EOF, close the request)
    aborter: Callable[[], None] | None = None  # cuts it (a blocked read returns)
    cpu_seconds: float = 0.0  # this target's thread CPU (time.thread_time), updated as it goes
    last_sample: float = 0.0  # monotonic
    silent_reported: bool = False
    samples: int = 0
    errors: int = 0


class Sampler:
    """Template method: run() keeps one stream per target going; a subclass implements targets() and stream().

    stream(target, emit) blocks while it samples and returns or raises when its source ends; run() records a
    `sampler_error` row and starts it again (after 1, 2, 4, then every 5 s while it keeps failing) until the
    monitor stops. One instance serves all its targets, each in its own thread: keep per-stream state local.
    """

    name = ""
    max_restart_delay = 5.0

    def __init__(self, monitor: Monitor):
        self.monitor = monitor
        self.client = monitor.client
        self.interval = monitor.interval

    def targets(self) -> list[str]:
        raise NotImplementedError

    def stream(self, target: _Target, emit: Emit) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> threading.Event:
        return self.monitor._stopping

    def running_container(self, target: _Target):
        found = [c for c in project_containers(self.client, target.service) if c.status == "running"]
        if not found:
            raise StreamEnded(f"service {target.service} has no running container")
        target.container = found[0].name
        return found[0]

    def run(self, target: _Target) -> None:
        def emit(metric: str, value: float, labels: str = "", t: float | None = None) -> None:
            self.monitor._emit(time.time() if t is None else t, target.service, target.container, metric,
                               value, labels)
            target.last_sample = time.monotonic()
            target.silent_reported = False
            target.samples += 1
            target.cpu_seconds = time.thread_time()

        delay = 1.0
        while not self.stopping.is_set():
            before = target.samples
            try:
                self.stream(target, emit)
                problem = "stream ended"
            except Exception as error:  # noqa: BLE001 - a sampler never crashes the run
                problem = f"{type(error).__name__}: {error}"
            finally:
                target.closer = target.aborter = None
                target.cpu_seconds = time.thread_time()
            if self.stopping.is_set():
                break
            target.errors += 1
            self.monitor._error(target, problem)
            delay = 1.0 if target.samples > before else min(self.max_restart_delay, delay * 2)
            self.stopping.wait(delay)
        target.cpu_seconds = time.thread_time()


# ---------------------------------------------------------------------------------------------- docker stats
def _memory_used(mem: dict) -> float | None:
    if "usage" not in mem:
        return None
    stats = mem.get("stats") or {}
    cache = stats["cache"] if "cache" in stats else stats.get("inactive_file", 0)  # cgroup v1 / v2
    return float(mem["usage"] - (cache or 0))


def docker_stats_rows(stats: dict, previous: dict | None) -> list[tuple[str, str, float]]:
    """(metric, labels, value) of one docker stats sample; CPU from the delta to the stream's previous one."""
    rows: list[tuple[str, str, float]] = []
    cpu = stats.get("cpu_stats") or {}
    if previous is not None:
        before = previous.get("cpu_stats") or {}
        try:
            used = cpu["cpu_usage"]["total_usage"] - before["cpu_usage"]["total_usage"]
            system = cpu["system_cpu_usage"] - before["system_cpu_usage"]
            online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or []) or 1
            if system > 0 and used >= 0:
                rows.append(("cpu_cores", "", used / system * online))
        except (KeyError, TypeError):
            pass
    if "total_usage" in (cpu.get("cpu_usage") or {}):
        rows.append(("cpu_seconds", "", cpu["cpu_usage"]["total_usage"] / 1e9))
    throttled = (cpu.get("throttling_data") or {}).get("throttled_time")
    if throttled is not None:
        rows.append(("cpu_throttled_seconds", "", throttled / 1e9))
    mem = stats.get("memory_stats") or {}
    used_mem = _memory_used(mem)
    if used_mem is not None:
        rows.append(("memory_bytes", "", used_mem))
        if mem.get("limit"):
            rows.append(("memory_limit_bytes", "", float(mem["limit"])))
    networks = stats.get("networks") or {}
    if networks:
        rows.append(("net_rx_bytes", "", float(sum(n.get("rx_bytes", 0) for n in networks.values()))))
        rows.append(("net_tx_bytes", "", float(sum(n.get("tx_bytes", 0) for n in networks.values()))))
    return rows


def SamplerRegistry() -> Registry[Sampler]:  # noqa: N802 - reads like the class it makes
    """A registry of samplers (the module-level `samplers` is the one the monitor uses)."""
    return Registry("sampler", Sampler, "pretix_lab.samplers", UnknownSamplerError)


samplers = SamplerRegistry()


@samplers.register("docker")
class DockerSampler(Sampler):
    """Per container CPU (cores used), throttling, memory (usage minus page cache) and network counters from
    docker's streaming stats API: one long request per container, the engine pushes a sample every second."""

    def targets(self) -> list[str]:
        return list(self.monitor.services)

    def stream(self, target: _Target, emit: Emit) -> None:
        c = self.running_container(target)
        api = self.client.api
        # docker-py's stats(stream=True) hides the response: open the same request so stop() can cancel it
        response = api._get(api._url("/containers/{0}/stats", c.id), params={"stream": True}, stream=True)
        api._raise_for_status(response)
        stats_stream = CancellableStream(api._stream_helper(response, decode=True), response)
        target.closer = target.aborter = stats_stream.close
        previous = None
        next_due = 0.0
        try:
            for stats in stats_stream:
                if self.stopping.is_set():
                    return
                if str(stats.get("read", "")).startswith("0001-"):  # what the engine sends for a stopped one
                    raise StreamEnded(f"{c.name} is not running")
                now = time.time()
                if now >= next_due:  # the engine's cadence is 1 s; a longer interval thins it out
                    for metric, labels, value in docker_stats_rows(stats, previous):
                        emit(metric, value, labels, now)
                    previous = stats
                    next_due = now + self.interval - 0.5
        finally:
            stats_stream.close()


# ------------------------------------------------------------------------------------------------- exec streams
class ExecStream:
    """One long-lived `docker exec` of a bash script: its stdout as lines, its end at stdin EOF (close()).

    The script's in-container CPU, when it reports it (`#CPU <clock ticks>` lines), is kept in cpu_seconds.
    """

    def __init__(self, client, container, script: str, args: list[str], env: dict[str, str] | None = None,
                 read_timeout: float = 20.0):
        api = client.api
        self.api = api
        self.container = container.name
        self.exec_id = api.exec_create(container.id, ["bash", "-c", script, "lab-monitor", *args],
                                       stdin=True, stdout=True, stderr=True, environment=env or {})["Id"]
        self.sock = api.exec_start(self.exec_id, socket=True)
        self._raw = getattr(self.sock, "_sock", self.sock)
        self._raw.settimeout(read_timeout)  # a silent (e.g. paused) container ends the stream, never hangs it
        self.stderr_tail: list[str] = []
        self.cpu_seconds = 0.0

    def lines(self) -> Iterator[str]:
        pending = b""
        try:
            for stream_id, data in frames_iter(self.sock, tty=False):
                if stream_id == 2:
                    self.stderr_tail = (self.stderr_tail + data.decode(errors="replace").splitlines())[-5:]
                    continue
                pending += data
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace").rstrip("\r")
                    if line.startswith("#CPU "):
                        try:
                            self.cpu_seconds = float(line[5:]) / CLOCK_TICKS
                        except ValueError:
                            pass
                        continue
                    yield line
        except TimeoutError:
            raise StreamEnded("no output for a while (container paused or hung?)") from None
        except OSError:
            if self._raw.fileno() == -1:  # aborted by stop()
                return
            raise
        if pending:
            yield pending.decode(errors="replace")

    def close(self) -> None:
        """Half-close: the script sees EOF on stdin and ends (and ends what it started)."""
        try:
            self._raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def abort(self) -> None:
        for step in (lambda: self._raw.shutdown(socket.SHUT_RDWR), self._raw.close):
            try:
                step()
            except OSError:
                pass

    def running(self) -> bool:
        try:
            return bool(self.api.exec_inspect(self.exec_id).get("Running"))
        except Exception:  # noqa: BLE001 - container gone: nothing of it runs
            return False


CLOCK_TICKS = float(os.sysconf("SC_CLK_TCK"))


# Shared by the exec'd bash loops: "$1" = interval (s), "$2" = maximum duration (s). Calls `sample <epoch>` once
# per tick (it prints `#S <epoch>`, the sample's lines, `#E`), prints `#CPU <clock ticks>` (this shell, its waited-for
# children and the pids in $cpu_pids) now and then, and waits for the next tick with `read -t` on stdin: no `sleep`
# fork, and stdin EOF (the monitor's stop) ends the loop.
_LOOP = r"""
set -u
cpu_pids=${cpu_pids:-}
cpu() {
    local st total=0 p
    read -r -a st < /proc/$$/stat && total=$(( st[13] + st[14] + st[15] + st[16] ))
    for p in $cpu_pids; do read -r -a st < "/proc/$p/stat" 2>/dev/null && total=$(( total + st[13] + st[14] )); done
    echo "#CPU $total"
}
whole=${1%.*}; frac=000000; case "$1" in *.*) frac=${1#*.}000000;; esac
interval_us=$(( 10#${whole:-0} * 1000000 + 10#${frac:0:6} ))
[ "$interval_us" -ge 100000 ] || interval_us=100000
end=$(( SECONDS + ${2%.*} ))
t=${EPOCHREALTIME/[.,]/}; next=$(( 10#$t ))
n=0
while [ "$SECONDS" -lt "$end" ]; do
    sample "$EPOCHREALTIME"
    n=$(( n + 1 ))
    [ $(( n % 10 )) -eq 1 ] && cpu
    next=$(( next + interval_us ))
    t=${EPOCHREALTIME/[.,]/}; wait_us=$(( next - 10#$t ))
    if [ "$wait_us" -le 0 ]; then next=$(( 10#$t )); wait_us=1000; fi
    printf -v w '%d.%06d' $(( wait_us / 1000000 )) $(( wait_us % 1000000 ))
    read -r -t "$w" _; rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; then break; fi   # EOF on stdin: the monitor stopped
done
cpu
"""

# stub_status over bash's /dev/tcp: not a single fork per sample.
NGINX_SCRIPT = r"""
sample() {
    echo "#S $1"
    if exec 3<>/dev/tcp/127.0.0.1/80; then
        printf 'GET /nginx-status HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
        local body=0 line
        while IFS= read -r -t 2 line <&3; do
            line=${line%$'\r'}
            if [ "$body" = 1 ]; then printf '%s\n' "$line"; elif [ -z "$line" ]; then body=1; fi
        done
        exec 3<&-
    fi
    echo "#E"
}
""" + _LOOP

# ONE redis-cli for the whole run, fed through a pipe: each tick sends INFO (a few sections) and the celery queue
# lengths (broker db 1); the frame lines come back through redis' ECHO, so they stay in order with the replies.
# The password is the container's own REDIS_PASSWORD, handed over as REDISCLI_AUTH (environment, never argv: no
# command line shows it). If redis-cli ends (redis restarted), the next write kills the loop: the monitor restarts it.
REDIS_SCRIPT = r"""
export REDISCLI_AUTH="${REDIS_PASSWORD:-}"
exec 5> >(exec redis-cli -h 127.0.0.1 -p 6379 -n 1 2>&1)
cpu_pids=$!
unset REDISCLI_AUTH
sample() {
    printf 'ECHO "#S %s"\nINFO clients memory stats cpu keyspace replication\nECHO #Q\n@QUEUES@ECHO #E\n' "$1" >&5
}
""".replace("@QUEUES@", "".join(f"LLEN {q}{s}\\n" for q in CELERY_QUEUES for s in CELERY_PRIORITY_SUFFIXES)) + _LOOP

# A sentinel knows no ECHO (and no password): one redis-cli per tick asks who the master is and what it sees (one
# fork per tick and sentinel, no `timeout` wrapper: the monitor's whole cost is held under 5% of a core).
SENTINEL_SCRIPT = r"""
sample() {
    echo "#S $1"
    echo "declared ${REDIS_PRIMARY_ADDR:-?}"
    printf 'SENTINEL get-master-addr-by-name %s\nSENTINEL master %s\n' "${REDIS_MASTER_NAME:-lab-redis}" \
        "${REDIS_MASTER_NAME:-lab-redis}" | redis-cli -h 127.0.0.1 -p 26379 --raw 2>&1
    echo "#E"
}
""" + _LOOP

# psql repeats the query itself (\watch); the bash around it only waits for stdin EOF (or psql's end, or the
# maximum duration), reports psql's CPU and its own, and ends psql.
POSTGRES_SCRIPT = r"""
set -u
end=$(( SECONDS + ${2%.*} ))
psql -X -q -At -F'|' -v ON_ERROR_STOP=1 -h /var/run/postgresql -U postgres -d "${LAB_PG_DB:-pretix}" \
    <<< "$LAB_QUERY"$'\n'"\\watch $1" &
pid=$!
cpu() {
    local st me
    read -r -a st < "/proc/$pid/stat" 2>/dev/null || st=(0 0 0 0 0 0 0 0 0 0 0 0 0 0 0)
    read -r -a me < /proc/$$/stat && echo "#CPU $(( st[13] + st[14] + me[13] + me[14] + me[15] + me[16] ))"
}
n=0
while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do
    read -r -t 1 _; rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; then break; fi   # EOF on stdin: the monitor stopped
    n=$(( n + 1 ))
    [ $(( n % 10 )) -eq 1 ] && cpu
done
cpu
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0
"""

# Works on a primary and on a standby (primary-only functions are guarded by pg_is_in_recovery()). The first and
# last rows ('#S' with the sample's time, '#E') frame one sample.
POSTGRES_QUERY = """
SELECT k, l, v FROM (
  SELECT 0 AS o, '#S' AS k, '' AS l, extract(epoch FROM clock_timestamp())::float8 AS v
  UNION ALL SELECT 1, 'in_recovery', '', pg_is_in_recovery()::int::float8
  UNION ALL SELECT 1, 'xact_commit', '', xact_commit::float8 FROM pg_stat_database WHERE datname = current_database()
  UNION ALL SELECT 1, 'xact_rollback', '', xact_rollback::float8 FROM pg_stat_database
    WHERE datname = current_database()
  UNION ALL SELECT 1, 'deadlocks', '', deadlocks::float8 FROM pg_stat_database WHERE datname = current_database()
  UNION ALL SELECT 1, 'conflicts', '', conflicts::float8 FROM pg_stat_database WHERE datname = current_database()
  UNION ALL SELECT 1, 'temp_bytes', '', temp_bytes::float8 FROM pg_stat_database WHERE datname = current_database()
  UNION ALL SELECT 2, 'connections', 'state=' || s.state, count(a.pid)::float8
    FROM unnest(ARRAY['active', 'idle', 'idle in transaction', 'idle in transaction (aborted)']) AS s(state)
    LEFT JOIN pg_stat_activity a ON a.state = s.state AND a.backend_type = 'client backend' GROUP BY s.state
  UNION ALL SELECT 2, 'connections_total', '', count(*)::float8 FROM pg_stat_activity
    WHERE backend_type = 'client backend'
  UNION ALL SELECT 2, 'lock_waits', '', count(*)::float8 FROM pg_locks WHERE NOT granted
  UNION ALL SELECT 2, 'lock_waits_advisory', '', count(*)::float8 FROM pg_locks
    WHERE NOT granted AND locktype = 'advisory'
  UNION ALL SELECT 2, 'oldest_xact_seconds', '',
    coalesce(extract(epoch FROM clock_timestamp() - min(xact_start)), 0)::float8 FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
  UNION ALL SELECT 3, 'replicas_streaming', '', count(*) FILTER (WHERE state = 'streaming')::float8
    FROM pg_stat_replication
  UNION ALL SELECT 3, 'replication_streaming',
    'application_name=' || application_name || ',state=' || state || ',sync_state=' || sync_state,
    (state = 'streaming')::int::float8 FROM pg_stat_replication
  UNION ALL SELECT 3, 'replication_lag_bytes', 'application_name=' || application_name,
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END::float8
    FROM pg_stat_replication
  UNION ALL SELECT 3, 'replication_replay_lag_seconds', 'application_name=' || application_name,
    CASE WHEN state = 'streaming' THEN coalesce(extract(epoch FROM replay_lag), 0) END::float8
    FROM pg_stat_replication
  UNION ALL SELECT 3, 'replication_flush_lag_seconds', 'application_name=' || application_name,
    CASE WHEN state = 'streaming' THEN coalesce(extract(epoch FROM flush_lag), 0) END::float8
    FROM pg_stat_replication
  UNION ALL SELECT 4, 'replay_delay_seconds', '', CASE WHEN pg_is_in_recovery() THEN
    extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) END::float8
  UNION ALL SELECT 4, 'replay_backlog_bytes', '', CASE WHEN pg_is_in_recovery() THEN
    pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) END::float8
  UNION ALL SELECT 4, 'wal_receiver_streaming', '', (status = 'streaming')::int::float8 FROM pg_stat_wal_receiver
  UNION ALL SELECT 9, '#E', '', NULL
) q ORDER BY o
"""


class _Blocks:
    """Lines between `#S <epoch>` and `#E` -> parse(lines) -> rows at that epoch."""

    def __init__(self, parse: Callable[[list[str]], Iterable[tuple[str, str, float]]], emit: Emit):
        self.parse, self.emit = parse, emit
        self.lines: list[str] | None = None
        self.t = 0.0

    def feed(self, line: str) -> None:
        if line.startswith("#S "):
            self.lines, self.t = [], _epoch(line[3:])
        elif line == "#E":
            if self.lines is not None:
                for metric, labels, value in self.parse(self.lines):
                    self.emit(metric, value, labels, self.t)
            self.lines = None
        elif line.startswith("#ERR"):
            raise StreamEnded(line[4:].strip())
        elif self.lines is not None:
            self.lines.append(line)


class _PsqlRows:
    """psql rows of POSTGRES_QUERY: its own '#S' and '#E' rows frame a sample."""

    def __init__(self, emit: Emit):
        self.emit = emit
        self.rows: list[tuple[str, str, float]] | None = None
        self.t = 0.0

    def feed(self, line: str) -> None:
        row = parse_psql_row(line)
        if row is None:
            return
        metric, labels, value = row
        if metric == "#S":
            self.rows, self.t = [], value
        elif metric == "#E":
            for m, lab, v in self.rows or []:
                self.emit(m, v, lab, self.t)
            self.rows = None
        elif self.rows is not None:
            self.rows.append(row)


def _epoch(text: str) -> float:
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        return time.time()


class ExecSampler(Sampler):
    """A sampler fed by one long-lived exec'd script per service (a subclass gives script, env and a parser)."""

    script = ""

    def exec_env(self) -> dict[str, str]:
        return {}

    def parse_block(self, lines: list[str]) -> Iterable[tuple[str, str, float]]:
        raise NotImplementedError

    def reader(self, emit: Emit):
        return _Blocks(self.parse_block, emit)

    def stream(self, target: _Target, emit: Emit) -> None:
        c = self.running_container(target)
        ex = self.monitor._open_exec(c, self.script, self.interval, self.exec_env())
        target.closer, target.aborter = ex.close, ex.abort
        reader = self.reader(emit)
        try:
            for line in ex.lines():
                reader.feed(line)
        finally:
            ex.close()
        if not self.stopping.is_set():
            detail = "; ".join(ex.stderr_tail)
            raise StreamEnded(f"exec ended{': ' + detail if detail else ''}")


@samplers.register("nginx")
class NginxSampler(ExecSampler):
    """stub_status of the proxy, read by a bash loop inside its container (bash's /dev/tcp: no fork)."""

    script = NGINX_SCRIPT

    def targets(self) -> list[str]:
        return [s for s in self.monitor.services if s == PROXY_SERVICE]

    def parse_block(self, lines: list[str]) -> Iterable[tuple[str, str, float]]:
        return parse_stub_status("\n".join(lines))


@samplers.register("redis")
class RedisSampler(ExecSampler):
    """Each data node (master and replica): INFO (role, replicas, link, offset, clients, memory, ops/s, hits/misses,
    redis' CPU, keys) and the celery queue lengths (broker db; a replica's copy of them)."""

    script = REDIS_SCRIPT

    def targets(self) -> list[str]:
        return [s for s in self.monitor.services if s.startswith(REDIS_PREFIX) and not s.startswith(SENTINEL_PREFIX)]

    def parse_block(self, lines: list[str]) -> Iterable[tuple[str, str, float]]:
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

    def parse_block(self, lines: list[str]) -> Iterable[tuple[str, str, float]]:
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
        return {"LAB_QUERY": " ".join(POSTGRES_QUERY.split())}

    def reader(self, emit: Emit):
        return _PsqlRows(emit)


# ------------------------------------------------------------------------------------------------------ pretix
# Fallback when the host cannot reach a web instance's edge address: a stdlib python loop inside the web
# container asks gunicorn on 127.0.0.1:8000, with the credentials from its own environment (never argv).
PRETIX_EXEC_SCRIPT = r"""
exec python3 -I -c '
import base64, os, select, sys, time, urllib.request
from urllib.parse import urlsplit
interval, end = float(sys.argv[1]), time.monotonic() + float(sys.argv[2])
host = urlsplit(os.environ.get("PRETIX_PRETIX_URL", "")).netloc or "localhost"
cred = os.environ["PRETIX_METRICS_USER"] + ":" + os.environ["PRETIX_METRICS_PASSPHRASE"]
headers = {"Host": host, "Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}
next_t = time.monotonic()
while time.monotonic() < end:
    t0, p0 = time.time(), time.perf_counter()
    try:
        req = urllib.request.Request("http://127.0.0.1:8000/metrics", headers=headers)
        body = urllib.request.urlopen(req, timeout=10).read().decode()
        sys.stdout.write("#S %f\nscrape_seconds %f\n%s#E\n" % (t0, time.perf_counter() - p0, body))
    except Exception as e:
        sys.stdout.write("#S %f\n#FAIL %s\n#E\n" % (t0, type(e).__name__))
    sys.stdout.flush()
    next_t += interval
    ready, _, _ = select.select([0], [], [], max(0.0, next_t - time.monotonic()))
    if ready and not os.read(0, 4096):
        break
' "$1" "$2"
"""


@samplers.register("pretix")
class PretixSampler(Sampler):
    """pretix's Prometheus /metrics from each web instance on its own (gunicorn on its edge address :8000,
    Host: the site's host, basic auth): a useful subset (PRETIX_KEEP_PREFIXES), plus `scrape_seconds` and `up`.

    pretix keeps its counters in redis (one hash for all instances, pretix/base/metrics.py), so both instances
    report the same totals; the per-instance view says whether that instance answers, and how fast. Falls back
    to an exec'd loop inside the container when the host cannot reach the edge address.
    """

    timeout = 5.0

    def __init__(self, monitor: Monitor):
        super().__init__(monitor)
        self.interval = monitor.pretix_interval

    def targets(self) -> list[str]:
        return [s for s in self.monitor.services if s.startswith(WEB_PREFIX)]

    def _rows(self, text: str) -> list[tuple[str, str, float]]:
        return list(pretix_subset(parse_prometheus(text), buckets=self.monitor.pretix_buckets))

    def stream(self, target: _Target, emit: Emit) -> None:
        c = self.running_container(target)
        if target.service in self.monitor._pretix_via_exec:
            return self._stream_exec(target, c, emit)
        auth = self.monitor.metrics_auth
        if auth is None:
            raise StreamEnded("no metrics credentials (secrets.json of the deployment)")
        env = dict(e.split("=", 1) for e in c.attrs["Config"].get("Env") or [] if "=" in e)
        host = urlsplit(env.get("PRETIX_PRETIX_URL", "")).netloc or PRETIX_HOST
        edge = ((c.attrs["NetworkSettings"]["Networks"] or {}).get(f"{PROJECT}_edge") or {}).get("IPAddress")
        if not edge:
            raise StreamEnded(f"{c.name} has no address on {PROJECT}_edge")
        url = f"http://{edge}:8000/metrics"
        answered = False
        with httpx.Client(headers={"Host": host}, auth=auth, timeout=self.timeout, trust_env=False) as http:
            next_t = time.monotonic()
            while not self.stopping.is_set():
                t0, p0 = time.time(), time.perf_counter()
                try:
                    r = http.get(url)
                except httpx.TransportError as error:
                    if not answered and self._exec_works(c):
                        self.monitor._pretix_via_exec.add(target.service)
                        log.info("monitor: %s unreachable from here (%s); reading /metrics by exec", url, error)
                        return self._stream_exec(target, c, emit)
                    raise StreamEnded(f"/metrics: {type(error).__name__}") from None
                elapsed = time.perf_counter() - p0
                if r.status_code != 200:
                    emit("up", 0.0, "", t0)
                    raise StreamEnded(f"/metrics answered HTTP {r.status_code}")
                answered = True
                for metric, labels, value in self._rows(r.text):
                    emit(metric, value, labels, t0)
                emit("scrape_seconds", elapsed, "", t0)
                emit("up", 1.0, "", t0)
                next_t += self.interval
                if next_t < time.monotonic():  # a slow scrape: start again from now, no burst to catch up
                    next_t = time.monotonic()
                self.stopping.wait(next_t - time.monotonic())

    @staticmethod
    def _exec_works(c) -> bool:
        try:
            return c.exec_run(["python3", "-I", "-c", "pass"]).exit_code == 0
        except Exception:  # noqa: BLE001
            return False

    def _stream_exec(self, target: _Target, c, emit: Emit) -> None:
        ex = self.monitor._open_exec(c, PRETIX_EXEC_SCRIPT, self.interval, {})
        target.closer, target.aborter = ex.close, ex.abort

        def parse(lines: list[str]) -> list[tuple[str, str, float]]:
            if lines and lines[0].startswith("#FAIL"):
                self.monitor._error(target, f"/metrics via exec: {lines[0][5:].strip()}")
                return [("up", "", 0.0)]
            rows = self._rows("\n".join(lines[1:]))
            elapsed = float(lines[0].split()[1]) if lines and lines[0].startswith("scrape_seconds") else math.nan
            return rows + [("scrape_seconds", "", elapsed), ("up", "", 1.0)]

        reader = _Blocks(parse, emit)
        try:
            for line in ex.lines():
                reader.feed(line)
        finally:
            ex.close()
        if not self.stopping.is_set():
            raise StreamEnded("exec ended")


# ------------------------------------------------------------------------------------------------------ monitor
DEFAULT_SAMPLERS = ("docker", "pretix", "postgres", "redis", "sentinel", "nginx")


class Monitor:
    """Samples every service about once a second into run_dir/metrics.parquet until stop() (or max_duration).

        with Monitor(run_dir, client, run_id="r1"):
            ...  # the run

    interval: period of every sampler (docker's own stats cadence is 1 s: a longer interval thins it out).
    pretix_interval: period of the /metrics scrape of each web instance. 5 s by default, not 1 s: a scrape costs
        the stack about 40 ms of CPU (gunicorn + PostgreSQL: pretix counts the rows of every model on each
        scrape), i.e. 8 % of a core at 1 Hz on two instances; its counters are cumulative, so rates lose little.
    sampler_names: which registered samplers run (an unknown name fails here, before anything starts).
    services: the services to sample (default: the long-running services of stack/compose.yaml).
    max_duration: the monitor stops by itself after this long; its exec'd loops end a minute later at most.
    """

    def __init__(self, run_dir: Path, docker_client, *, interval: float = 1.0, run_id: str,
                 sampler_names: Iterable[str] = DEFAULT_SAMPLERS, pretix_interval: float = 5.0,
                 pretix_buckets: bool = False, max_duration: float = 6 * 3600, flush_seconds: float = 5.0,
                 services: Iterable[str] | None = None, metrics_auth: tuple[str, str] | None = None,
                 scrubber: Scrubber | None = None):
        if interval < 0.2:
            raise ValueError(f"interval={interval}: must be at least 0.2 s")
        if pretix_interval < 0.2:
            raise ValueError(f"pretix_interval={pretix_interval}: must be at least 0.2 s")
        if max_duration <= 0 or flush_seconds <= 0:
            raise ValueError("max_duration and flush_seconds must be > 0")
        self.run_dir = Path(run_dir)
        self.client = docker_client
        self.run_id = run_id
        self.interval = float(interval)
        self.pretix_interval = float(pretix_interval)
        self.pretix_buckets = pretix_buckets
        self.max_duration = float(max_duration)
        self.flush_seconds = float(flush_seconds)
        self.services = list(services) if services is not None else long_running()
        self.sampler_classes = [samplers.get(name) for name in sampler_names]
        self.metrics_auth = metrics_auth if metrics_auth is not None else _metrics_auth()
        self.scrub = scrubber or default_scrubber()
        self._stopping = threading.Event()
        self._stop_lock = threading.Lock()
        self._writer: _MetricWriter | None = None
        self._targets: list[_Target] = []
        self._execs: list[ExecStream] = []
        self._pretix_via_exec: set[str] = set()
        self._housekeeper: threading.Thread | None = None
        self._housekeeper_cpu = 0.0
        self._cpu_mark = (0.0, 0.0)
        self._started = 0.0
        self._ended = 0.0
        self._stopped = False
        self.leftover_execs: list[str] = []
        self.errors: list[tuple[str, str, str]] = []  # (sampler, service, problem)

    # ----------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> Monitor:
        if self._housekeeper is not None:
            raise RuntimeError("a monitor starts once")
        self._writer = _MetricWriter(self.run_dir / METRICS, self.run_id)
        self._started = time.monotonic()
        self._cpu_mark = (self._started, 0.0)
        for cls in self.sampler_classes:
            sampler = cls(self)
            for service in sampler.targets():
                target = _Target(sampler.name, service)
                target.thread = threading.Thread(target=sampler.run, args=(target,), daemon=True,
                                                 name=f"monitor-{sampler.name}-{service}")
                self._targets.append(target)
        for target in self._targets:
            target.thread.start()
        self._housekeeper = threading.Thread(target=self._housekeeping, daemon=True, name="monitor-housekeeping")
        self._housekeeper.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End every stream (exec'd loops see stdin EOF and end), join every thread, write what is left."""
        with self._stop_lock:
            if self._housekeeper is None or self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        for target in self._targets:
            if target.closer is not None:
                target.closer()
        self._join(timeout / 2)
        for target in self._targets:  # still blocked (e.g. a paused container): cut the connection
            if target.thread.is_alive() and target.aborter is not None:
                target.aborter()
        self._join(timeout / 2)
        if threading.current_thread() is not self._housekeeper:
            self._housekeeper.join(timeout)
        self.leftover_execs = self._wait_execs_ended(5.0)
        for exec_id in self.leftover_execs:
            log.warning("monitor: exec %s still running after stop", exec_id[:12])
        self._ended = time.monotonic()
        self._write_self_metrics(final=True)
        self._flush()

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for target in self._targets:
            target.thread.join(max(0.0, deadline - time.monotonic()))

    def _wait_execs_ended(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        pending = list(self._execs)
        while pending and time.monotonic() < deadline:
            pending = [ex for ex in pending if ex.running()]
            if pending:
                time.sleep(0.2)
        for ex in pending:
            ex.abort()
        return [ex.exec_id for ex in pending]

    # --------------------------------------------------------------------------------------------- internals
    def _open_exec(self, container, script: str, interval: float, env: dict[str, str]) -> ExecStream:
        ex = ExecStream(self.client, container, script, [f"{interval:g}", str(int(self.max_duration + 60))], env)
        self._execs.append(ex)
        return ex

    def _emit(self, t: float, service: str, container: str, metric: str, value: float, labels: str) -> None:
        self._writer.add((t, service, container, metric, float(value), labels))

    def _error(self, target: _Target, problem: str) -> None:
        problem = self.scrub(problem).replace("\n", " ").replace(",", ";")[:300]
        self.errors.append((target.sampler, target.service, problem))
        log.info("monitor: %s/%s: %s", target.sampler, target.service, problem)
        self._emit(time.time(), target.service, target.container, SAMPLER_ERROR, 1.0,
                   f"sampler={target.sampler},error={problem}")

    def _housekeeping(self) -> None:
        """Flush part files, report silent samplers, record the monitor's own cost; stop at max_duration."""
        last_flush = last_self = time.monotonic()
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            for target in self._targets:
                silent = now - (target.last_sample or self._started)
                period = self.pretix_interval if target.sampler == "pretix" else self.interval
                if silent > max(10.0, 5 * period) and not target.silent_reported:
                    target.silent_reported = True
                    self._error(target, f"no sample for {silent:.0f} s")
            self._housekeeper_cpu = time.thread_time()
            if now - last_self >= 5.0:
                self._write_self_metrics()
                last_self = now
            if now - last_flush >= self.flush_seconds:
                self._flush()
                last_flush = now
            if now - self._started >= self.max_duration:
                log.warning("monitor: max_duration %.0f s reached: stopping by itself", self.max_duration)
                self._housekeeper_cpu = time.thread_time()
                self.stop()
                return
        self._housekeeper_cpu = time.thread_time()
        self._flush()

    def _flush(self) -> None:
        try:
            self._writer.flush()
        except Exception as error:  # noqa: BLE001 - a full disk must not kill the run; say so
            log.error("monitor: writing %s failed: %s", self._writer.path, error)

    @property
    def cpu_seconds(self) -> float:
        """CPU the monitor's own threads used (samplers and housekeeping)."""
        return sum(t.cpu_seconds for t in self._targets) + self._housekeeper_cpu

    @property
    def exec_cpu_seconds(self) -> float:
        """CPU the exec'd loops used inside the containers (as they report it)."""
        return sum(ex.cpu_seconds for ex in self._execs)

    def _write_self_metrics(self, final: bool = False) -> None:
        now, total, t = time.monotonic(), self.cpu_seconds, time.time()
        before_t, before_cpu = self._cpu_mark
        if now - before_t > 0.5:
            self._emit(t, MONITOR_SERVICE, "", "cpu_cores", (total - before_cpu) / (now - before_t), "")
        self._cpu_mark = (now, total)
        self._emit(t, MONITOR_SERVICE, "", "cpu_seconds", total, "")
        self._emit(t, MONITOR_SERVICE, "", "exec_cpu_seconds", self.exec_cpu_seconds, "")
        self._emit(t, MONITOR_SERVICE, "", "rows_written", float(self._writer.rows_written), "")
        if final:
            self._emit(t, MONITOR_SERVICE, "", "wall_seconds", now - self._started, "")

    # ------------------------------------------------------------------------------------------------- report
    def summary(self) -> dict[str, Any]:
        """What the monitor did and cost, what went wrong (for a run's journal; secrets scrubbed)."""
        end = self._ended or time.monotonic()
        wall = end - self._started if self._started else 0.0
        return {
            "wall_seconds": round(wall, 3),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "cpu_percent_of_one_core": round(100.0 * self.cpu_seconds / wall, 3) if wall else 0.0,
            "exec_cpu_seconds": round(self.exec_cpu_seconds, 3),
            "rows_written": self._writer.rows_written if self._writer else 0,
            "targets": {f"{t.sampler}/{t.service}": {"samples": t.samples, "errors": t.errors}
                        for t in self._targets},
            "pretix_via_exec": sorted(self._pretix_via_exec),
            "errors": [f"{s}/{svc}: {p}" for s, svc, p in self.errors[-20:]],
            "leftover_execs": list(self.leftover_execs),
        }


def _metrics_auth() -> tuple[str, str] | None:
    from lab.common.paths import deploy_dir

    path = deploy_dir() / "secrets.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return doc["metrics_user"], doc["metrics_password"]


__all__ = [
    "DEFAULT_SAMPLERS", "ExecSampler", "ExecStream", "METRICS", "METRIC_SCHEMA", "Monitor", "SAMPLER_ERROR",
    "Sampler", "SamplerRegistry", "Scrubber", "StreamEnded", "UnknownSamplerError", "docker_stats_rows",
    "parse_prometheus", "parse_psql_row", "parse_redis_info", "parse_redis_queues", "parse_sentinel_block",
    "parse_stub_status",
    "pretix_subset", "read_metrics", "samplers",
]
