"""The deployment's proof of life: one order through the proxy, found in the primary's database."""

from __future__ import annotations

import uuid

from lab.pretix.bootstrap import PretixAccess
from lab.pretix.client import PretixClient
from lab.pretix.seed import Catalogue, ensure_catalogue
from lab.stack.sql import pretix_sql


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
