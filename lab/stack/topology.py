"""Reads stack/compose.yaml, the one description of services, so nothing else keeps a second list."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from lab.common.paths import COMPOSE_FILE
from lab.common.world import project

__all__ = ["ServiceSpec", "long_running", "project", "services"]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    image: str
    one_shot: bool
    default_cpus: float | None
    default_memory: str | None


@lru_cache(maxsize=4)
def services(compose_file: Path = COMPOSE_FILE) -> dict[str, ServiceSpec]:
    """Every service of the topology with its default limits, in file order."""
    doc = yaml.safe_load(compose_file.read_text())
    found: dict[str, ServiceSpec] = {}
    for name, spec in doc["services"].items():
        limits = (spec.get("deploy") or {}).get("resources", {}).get("limits", {})
        cpus = limits.get("cpus")
        found[name] = ServiceSpec(
            name=name,
            image=spec["image"],
            one_shot=bool(spec.get("profiles")),
            default_cpus=float(cpus) if cpus is not None else None,
            default_memory=limits.get("memory"),
        )
    return found


def long_running() -> list[str]:
    """Services that stay up (one-shot jobs excluded)."""
    return [s.name for s in services().values() if not s.one_shot]
