"""Which deployment the lab works on (its "world"), read from the environment: the one place that lists them.

Two worlds on one Docker engine never share a container, network, volume, published port, subnet or secret, so the
test suite can run in its own world next to a user's deployment (tests/conftest.py sets the test world):

  PRETIX_LAB_PROJECT         compose project name: container, network and volume names, the project label
                             (default pretix-lab; lowercase letters, digits, '-' and '_', starting with a letter
                             or digit)
  PRETIX_LAB_VAR             machine-local state: deploy/ (this deployment's secrets, CA, tokens) and cache/
                             (default <repo>/var)
  PRETIX_LAB_CACHE           what survives deployments: base image tarball, migrated-database template, both keyed
                             by what they were made from, so worlds may share it (default $PRETIX_LAB_VAR/cache)
  PRETIX_LAB_DATA            run folders (default <repo>/data)
  PRETIX_LAB_REPORTS         published reports (default <repo>/reports)
  PRETIX_LAB_HTTPS_PORT      default https_port, published on 127.0.0.1 (default 8443)
  PRETIX_LAB_HTTP_PORT       default http_port, published on 127.0.0.1 (default 8080)
  PRETIX_LAB_EDGE_SUBNET     default edge_subnet (default 10.213.0.0/24)
  PRETIX_LAB_BACKEND_SUBNET  default backend_subnet (default 10.214.0.0/24)
  PRETIX_LAB_NODE_SUBNET     default node_subnet: the bridge network of the simulated swarm nodes (`lab up --engine
                             swarm`; default 10.215.0.0/24)

The ports and subnets are defaults: `lab up --https-port` and a params file still choose per deployment, and a
deployment's own choice (var/deploy/params.json) is what `lab down` and `lab status` use.
Every value is read when it is used, so a process sees the world its environment names; a bad value stops with one
line naming the variable and what is allowed (`WorldError`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from lab.errors import InputError

ROOT = Path(__file__).resolve().parents[2]

PROJECT_VAR = "PRETIX_LAB_PROJECT"
VAR_VAR = "PRETIX_LAB_VAR"
CACHE_VAR = "PRETIX_LAB_CACHE"
DATA_VAR = "PRETIX_LAB_DATA"
REPORTS_VAR = "PRETIX_LAB_REPORTS"
HTTPS_PORT_VAR = "PRETIX_LAB_HTTPS_PORT"
HTTP_PORT_VAR = "PRETIX_LAB_HTTP_PORT"
EDGE_SUBNET_VAR = "PRETIX_LAB_EDGE_SUBNET"
BACKEND_SUBNET_VAR = "PRETIX_LAB_BACKEND_SUBNET"
NODE_SUBNET_VAR = "PRETIX_LAB_NODE_SUBNET"

DEFAULT_PROJECT = "pretix-lab"
DEFAULT_HTTPS_PORT = 8443
DEFAULT_HTTP_PORT = 8080
DEFAULT_EDGE_SUBNET = "10.213.0.0/24"
DEFAULT_BACKEND_SUBNET = "10.214.0.0/24"
DEFAULT_NODE_SUBNET = "10.215.0.0/24"
NODE_LARGEST_PREFIX = 27  # the nodes have fixed addresses (.11 upwards)
PORT_MIN, PORT_MAX = 1024, 65535
EDGE_LARGEST_PREFIX = 28  # the proxy and the web instances have fixed addresses
BACKEND_LARGEST_PREFIX = 25  # redis and its sentinels have fixed addresses in the lower half

# Every variable that chooses a world: what a caller strips to reach the default world (the cache is shared).
WORLD_VARS = (PROJECT_VAR, VAR_VAR, DATA_VAR, REPORTS_VAR, HTTPS_PORT_VAR, HTTP_PORT_VAR, EDGE_SUBNET_VAR,
              BACKEND_SUBNET_VAR, NODE_SUBNET_VAR)

_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # what compose accepts as a project name


class WorldError(InputError):
    """An environment variable names an impossible world; the message names it and what is allowed (exit 2)."""


def _get(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def project() -> str:
    """The compose project: every container, network and volume of the deployment carries its name."""
    value = _get(PROJECT_VAR) or DEFAULT_PROJECT
    if not _PROJECT_NAME.match(value):
        raise WorldError(f"{PROJECT_VAR}={value!r}: a compose project name is lowercase letters, digits, '-' and "
                         f"'_', starting with a letter or digit (default {DEFAULT_PROJECT})")
    return value


def _folder(name: str, default: Path) -> Path:
    path = Path(_get(name) or default)
    if path.exists() and not path.is_dir():
        raise WorldError(f"{name}={str(path)!r}: must be a folder (or not exist yet), not a file")
    return path.absolute()


def var_dir() -> Path:
    return _folder(VAR_VAR, ROOT / "var")


def cache_dir() -> Path:
    return _folder(CACHE_VAR, var_dir() / "cache")


def data_dir() -> Path:
    return _folder(DATA_VAR, ROOT / "data")


def reports_dir() -> Path:
    return _folder(REPORTS_VAR, ROOT / "reports")


def check_port(value: int) -> int:
    if not PORT_MIN <= value <= PORT_MAX:
        raise ValueError(f"must be a port number from {PORT_MIN} to {PORT_MAX}")
    return value


def check_subnet(value: str, largest_prefix: int, example: str, why: str = "") -> str:
    """A private IPv4 network of /largest_prefix or larger, in canonical form (the rule of both networks)."""
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        net = None
    if net is None or net.version != 4 or not net.is_private or net.prefixlen > largest_prefix:
        raise ValueError(f"must be a private IPv4 network of /{largest_prefix} or larger, e.g. {example}{why}")
    return str(net)


BACKEND_WHY = " (the fixed addresses of redis and its sentinels need the lower half)"


def _port(name: str, default: int) -> int:
    raw = _get(name)
    if raw is None:
        return default
    try:
        return check_port(int(raw))
    except ValueError:
        raise WorldError(f"{name}={raw!r}: must be a port number from {PORT_MIN} to {PORT_MAX} "
                         f"(default {default})") from None


def _subnet(name: str, default: str, largest_prefix: int, why: str = "") -> str:
    raw = _get(name)
    if raw is None:
        return default
    try:
        return check_subnet(raw, largest_prefix, default, why)
    except ValueError as error:
        raise WorldError(f"{name}={raw!r}: {error} (default {default})") from None


def https_port() -> int:
    return _port(HTTPS_PORT_VAR, DEFAULT_HTTPS_PORT)


def http_port() -> int:
    return _port(HTTP_PORT_VAR, DEFAULT_HTTP_PORT)


def edge_subnet() -> str:
    return _subnet(EDGE_SUBNET_VAR, DEFAULT_EDGE_SUBNET, EDGE_LARGEST_PREFIX)


def backend_subnet() -> str:
    return _subnet(BACKEND_SUBNET_VAR, DEFAULT_BACKEND_SUBNET, BACKEND_LARGEST_PREFIX, BACKEND_WHY)


def node_subnet() -> str:
    return _subnet(NODE_SUBNET_VAR, DEFAULT_NODE_SUBNET, NODE_LARGEST_PREFIX)


def check() -> None:
    """Read every variable once, so a bad one stops a command before it does anything."""
    project()
    for folder in (var_dir, cache_dir, data_dir, reports_dir):
        folder()
    if https_port() == http_port():
        raise WorldError(f"{HTTPS_PORT_VAR} and {HTTP_PORT_VAR} are both {https_port()}: they must differ")
    if ipaddress.ip_network(edge_subnet()).overlaps(ipaddress.ip_network(backend_subnet())):
        raise WorldError(f"{EDGE_SUBNET_VAR}={edge_subnet()} and {BACKEND_SUBNET_VAR}={backend_subnet()} overlap: "
                         "choose two networks that do not")
    node_subnet()


def describe() -> str:
    return (f"project {project()}, var {var_dir()}, ports https {https_port()} / http {http_port()}, "
            f"subnets edge {edge_subnet()} / backend {backend_subnet()}")
