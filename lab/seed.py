"""The study's catalogue (event, products, quotas), made through pretix's REST API, idempotently."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from lab.pretix.client import PretixClient


class Product(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    price: Decimal = Field(ge=0)
    quota: int = Field(ge=1, le=10_000_000, description="tickets of this product that may be sold")


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = Field(default="techpt26", pattern=r"^[a-z0-9][a-z0-9-]{1,49}$")
    name: str = "Cimeira Tech Portugal 2026"
    location: str = "Lisboa"
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    days_ahead: int = Field(default=120, ge=1)
    products: list[Product] = Field(default_factory=lambda: [
        Product(name="Bilhete Geral", price=Decimal("95.00"), quota=60_000),
        Product(name="Estudante", price=Decimal("35.00"), quota=10_000),
        Product(name="VIP", price=Decimal("450.00"), quota=500),
        Product(name="Workshop: IA na Prática", price=Decimal("60.00"), quota=300),
    ], min_length=1)


def _by_name(objects: list[dict], name: str) -> dict | None:
    for obj in objects:
        names = obj.get("name") or {}
        if name in (names.values() if isinstance(names, dict) else [names]):
            return obj
    return None


def ensure_catalogue(client: PretixClient, cat: Catalogue) -> dict[str, dict]:
    """Event, items and quotas as declared; re-running changes nothing that exists. Returns name -> ids."""
    existing = {e["slug"]: e for e in client.paginate(client.org("events/"))}
    event = existing.get(cat.slug)
    if event is None:
        start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=cat.days_ahead)).replace(
            hour=9, minute=0, second=0, microsecond=0)
        event = client.post(client.org("events/"), {
            "name": {"pt-pt": cat.name, "en": cat.name}, "slug": cat.slug, "currency": cat.currency,
            "date_from": start.isoformat(), "date_to": (start + dt.timedelta(days=3)).isoformat(),
            "location": {"pt-pt": cat.location, "en": cat.location}, "live": False,
            "is_public": True, "plugins": ["pretix.plugins.manualpayment"],
        })
        # Portuguese first: the shop speaks to the Portuguese tech community.
        client.patch(client.event(cat.slug, "settings/"), {"locales": ["pt-pt", "en"], "locale": "pt-pt"})
    items = list(client.paginate(client.event(cat.slug, "items/")))
    quotas = list(client.paginate(client.event(cat.slug, "quotas/")))
    made: dict[str, dict] = {}
    for product in cat.products:
        item = _by_name(items, product.name)
        if item is None:
            item = client.post(client.event(cat.slug, "items/"), {
                "name": {"pt-pt": product.name, "en": product.name},
                "default_price": str(product.price), "admission": True, "active": True,
            })
        quota = _by_name(quotas, product.name)
        if quota is None:
            quota = client.post(client.event(cat.slug, "quotas/"), {
                "name": product.name, "size": product.quota, "items": [item["id"]],
            })
        made[product.name] = {"item": item["id"], "quota": quota["id"], "size": quota["size"]}
    if not event.get("live"):
        client.patch(client.event(cat.slug), {"live": True})
    return made
