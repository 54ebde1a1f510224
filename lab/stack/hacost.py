"""What HA and the lab add beside pretix, as knobs: StackParams' fields -> entries of the compose override.

A production deployment of pretix pays for none of this per se: docker's health checks (each execs a process in
its container: python for pretix, psql for PostgreSQL, redis-cli for redis and the sentinels), the cron service
starting Django for every `runperiodic`, celery's worker-to-worker chatter (gossip, mingle, event heartbeats). Each
is a field of StackParams; a default moves away from compose.yaml's own value (or the image's, or celery's) only
where `lab bench efficiency --compare-stack FILE` (a set of them against the deployed one, interleaved, in one run)
measured a cut that costs the study nothing (docs/findings.md). Durability and correctness knobs (replication mode,
fsync, pretix's quota locks) are not here on purpose.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import yaml

from lab.common.paths import COMPOSE_FILE
from lab.stack.params import StackParams
from lab.stack.topology import services

KNOBS = ("health_interval", "cron_interval", "worker_gossip")
CRON_SERVICE = "pretix-cron"
WORKER_PREFIX = "pretix-worker"
NO_GOSSIP = ("--without-gossip", "--without-mingle", "--without-heartbeat")


def stock() -> dict[str, Any]:
    """Every knob at its default."""
    return {k: StackParams.model_fields[k].default for k in KNOBS}


def knobs(params: StackParams) -> dict[str, Any]:
    return {k: getattr(params, k) for k in KNOBS}


def changed(values: dict[str, Any]) -> dict[str, Any]:
    """The knobs set away from their default; a knob a record does not hold counts as default."""
    base = stock()
    return {k: values[k] for k in KNOBS if k in values and values[k] != base[k]}


def describe(values: dict[str, Any]) -> str:
    on = changed(values)
    return ", ".join(f"{k}={v}" for k, v in on.items()) if on else "the HA/lab defaults"


@lru_cache(maxsize=1)
def health_intervals() -> dict[str, int]:
    """service -> compose.yaml's own health-check interval in seconds (services without a check left out)."""
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    out = {}
    for name, spec in doc["services"].items():
        interval = (spec.get("healthcheck") or {}).get("interval")
        if interval is not None:
            out[name] = _seconds(str(interval))
    return out


def _seconds(text: str) -> int:
    """A compose duration of whole seconds or minutes ('3s', '1m', '1m30s') -> seconds."""
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration of whole seconds or minutes")
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def override(params: StackParams) -> dict[str, dict[str, Any]]:
    """service -> the compose keys the knobs set for it (cron's interval always, spelt out)."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in services().items():
        if spec.one_shot:
            continue
        entry: dict[str, Any] = {}
        own = health_intervals().get(name)
        if params.health_interval is not None and own is not None and params.health_interval > own:
            entry["healthcheck"] = {"interval": f"{params.health_interval}s"}
        if name == CRON_SERVICE:  # always: the entrypoint's own default is not the parameter's
            entry["environment"] = {"CRON_INTERVAL": str(params.cron_interval)}
        if name.startswith(WORKER_PREFIX) and not params.worker_gossip:
            entry["command"] = ["worker", *NO_GOSSIP]
        if entry:
            out[name] = entry
    return out


def merge(base: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Two service -> keys mappings into one (the limits' and the knobs'); nested mappings merge key by key."""
    out = {name: dict(keys) for name, keys in base.items()}
    for name, keys in extra.items():
        mine = out.setdefault(name, {})
        for key, value in keys.items():
            if isinstance(value, dict) and isinstance(mine.get(key), dict):
                mine[key] = {**mine[key], **value}
            else:
                mine[key] = value
    return out


__all__ = ["KNOBS", "NO_GOSSIP", "changed", "describe", "health_intervals", "knobs", "merge", "override", "stock"]
