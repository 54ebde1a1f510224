"""The test suite runs in its own world (tests/conftest.py), so it never touches a user's deployment.

The world is read from the environment at every use; a bad value stops a command with one line naming the variable.
On the stack, tests/test_stack.py shows a deployment in the default world (project pretix-lab, var/, ports
8443/8080) is the same, healthy deployment after the test world's faults and `lab down --volumes`.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.cli import main
from lab.common import world
from lab.stack import topology
from lab.stack.compose import Compose
from lab.stack.params import StackParams

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENV = {k: v for k, v in os.environ.items() if k not in world.WORLD_VARS}  # the cache stays shared


# --- the world comes from the environment -------------------------------------------------------------------------

def test_the_session_runs_in_a_world_of_its_own():
    assert world.project() == "pretix-lab-test" != world.DEFAULT_PROJECT
    assert world.var_dir() == ROOT / "var-test" and world.data_dir() == ROOT / "var-test" / "data"
    p = StackParams()
    assert (p.https_port, p.http_port) == (18443, 18080)
    default = StackParams(https_port=8443, http_port=8080, edge_subnet="10.213.0.0/24",
                          backend_subnet="10.214.0.0/24")
    for ours in (p.edge_subnet, p.backend_subnet):
        for theirs in (default.edge_subnet, default.backend_subnet):
            assert not ipaddress.ip_network(ours).overlaps(ipaddress.ip_network(theirs))
    command = Compose({}).command("ps")
    assert command[command.index("-p") + 1] == "pretix-lab-test"
    assert topology.project() == "pretix-lab-test"


def test_unset_variables_give_the_default_world(monkeypatch):
    for name in (*world.WORLD_VARS, world.CACHE_VAR):
        monkeypatch.delenv(name, raising=False)
    assert world.project() == "pretix-lab" and world.var_dir() == ROOT / "var"
    assert world.cache_dir() == ROOT / "var" / "cache"
    p = StackParams()
    assert (p.https_port, p.http_port, p.edge_subnet, p.backend_subnet) == (8443, 8080, "10.213.0.0/24",
                                                                            "10.214.0.0/24")
    assert Compose({}).command("ps")[2] == "pretix-lab"


def test_every_use_reads_the_current_world(monkeypatch):
    monkeypatch.setenv(world.PROJECT_VAR, "another-lab")
    monkeypatch.setenv(world.EDGE_SUBNET_VAR, "10.99.0.0/24")
    assert Compose({}).command("ps")[2] == "another-lab"
    assert StackParams().address(11) == "10.99.0.11"
    assert topology.project() == "another-lab"
    assert not hasattr(topology, "PROJECT")  # no name frozen at import time


@pytest.mark.parametrize("name,value,words", [
    ("PRETIX_LAB_PROJECT", "Pretix Lab", ["PRETIX_LAB_PROJECT", "lowercase letters, digits"]),
    ("PRETIX_LAB_PROJECT", "-lab", ["PRETIX_LAB_PROJECT", "starting with a letter or digit"]),
    ("PRETIX_LAB_HTTPS_PORT", "https", ["PRETIX_LAB_HTTPS_PORT", "1024 to 65535"]),
    ("PRETIX_LAB_HTTP_PORT", "80", ["PRETIX_LAB_HTTP_PORT", "1024 to 65535"]),
    ("PRETIX_LAB_HTTP_PORT", "18443", ["PRETIX_LAB_HTTPS_PORT", "PRETIX_LAB_HTTP_PORT", "must differ"]),
    ("PRETIX_LAB_EDGE_SUBNET", "8.8.8.0/24", ["PRETIX_LAB_EDGE_SUBNET", "private IPv4 network of /28 or larger"]),
    ("PRETIX_LAB_EDGE_SUBNET", "10.224.0.0/25", ["PRETIX_LAB_EDGE_SUBNET", "overlap"]),
    ("PRETIX_LAB_BACKEND_SUBNET", "10.214.0.0/26", ["PRETIX_LAB_BACKEND_SUBNET", "/25 or larger"]),
    ("PRETIX_LAB_VAR", str(ROOT / "pyproject.toml"), ["PRETIX_LAB_VAR", "must be a folder"]),
])
def test_a_bad_world_stops_every_command_with_one_line(monkeypatch, tmp_path, name, value, words):
    # a command that went on would write its secrets here
    result = CliRunner().invoke(main, ["up"], env={world.VAR_VAR: str(tmp_path / "var"), name: value})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "var").exists()
