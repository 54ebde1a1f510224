"""Audit a run: hold the client's history against what PostgreSQL and pretix say, write audit.json."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pandas as pd

from lab.audit_rules import AuditResult, audit, link_orders, write_audit
from lab.load.recorder import read_attempts
from lab.pretix.bootstrap import PretixAccess
from lab.pretix.client import PretixClient


def query_frame(docker_client, sql: str, service: str = "postgres-primary") -> pd.DataFrame:
    """A query's result as a DataFrame, via psql in the database container (no port is published)."""
    from lab.stack.deploy import container

    node = container(docker_client, service)
    out = subprocess.run(
        ["docker", "exec", node.id, "psql", "-U", "postgres", "-d", "pretix", "-v", "ON_ERROR_STOP=1",
         "-c", f"COPY ({sql}) TO STDOUT WITH CSV HEADER"],
        check=True, capture_output=True, text=True,
    )
    return pd.read_csv(io.StringIO(out.stdout), keep_default_na=True)


def _event_filter(organizer: str, event: str) -> str:
    return (f"e.slug = '{event}' and e.organizer_id = (select id from pretixbase_organizer "
            f"where slug = '{organizer}')")


def database_state(docker_client, organizer: str, event: str, since: float | None = None) -> dict[str, pd.DataFrame]:
    """Orders (of the run's window when `since` is given), positions and quotas of one event."""
    where = _event_filter(organizer, event)
    all_orders = query_frame(docker_client, (
        "select o.code, o.status, o.comment, o.email, ia.internal_reference, "
        "extract(epoch from o.datetime) as created from pretixbase_order o "
        "join pretixbase_event e on e.id = o.event_id "
        "left join pretixbase_invoiceaddress ia on ia.order_id = o.id "
        f"where {where}"))
    orders = all_orders[all_orders["created"] >= since].reset_index(drop=True) if since else all_orders
    positions = query_frame(docker_client, (
        "select o.code as order_code, p.item_id, p.canceled, o.status "
        "from pretixbase_orderposition p join pretixbase_order o on o.id = p.order_id "
        f"join pretixbase_event e on e.id = o.event_id where {where}"))
    quotas = query_frame(docker_client, (
        "select q.id as quota_id, q.size, q.name, string_agg(qi.item_id::text, ' ') as items "
        "from pretixbase_quota q join pretixbase_event e on e.id = q.event_id "
        "left join pretixbase_quota_items qi on qi.quota_id = q.id "
        f"where {where} group by q.id, q.size, q.name"))
    quotas["items"] = quotas["items"].fillna("").map(lambda s: [int(x) for x in str(s).split()])
    quotas["size"] = quotas["size"].astype("Int64")
    return {"orders": orders, "all_orders": all_orders, "positions": positions, "quotas": quotas}


def availability(access: PretixAccess, event: str, quota_ids: list[int]) -> pd.DataFrame:
    """pretix's own answer per quota, to check it against the positions in the database."""
    rows = []
    with PretixClient(access) as client:
        for quota_id in quota_ids:
            doc = client.get(client.event(event, f"quotas/{quota_id}/availability/"))
            rows.append({"quota_id": quota_id, "available": doc["available"],
                         "available_number": doc.get("available_number")})
    return pd.DataFrame(rows)


def audit_run(run_dir: Path, docker_client, access: PretixAccess, organizer: str, event: str,
              since: float | None = None, overwrite: bool = False) -> AuditResult:
    """Every rule over the run's attempts and the database; the result is written to audit.json."""
    attempts = read_attempts(run_dir)
    state = database_state(docker_client, organizer, event, since)
    orders = link_orders(state["orders"], attempts["attempt_id"]) if len(attempts) else state["orders"]
    avail = availability(access, event, state["quotas"]["quota_id"].tolist())
    result = audit(attempts, orders, _positions_holding(state), state["quotas"], avail,
                   quota_orders=state["all_orders"])
    write_audit(result, run_dir, overwrite=overwrite)
    return result


def _positions_holding(state: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Positions with their order's status, for quota usage across all of the event's orders."""
    positions = state["positions"].copy()
    positions["canceled"] = positions["canceled"].astype(str).str.lower().isin(["t", "true"])
    return positions


def load_run_meta(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())
