"""Shared fixtures. Stack tests deploy the real stack once per session and remove it at the end."""

from __future__ import annotations

import os

import pytest

from lab.experiments.context import LabContext
from lab.pretix.seed import CustomerSeed
from lab.stack import deploy
from lab.stack.engine import ensure_engine
from lab.stack.params import StackParams


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """A test that needs the deployed stack (directly or through ctx, buyers, ...) is a stack test whether or not it
    says so, so `-m "not stack"` never deploys; tests marked `teardown` consume the session's stack: run them after
    everything else. Runs before pytest's own -m selection (tryfirst)."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()) and item.get_closest_marker("stack") is None:
            item.add_marker(pytest.mark.stack)
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


@pytest.fixture(scope="module")
def ctx(stack):
    """The deployment's access (API token, CA), read again per module: teardown tests redeploy."""
    return LabContext.load()


@pytest.fixture(scope="module")
def buyers(ctx):
    """The session's one seed shape: a buyer created without a password can never get one (API: on create only),
    so every module asks for the same customers."""
    first, _ = ctx.customers(CustomerSeed(count=300, login_pool=10, concurrency=8))
    return first
