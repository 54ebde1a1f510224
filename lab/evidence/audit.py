"""Audit a run: hold the client's history against what PostgreSQL and pretix say, write audit.json."""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd

from lab.errors import LabError
from lab.evidence.audit_rules import (
    WINDOW_BEFORE,
    AuditResult,
    AuditWindow,
    audit_state,
    missing_attempts,
    read_audit,
    run_orders,
    write_audit,
)
from lab.evidence.drain import DRAIN_TIMEOUT, wait_drained
from lab.evidence.runfolder import RunFolder
from lab.load.recorder import read_attempts
from lab.pretix.bootstrap import PretixAccess
from lab.pretix.client import PretixClient

T = TypeVar("T")


def query_frame(docker_client, sql: str, service: str = "postgres-primary",
                text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A query's result as a DataFrame, via psql in the database container (no port is published).
    `text_columns` are read as text whatever they look like (an order code or customer id may be all digits)."""
    from lab.stack.containers import container, docker_cli

    node = container(docker_client, service)
    out = subprocess.run(
        [*docker_cli(node), "exec", node.id, "psql", "-U", "postgres", "-d", "pretix", "-v", "ON_ERROR_STOP=1",
         "-c", f"COPY ({sql}) TO STDOUT WITH CSV HEADER"],
        check=True, capture_output=True, text=True,
    )
    return pd.read_csv(io.StringIO(out.stdout), keep_default_na=True, dtype=dict.fromkeys(text_columns, str))


def _event_filter(organizer: str, event: str) -> str:
    return (f"e.slug = '{event}' and e.organizer_id = (select id from pretixbase_organizer "
            f"where slug = '{organizer}')")


ORDER_TEXT = ("code", "status", "comment", "email", "internal_reference", "customer")


def database_state(docker_client, organizer: str, event: str, since: float | None = None,
                   until: float | None = None, attempts: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Orders, positions and quotas of one event.

    `orders` are the run's (`run_orders`): those created in [since, until] (either bound optional) plus, whenever
    created, those tagged by one of `attempts` or carrying an order code an attempt recorded; linked to the
    attempts. `all_orders` are all of the event's (they all hold its quotas). Orders carry the customer's
    identifier (`customer`, null for a guest) and their creation time (`created`, epoch seconds); positions their
    item and whether they were canceled."""
    where = _event_filter(organizer, event)
    all_orders = query_frame(docker_client, (
        "select o.code, o.status, o.comment, o.email, ia.internal_reference, c.identifier as customer, "
        "extract(epoch from o.datetime) as created from pretixbase_order o "
        "join pretixbase_event e on e.id = o.event_id "
        "left join pretixbase_invoiceaddress ia on ia.order_id = o.id "
        "left join pretixbase_customer c on c.id = o.customer_id "
        f"where {where}"), text_columns=ORDER_TEXT)
    if attempts is None:
        attempts = pd.DataFrame(columns=["attempt_id", "order_code"])
    orders = run_orders(all_orders, attempts, since, until)
    positions = query_frame(docker_client, (
        "select o.code as order_code, p.item_id, p.canceled, o.status "
        "from pretixbase_orderposition p join pretixbase_order o on o.id = p.order_id "
        f"join pretixbase_event e on e.id = o.event_id where {where}"), text_columns=("order_code", "status"))
    quotas = query_frame(docker_client, (
        "select q.id as quota_id, q.size, q.name, string_agg(qi.item_id::text, ' ') as items "
        "from pretixbase_quota q join pretixbase_event e on e.id = q.event_id "
        "left join pretixbase_quota_items qi on qi.quota_id = q.id "
        f"where {where} group by q.id, q.size, q.name"))
    quotas["items"] = quotas["items"].fillna("").map(lambda s: [int(x) for x in str(s).split()])
    quotas["size"] = quotas["size"].astype("Int64")
    return {"orders": orders, "all_orders": all_orders, "positions": positions, "quotas": quotas}


# An audit that starts later than this after the run's end closes the window at the run's end plus this (the
# longest drain, plus a minute for the logs saved in between): auditing a run late gives the same window each time.
LATE_TAIL = DRAIN_TIMEOUT + 60.0


def run_window(attempts: pd.DataFrame, meta: dict | None, *, drain_end: float | None = None,
               previous: AuditWindow | None = None, since: float | None = None, until: float | None = None
               ) -> AuditWindow:
    """The run's own window of creation times for untagged orders.

    An earlier audit's window (`previous`, from its audit.json) is re-used as it is, so auditing again gives the
    same answer unless the run's own orders changed; `until` overrides the end. Otherwise it opens WINDOW_BEFORE
    seconds before the first scheduled attempt (no attempts: before run.json's `started`; neither: `since`) and
    closes at the end of the drain that followed the run (`drain_end`), or at the run's end + LATE_TAIL when the
    audit comes later than that."""
    if previous is not None and until is None:
        return previous
    scheduled = pd.to_numeric(attempts["scheduled"], errors="coerce").dropna() if "scheduled" in attempts else None
    meta = meta or {}
    if scheduled is not None and len(scheduled):
        start: float | None = float(scheduled.min()) - WINDOW_BEFORE
    elif meta.get("started") is not None:
        start = float(meta["started"]) - WINDOW_BEFORE
    else:
        start = since
    if until is not None:
        return AuditWindow(start=start, end=until, end_from="given")
    run_end = meta.get("ended")
    if run_end is None and len(attempts):
        stamps = pd.concat([pd.to_numeric(attempts[c], errors="coerce") for c in ("scheduled", "end")
                            if c in attempts]).dropna()
        run_end = float(stamps.max()) if len(stamps) else None
    if run_end is None:
        return AuditWindow(start=start, end=drain_end, end_from="drain")
    run_end = float(run_end)
    if drain_end is None or drain_end > run_end + LATE_TAIL:
        return AuditWindow(start=start, end=run_end + LATE_TAIL, end_from="run end + tail")
    return AuditWindow(start=start, end=drain_end, end_from="drain")


AVAILABILITY_TIMEOUT = 30.0  # seconds one availability read may take (a busy pretix answers slowly)


def availability(access: PretixAccess, event: str, quota_ids: list[int]) -> pd.DataFrame:
    """pretix's own answer per quota, to check it against the positions in the database."""
    rows = []
    with PretixClient(access, timeout=AVAILABILITY_TIMEOUT) as client:
        for quota_id in quota_ids:
            doc = client.get(client.event(event, f"quotas/{quota_id}/availability/"))
            rows.append({"quota_id": quota_id, "available": doc["available"],
                         "available_number": doc.get("available_number")})
    return pd.DataFrame(rows)


READ_TRIES = 4  # a read after a run is tried this often (waiting 2, 4, 8 s between) before it counts as failed


def read_with_retries(read: Callable[[], T], what: str, *, tries: int = READ_TRIES, log=print,
                      pause: float = 2.0) -> T:
    """`read()`, retried on any error (a busy pretix times out, a container may be restarting); the last error is
    raised with `what` in front, for the caller to record."""
    for attempt in range(1, tries + 1):
        try:
            return read()
        except Exception as error:  # noqa: BLE001 - every read error is transient until the tries run out
            if attempt == tries:
                raise AuditReadError(f"{what}: {type(error).__name__}: {str(error)[:300]}") from error
            log(f"  {what} failed ({type(error).__name__}); try {attempt + 1} of {tries} in {pause:.0f} s")
            time.sleep(pause)
            pause *= 2
    raise AssertionError("unreachable")


class AuditReadError(LabError, RuntimeError):
    """A read the audit needs kept failing: the audit is recorded as incomplete, naming it."""


def audit_run(run_dir: Path, docker_client, access: PretixAccess, organizer: str, event: str,
              since: float | None = None, overwrite: bool = False, drain_timeout: float = DRAIN_TIMEOUT,
              log=print, until: float | None = None) -> AuditResult:
    """Every rule over the run's attempts and the database; the result is written to audit.json.

    A run whose attempts are missing while run.json says attempts were launched is refused (recorded as
    `incomplete`, never clean): there is no history to hold the database to. Otherwise first waits (bounded) for
    pretix to drain, then reads with retries. A read that still fails does not raise: audit.json records
    `incomplete` with the reason (and whatever could be checked), so the study goes on.

    The orders audited are the run's own (`run_window`): untagged orders created in its window plus its tagged
    ones whenever made. The window is recorded in audit.json and re-used when the run is audited again (`until`
    overrides its end); `since` only opens it for a run with neither attempts nor run.json."""
    run_dir = Path(run_dir)
    meta = _run_meta(run_dir)
    attempts = read_attempts(run_dir)
    refused = missing_attempts(meta, attempts)
    if refused is not None:
        result = AuditResult.unreadable(refused)
        write_audit(result, run_dir, overwrite=overwrite)
        return result
    previous = _recorded_window(run_dir)
    notes = []
    drain = wait_drained(access, docker_client, timeout=drain_timeout, log=log)
    if not drain.drained:
        notes.append(f"read before pretix drained ({drain.describe()}): orders may still have appeared later")
    window = run_window(attempts, meta, drain_end=time.time(), previous=previous, since=since, until=until)
    try:
        state = read_with_retries(lambda: database_state(docker_client, organizer, event), "database", log=log)
    except AuditReadError as error:
        result = AuditResult.unreadable(str(error), notes, window)
        write_audit(result, run_dir, overwrite=overwrite)
        return result
    incomplete = None
    try:
        avail = read_with_retries(lambda: availability(access, event, state["quotas"]["quota_id"].tolist()),
                                  "availability", log=log)
    except AuditReadError as error:
        avail, incomplete = None, str(error)
    result = audit_state(attempts, state["all_orders"], _positions_holding(state), state["quotas"], avail, window,
                         incomplete=incomplete, notes=notes)
    write_audit(result, run_dir, overwrite=overwrite)
    return result


def _run_meta(run_dir: Path) -> dict | None:
    """run.json, or None when it is missing or unreadable (a run driven without `lab.experiments.run.execute`)."""
    try:
        return load_run_meta(run_dir)
    except (OSError, ValueError):
        return None


def _recorded_window(run_dir: Path) -> AuditWindow | None:
    """The window an earlier audit of this run recorded, if any."""
    if not RunFolder(run_dir).audit_path.exists():
        return None
    try:
        return read_audit(run_dir).window
    except (OSError, ValueError):
        return None


def _positions_holding(state: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Positions with their order's status, for quota usage across all of the event's orders."""
    positions = state["positions"].copy()
    positions["canceled"] = positions["canceled"].astype(str).str.lower().isin(["t", "true"])
    return positions


def load_run_meta(run_dir: Path) -> dict:
    """run.json (lab.evidence.runfolder: RunSchemaError for a schema newer than this code reads)."""
    if not (Path(run_dir) / RunFolder.META).is_file():
        from lab.analysis.study import NotARunFolder

        raise NotARunFolder(f"{run_dir} is not a run folder (no {RunFolder.META})")
    return RunFolder(run_dir).read_meta()
