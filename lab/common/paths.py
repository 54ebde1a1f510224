"""Where the lab keeps things: one place, so nothing else hard-codes a path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from lab.common import world
from lab.common.world import ROOT

STACK_DIR = ROOT / "stack"
COMPOSE_FILE = STACK_DIR / "compose.yaml"
IMAGES_DIR = STACK_DIR / "images"
CONFIG_DIR = STACK_DIR / "config"


def var_dir() -> Path:
    """Machine-local state (git-ignored); PRETIX_LAB_VAR moves it, e.g. for tests (lab/common/world.py)."""
    return world.var_dir()


def deploy_dir() -> Path:
    """Per-deployment secrets, CA and tokens: created by `lab up`, removed by `lab down --volumes`."""
    return var_dir() / "deploy"


def cache_dir() -> Path:
    """Survives deployments: base image tarball, migrated-database template (PRETIX_LAB_CACHE may share it)."""
    return world.cache_dir()


def data_dir() -> Path:
    """Run folders (raw, immutable measurement data)."""
    return world.data_dir()


def reports_dir() -> Path:
    return world.reports_dir()


def utc_stamp() -> str:
    """The current UTC second as 20250131T120000Z: the one prefix of run ids and bench names, so they sort by time."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def bench_path(name: str) -> Path:
    """data/bench/<stamp>-<name>: where every bench and capacity search puts its figures (file or folder)."""
    return data_dir() / "bench" / f"{utc_stamp()}-{name}"
