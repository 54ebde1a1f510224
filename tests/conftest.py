"""Shared fixtures. Stack tests deploy the real stack once per session and remove it at the end."""

from __future__ import annotations

import os

import pytest

from lab.stack import deploy
from lab.stack.engine import ensure_engine
from lab.stack.params import StackParams


def pytest_collection_modifyitems(config, items):
    """Tests marked `teardown` consume the session's stack: run them after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("teardown") is not None)


@pytest.fixture(scope="session")
def docker_client():
    return ensure_engine()


@pytest.fixture(scope="session")
def stack(docker_client):
    """A full `lab up` (real engine, real images); torn down with its volumes afterwards."""
    report = deploy.up(StackParams(), log=print)
    print(report.describe())
    yield report
    if not os.environ.get("PRETIX_LAB_KEEP_STACK"):
        deploy.down(volumes=True)
