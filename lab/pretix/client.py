"""A small typed client for pretix's REST API: token auth, verified TLS, pagination, idempotent lookups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from lab.errors import LabError
from lab.pretix.bootstrap import PretixAccess


class PretixAPIError(LabError, RuntimeError):
    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        self.body = response.text[:2000]
        super().__init__(f"{response.request.method} {response.request.url.path} -> {response.status_code}: "
                         f"{self.body}")


class PretixClient:
    """Synchronous client for set-up work (seeding, audits); load uses its own async clients."""

    def __init__(self, access: PretixAccess, timeout: float = 30.0):
        self.access = access
        self.organizer = access.organizer
        self.http = httpx.Client(
            base_url=f"{access.base_url}/api/v1/",
            headers={"Authorization": f"Token {access.api_token}", "Accept": "application/json"},
            verify=access.tls(), timeout=timeout,
        )

    def __enter__(self) -> PretixClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path.lstrip("/"), **kwargs)
        if response.status_code >= 400:
            raise PretixAPIError(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=body, headers=headers).json()

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body).json()

    def paginate(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every result of a list endpoint, following `next` links."""
        page = self.get(path, **params)
        while True:
            yield from page["results"]
            if not page.get("next"):
                return
            response = self.http.get(page["next"])
            if response.status_code >= 400:
                raise PretixAPIError(response)
            page = response.json()

    def org(self, suffix: str = "") -> str:
        return f"organizers/{self.organizer}/{suffix}"

    def event(self, event: str, suffix: str = "") -> str:
        return f"organizers/{self.organizer}/events/{event}/{suffix}"
