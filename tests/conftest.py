"""Shared fixtures. Stack tests deploy the real stack once per session and remove it at the end.

The whole session runs in the test world (TEST_WORLD, set below before anything imports lab): its own compose
project, var folder, ports and subnets, so `make test` never stops, wipes or reads a user's deployment (the one
`lab up` made in the default world: project pretix-lab, var/, ports 8443/8080). Only the cache (base image tarball,
migrated-database template; keyed by what made them) is the user's, as the images are. To look at a stack a
session kept (PRETIX_LAB_KEEP_STACK=1): PRETIX_LAB_PROJECT=pretix-lab-test PRETIX_LAB_VAR=var-test lab status.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the user's world, before the session changes it: the cache is shared, everything else is the test world's own
USER_CACHE = os.environ.get("PRETIX_LAB_CACHE") or str(Path(os.environ.get("PRETIX_LAB_VAR") or ROOT / "var") / "cache")
TEST_WORLD = {
    "PRETIX_LAB_PROJECT": "pretix-lab-test",
    "PRETIX_LAB_VAR": str(ROOT / "var-test"),
    "PRETIX_LAB_CACHE": USER_CACHE,
    "PRETIX_LAB_DATA": str(ROOT / "var-test" / "data"),
    "PRETIX_LAB_REPORTS": str(ROOT / "var-test" / "reports"),
    "PRETIX_LAB_HTTPS_PORT": "18443",
    "PRETIX_LAB_HTTP_PORT": "18080",
    "PRETIX_LAB_EDGE_SUBNET": "10.223.0.0/24",
    "PRETIX_LAB_BACKEND_SUBNET": "10.224.0.0/24",
}
os.environ.update(TEST_WORLD)

import pytest  # noqa: E402 - lab reads its world from the environment set above

from lab.common import world  # noqa: E402
from lab.experiments.context import LabContext  # noqa: E402
from lab.pretix.seed import CustomerSeed  # noqa: E402
from lab.stack import deploy  # noqa: E402
from lab.stack.engine import ensure_engine  # noqa: E402
from lab.stack.params import StackParams  # noqa: E402


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
    """A full `lab up` in the test world (real engine, real images); torn down with its volumes afterwards."""
    print(f"test world: {world.describe()}")
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
