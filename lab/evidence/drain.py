"""Wait, bounded, until pretix has worked off what a run left behind, before anything reads its results.

A saturated pretix keeps working for tens of seconds after the clients stop: requests whose clients gave up are
still being served (they become ghost orders), celery tasks are still queued, and its API answers slowly. An audit
that reads the database or pretix's availability API during that time either misses orders that are about to exist
or times out. So every read after a run waits here first; a stack that never drains within the bound is reported
(`Drain.drained` False, with what was still busy), never an exception: the caller records it and goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

DRAIN_TIMEOUT = 240.0  # seconds: the most a run's reads wait for pretix to drain
FAST_HEALTH = 0.5  # seconds: /healthcheck/ answering faster than this counts as fast
QUIET_IN_A_ROW = 3  # consecutive quiet checks (one a second) that mean drained

# Client backends of pretix's database doing something (a query, or a transaction left open between queries).
BUSY_SQL = ("select count(*) from pg_stat_activity where datname = 'pretix' and backend_type = 'client backend' "
            "and state <> 'idle' and pid <> pg_backend_pid()")


@dataclass
class Drain:
    """How the wait ended: drained or not, after how long, and what was still busy at the last check."""

    drained: bool
    seconds: float
    busy: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.drained:
            return f"pretix drained after {self.seconds:.0f} s"
        return f"pretix still busy after {self.seconds:.0f} s: {'; '.join(self.busy) or 'no check answered'}"


def health_busy(http: httpx.Client) -> str | None:
    """None when /healthcheck/ answers 200 fast, else what it did."""
    start = time.monotonic()
    try:
        status = http.get("/healthcheck/").status_code
    except httpx.HTTPError as error:
        return f"healthcheck: {type(error).__name__}"
    took = time.monotonic() - start
    if status != 200:
        return f"healthcheck: HTTP {status}"
    return None if took < FAST_HEALTH else f"healthcheck: {took:.1f} s"


def database_busy(docker_client) -> str | None:
    """None when no client backend of pretix's database is working, else how many are."""
    from lab.stack.sql import pretix_sql

    try:
        active = int(pretix_sql(docker_client, BUSY_SQL).strip() or 0)
    except Exception as error:  # noqa: BLE001 - an unreadable database is 'busy', reported with its reason
        return f"database: {str(error)[:120]}"
    return None if active == 0 else f"database: {active} request(s) in progress"


def celery_queued(docker_client) -> int:
    """Tasks waiting in celery's queues on whichever redis node is the master now (after a failover: the replica)."""
    from lab.evidence.monitor.names import CELERY_PRIORITY_SUFFIXES, CELERY_QUEUES
    from lab.stack.containers import project_containers

    lengths = " ".join(f"{q}{s}" for q in CELERY_QUEUES for s in CELERY_PRIORITY_SUFFIXES)
    script = ('export REDISCLI_AUTH="${REDIS_PASSWORD:-}"; '
              '[ "$(redis-cli --raw ROLE | head -n 1)" = master ] || exit 3; '
              f'for q in {lengths}; do redis-cli -n 1 --raw LLEN "$q"; done')
    for service in ("redis", "redis-replica"):
        for node in project_containers(docker_client, service):
            if node.status != "running":
                continue
            result = node.exec_run(["sh", "-c", script])
            if result.exit_code == 0:
                return sum(int(x) for x in (result.output or b"").decode().split() if x.isdigit())
    raise RuntimeError("no redis node answers as master")


def queue_busy(docker_client) -> str | None:
    try:
        queued = celery_queued(docker_client)
    except Exception as error:  # noqa: BLE001 - reported as busy, with its reason
        return f"celery: {str(error)[:120]}"
    return None if queued == 0 else f"celery: {queued} task(s) queued"


def wait_drained(access, docker_client=None, *, timeout: float = DRAIN_TIMEOUT, log: Callable[[str], None] = print,
                 interval: float = 1.0) -> Drain:
    """Wait until /healthcheck/ is fast, no database request is in progress and celery's queues are empty, each
    QUIET_IN_A_ROW times in a row, or until `timeout`. Without a docker client only the health check is used."""
    began = time.monotonic()
    quiet, busy = 0, ["not checked"]
    with httpx.Client(base_url=access.base_url, verify=access.tls(), timeout=10.0) as http:
        while True:
            busy = [b for b in (health_busy(http),
                                *((database_busy(docker_client), queue_busy(docker_client))
                                  if docker_client is not None else ())) if b]
            quiet = 0 if busy else quiet + 1
            if quiet >= QUIET_IN_A_ROW or time.monotonic() - began >= timeout:
                break
            time.sleep(interval)
    drain = Drain(quiet >= QUIET_IN_A_ROW, time.monotonic() - began, busy)
    if not drain.drained or drain.seconds > 5:
        log(("warning: " if not drain.drained else "") + drain.describe())
    return drain


def stack_gone(access, docker_client, *, timeout: float = DRAIN_TIMEOUT, log: Callable[[str], None] = print
               ) -> str | None:
    """Why the stack cannot take another run (a service's containers are gone, or pretix never answers its health
    check within `timeout`), or None when it can."""
    from lab.stack.containers import project_containers

    try:
        missing = sorted({c.labels.get("com.docker.compose.service", c.name) for c in project_containers(docker_client)
                          if c.status in ("removing", "dead")})
        if not project_containers(docker_client):
            return "no container of the stack exists"
    except Exception as error:  # noqa: BLE001 - the engine itself does not answer
        return f"the Docker engine does not answer: {error}"
    began = time.monotonic()
    with httpx.Client(base_url=access.base_url, verify=access.tls(), timeout=10.0) as http:
        while time.monotonic() - began < timeout:
            try:
                if http.get("/healthcheck/").status_code == 200:
                    return None
            except httpx.HTTPError:
                pass
            time.sleep(2.0)
    why = f"pretix did not answer its health check for {timeout:.0f} s"
    return why + (f" ({', '.join(missing)} dead)" if missing else "")


__all__ = ["DRAIN_TIMEOUT", "Drain", "celery_queued", "stack_gone", "wait_drained"]
