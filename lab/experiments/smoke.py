"""The deployment's proof of life: one order through the proxy, found in the primary's database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from lab.common.paths import deploy_dir, reports_dir, utc_stamp
from lab.errors import InputError
from lab.pretix.bootstrap import PretixAccess
from lab.pretix.client import PretixClient
from lab.pretix.seed import Catalogue, ensure_catalogue
from lab.stack.containers import project_containers
from lab.stack.sql import pretix_sql
from lab.stack.topology import project


def primary_sql(client, query: str) -> str:
    """Run one read-only query on the PostgreSQL primary's pretix database."""
    return pretix_sql(client, query)


def place_one_order(access: PretixAccess) -> dict:
    """Seed a tiny catalogue and buy one ticket with an idempotency key; return the order."""
    cat = Catalogue()
    with PretixClient(access) as api:
        made = ensure_catalogue(api, cat)
        item = made[cat.products[0].name]["item"]
        key = str(uuid.uuid4())
        response = api.request(
            "POST", api.event(cat.slug, "orders/"),
            json={"email": "comprador@pretix-lab.invalid", "locale": "pt-pt",
                  "positions": [{"item": item}]},
            headers={"X-Idempotency-Key": key},
        )
        order = response.json()
        order["_served_by"] = response.headers.get("x-upstream-instance", "?")
        return order


@dataclass
class SmokeResult:
    lines: list[str]
    found: bool
    code: str
    report: Path


def existing_deployment(client=None) -> list[str]:
    """What of an earlier deployment exists: its secrets folder, its project's containers (empty: nothing).

    The secrets are looked at first, so a deployment made with `lab up` is found without asking the engine."""
    found = []
    secrets = deploy_dir() / "secrets.json"
    if secrets.exists():
        found.append(f"the deployment folder {secrets.parent} (its secrets)")
    if client is not None:
        names = [c.name for c in project_containers(client)]
        if names:
            found.append(f"{len(names)} container(s) of project {project()} ({', '.join(sorted(names)[:3])}, ...)")
    return found


def refuse_existing(force: bool, client=None) -> None:
    """`lab smoke` deploys and tears down with volumes: it touches an existing deployment only with --force."""
    if force:
        return
    found = existing_deployment(client)
    if found:
        raise InputError.of("smoke", "--force", "an existing deployment would be replaced and its data and secrets "
                            f"removed: {'; '.join(found)}; give --force to do it, or `lab down --volumes` first",
                            ("--force",))


def run_smoke(*, keep: bool = False, force: bool = False, log=print) -> SmokeResult:
    """Deploy the default stack, place one order through the proxy, check it in PostgreSQL, tear down (unless
    `keep`), and write reports/smoke-<stamp>.txt. Refuses an existing deployment unless `force`."""
    from lab.stack import deploy, params
    from lab.stack.engine import ensure_engine

    refuse_existing(force)  # before the engine is asked anything
    client = ensure_engine(log=log)
    refuse_existing(force, client)
    report = deploy.up(params.StackParams(), log=log)
    lines = [report.describe()]
    code, found = "-", False
    try:
        order = place_one_order(report.access)
        code = order["code"]
        found = primary_sql(client, f"select count(*) from pretixbase_order where code = '{code}'") == "1"
        lines.append(f"order {code} (status {order['status']}) placed through the proxy over verified HTTPS, "
                     f"served by {order['_served_by']}; in the primary's database: {found}")
        lines += [f"  {r.service:18} {r.state:8} {r.health:8} cpu {r.cpu_percent}% mem {r.memory_mib} MiB"
                  for r in deploy.status()]
    finally:
        if not keep:
            deploy.down(volumes=True, log=log)
            lines.append("stack removed with its volumes")
    out = reports_dir() / f"smoke-{utc_stamp()}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return SmokeResult(lines, found, code, out)
