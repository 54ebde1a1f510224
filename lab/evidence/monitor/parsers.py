"""Text and JSON a sampler reads -> (metric, labels, value) rows: pure functions, testable on literal samples.

Labels are one string "k=v,k=v" sorted by key (the `labels` column of metrics.parquet).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.parser import text_string_to_metric_families

from lab.evidence.monitor.base import Emit, StreamEnded
from lab.evidence.monitor.names import CELERY_PRIORITY_SUFFIXES, CELERY_QUEUES

MetricRow = tuple[str, str, float]  # metric, labels, value


def label_text(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in pairs)


# ----------------------------------------------------------------------------------------------------- prometheus
def _samples(text: str) -> list[MetricRow]:
    return [(s.name, label_text(sorted(s.labels.items())), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def parse_prometheus(text: str) -> Iterator[MetricRow]:
    """(metric, labels, value) for each sample of Prometheus text exposition (prometheus_client's parser).

    A line the parser refuses would cost the whole scrape; then each line is parsed on its own and only the
    bad ones are left out."""
    try:
        yield from _samples(text)
        return
    except ValueError:
        pass
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            yield from _samples(line)
        except ValueError:
            continue


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


def pretix_subset(samples: Iterable[MetricRow], buckets: bool = False) -> Iterator[MetricRow]:
    for name, labels, value in samples:
        if name == "pretix_model_instances":
            if labels.removeprefix("model=").lower() in PRETIX_KEEP_MODELS:
                yield name, labels, value
        elif name.startswith(PRETIX_KEEP_PREFIXES) or (buckets and name.endswith("_bucket")):
            yield name, labels, value


# ---------------------------------------------------------------------------------------------------------- nginx
STUB_STATUS = re.compile(
    r"Active connections:\s*(\d+).*?\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n.*?"
    r"Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)", re.S)


def parse_stub_status(text: str) -> list[MetricRow]:
    """nginx stub_status -> connections (active, reading, writing, waiting) and the accepts/handled/requests
    counters (the monitor's own status request is counted in them: one a second)."""
    m = STUB_STATUS.search(text)
    if not m:
        raise ValueError(f"not a stub_status page: {text[:80]!r}")
    a, acc, han, req, rd, wr, wt = (float(x) for x in m.groups())
    return [("connections_active", "", a), ("accepts", "", acc), ("handled", "", han), ("requests", "", req),
            ("connections_reading", "", rd), ("connections_writing", "", wr), ("connections_waiting", "", wt)]


# ---------------------------------------------------------------------------------------------------------- redis
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


def parse_redis_info(text: str) -> list[MetricRow]:
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


def parse_sentinel_block(lines: list[str]) -> list[MetricRow]:
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


def parse_redis_queues(lines: Iterable[str]) -> list[MetricRow]:
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


# ------------------------------------------------------------------------------------------------------- postgres
def parse_psql_row(line: str) -> MetricRow | None:
    """One `psql -At -F'|'` row of the sampler's query: metric|labels|value (value empty for SQL NULL -> None)."""
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


# --------------------------------------------------------------------------------------------------- docker stats
def _memory_used(mem: dict) -> float | None:
    if "usage" not in mem:
        return None
    stats = mem.get("stats") or {}
    cache = stats["cache"] if "cache" in stats else stats.get("inactive_file", 0)  # cgroup v1 / v2
    return float(mem["usage"] - (cache or 0))


def docker_stats_rows(stats: dict, previous: dict | None) -> list[MetricRow]:
    """(metric, labels, value) of one docker stats sample; CPU from the delta to the previous sample taken."""
    rows: list[MetricRow] = []
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


# ------------------------------------------------------------------------------------------ framing of exec output
def epoch(text: str) -> float:
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        return time.time()


class Blocks:
    """Lines between `#S <epoch>` and `#E` -> parse(lines) -> rows at that epoch."""

    def __init__(self, parse: Callable[[list[str]], Iterable[MetricRow]], emit: Emit):
        self.parse, self.emit = parse, emit
        self.lines: list[str] | None = None
        self.t = 0.0

    def feed(self, line: str) -> None:
        if line.startswith("#S "):
            self.lines, self.t = [], epoch(line[3:])
        elif line == "#E":
            if self.lines is not None:
                for metric, labels, value in self.parse(self.lines):
                    self.emit(metric, value, labels, self.t)
            self.lines = None
        elif line.startswith("#ERR"):
            raise StreamEnded(line[4:].strip())
        elif self.lines is not None:
            self.lines.append(line)


class PsqlRows:
    """psql rows of the postgres sampler's query: its own '#S' and '#E' rows frame a sample."""

    def __init__(self, emit: Emit):
        self.emit = emit
        self.rows: list[MetricRow] | None = None
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


__all__ = ["Blocks", "MetricRow", "PRETIX_KEEP_MODELS", "PRETIX_KEEP_PREFIXES", "PsqlRows", "docker_stats_rows",
           "label_text", "parse_prometheus", "parse_psql_row", "parse_redis_info", "parse_redis_queues",
           "parse_sentinel_block", "parse_stub_status", "pretix_subset"]
