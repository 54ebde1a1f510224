"""The study's catalogue (event, products, quotas), made through pretix's REST API, idempotently."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from lab.errors import field_error
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


# --- customers ----------------------------------------------------------------------------------------

ARGON2_FLOOR_PER_S = 9.5  # measured here: customers with a password, 2 cores (Argon2id ~190 ms CPU each)
PLAIN_FLOOR_PER_S = 100.0  # without a password


class CustomerSeed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(default=3000, ge=1, le=200_000, description="fictitious customer accounts")
    login_pool: int = Field(default=200, ge=0, description="of them, buyers who get a password and log in")
    faker_seed: int = 2026
    concurrency: int = Field(default=8, ge=1, le=64)

    def model_post_init(self, _: object) -> None:
        if self.login_pool > self.count:
            raise field_error("login_pool", f"customers.login_pool={self.login_pool} exceeds customers.count="
                              f"{self.count}", (f"<= {self.count}",))


def fictitious_buyers(seed: CustomerSeed) -> list[tuple[str, str, bool]]:
    """(email, full name, gets a password) for every buyer: deterministic for a seed, Portuguese names."""
    from faker import Faker

    fake = Faker("pt_PT")
    fake.seed_instance(seed.faker_seed)
    out = []
    for i in range(seed.count):
        name = fake.name()
        local = fake.user_name()
        out.append((f"{local}.{i:06d}@pretix-lab.invalid", name, i < seed.login_pool))
    return out


def enable_customer_accounts(client: PretixClient) -> None:
    client.patch(client.org("settings/"), {"customer_accounts": True, "customer_accounts_native": True})


async def _create_customers(access, todo: list[tuple[str, str, bool]], password, concurrency: int,
                            progress) -> list[dict]:
    import asyncio

    import httpx

    made: list[dict] = []
    queue: asyncio.Queue = asyncio.Queue()
    for entry in todo:
        queue.put_nowait(entry)
    url = f"{access.base_url}/api/v1/organizers/{access.organizer}/customers/"
    headers = {"Authorization": f"Token {access.api_token}"}

    async def worker() -> None:
        async with httpx.AsyncClient(verify=access.tls(), headers=headers, timeout=60) as http:
            while not queue.empty():
                email, name, with_password = queue.get_nowait()
                body = {"email": email, "name_parts": {"_scheme": "full", "full_name": name},
                        "is_verified": True, "is_active": True, "locale": "pt-pt"}
                if with_password:
                    body["password"] = password(email)
                for attempt in range(4):
                    r = await http.post(url, json=body)
                    if r.status_code < 500 and r.status_code != 409:
                        break
                    await asyncio.sleep(0.5 * (attempt + 1))
                if r.status_code != 201:
                    raise RuntimeError(f"creating customer {email} failed: {r.status_code} {r.text[:300]}")
                made.append(r.json())
                progress(1)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return made


def ensure_customers(access, seed: CustomerSeed, secret: str, log=print, docker_client=None) -> tuple[list, dict]:
    """Create the missing fictitious customers (looked up by email first). Returns (buyers, figures).

    With a docker client, the stack's CPU seconds per customer are measured from the containers' cgroups,
    so the rate this machine allows (cores / CPU per customer) is computed in the same run.
    """
    import asyncio
    import os
    import time

    from tqdm.auto import tqdm

    from lab.pretix.buyers import Buyer, password_for
    from lab.stack.cpu import delta, process_seconds, stack_seconds

    wanted = fictitious_buyers(seed)
    with PretixClient(access) as client:
        enable_customer_accounts(client)
        existing = {c["email"]: c for c in client.paginate(client.org("customers/"))}
    todo = [w for w in wanted if w[0] not in existing]
    figures: dict = {"wanted": len(wanted), "existing": len(wanted) - len(todo), "created": len(todo)}
    for with_password in (True, False):
        batch = [w for w in todo if w[2] is with_password]
        if not batch:
            continue
        label = "with password" if with_password else "without password"
        start = time.monotonic()
        stack0 = stack_seconds(docker_client) if docker_client is not None else {}
        gen0 = process_seconds()
        with tqdm(total=len(batch), desc=f"customers {label}", unit="cust", mininterval=1) as bar:
            made = asyncio.run(_create_customers(
                access, batch, lambda e: password_for(secret, e), seed.concurrency, bar.update))
        elapsed = time.monotonic() - start
        floor = ARGON2_FLOOR_PER_S if with_password else PLAIN_FLOOR_PER_S
        rate = len(batch) / elapsed if elapsed > 0 else 0.0
        key = "password" if with_password else "plain"
        figures[f"{key}_rate_per_s"] = round(rate, 1)
        figures[f"{key}_rate_vs_floor"] = round(rate / floor, 2)
        line = (f"customers {label}: {len(batch)} in {elapsed:.1f}s = {rate:.1f}/s "
                f"({rate / floor:.0%} of the {floor}/s measured on this kind of machine without containers")
        if docker_client is not None:
            used = sum(delta(stack0, stack_seconds(docker_client)).values()) + process_seconds() - gen0
            allows = (os.cpu_count() or 1) / (used / len(batch)) if used > 0 else float("nan")
            figures[f"{key}_cpu_ms_per_customer"] = round(1000 * used / len(batch), 1)
            figures[f"{key}_machine_allows_per_s"] = round(allows, 1)
            figures[f"{key}_rate_vs_machine"] = round(rate / allows, 2)
            line += (f"; {1000 * used / len(batch):.0f} ms CPU each, so these {os.cpu_count()} cores allow "
                     f"{allows:.1f}/s: {rate / allows:.0%} of it")
        log(line + ")")
        existing.update({c["email"]: c for c in made})
    buyers = [Buyer(identifier=existing[e]["identifier"], email=e, name=n, has_password=p) for e, n, p in wanted]
    return buyers, figures
