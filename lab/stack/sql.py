"""SQL on the stack's PostgreSQL nodes through `docker exec` (no database port is published)."""

from __future__ import annotations

from typing import Any

SOCKET = "/var/run/postgresql"


def psql(container: Any, sql: str, database: str = "postgres") -> str:
    """One statement as the postgres superuser over the local socket (peer auth for root; no password)."""
    result = container.exec_run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", SOCKET, "-U", "postgres",
                                 "-d", database, "-c", sql])
    text = (result.output or b"").decode(errors="replace").strip()
    if result.exit_code != 0:
        raise RuntimeError(f"psql on {container.name} failed ({result.exit_code}): {text[-500:]}")
    return text


def pretix_sql(docker_client: Any, sql: str, service: str = "postgres-primary") -> str:
    """A statement on pretix's database of one node (by compose service)."""
    from lab.stack.containers import container

    return psql(container(docker_client, service), sql, "pretix")
