"""Fictitious buyers: who they are, and the password a buyer in the login pool logs in with.

Passwords are derived (HMAC) from a per-deployment secret, so neither the data of a run nor a report
ever holds one in clear: the load generator recomputes them when it needs them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from pydantic import BaseModel


class Buyer(BaseModel):
    identifier: str  # pretix's customer identifier
    email: str
    name: str
    has_password: bool


def password_for(secret: str, email: str) -> str:
    """Deterministic, strong (passes Django's validators), different for every buyer and deployment."""
    digest = hmac.new(secret.encode(), email.lower().encode(), hashlib.sha256).digest()
    return "Lab-" + base64.urlsafe_b64encode(digest[:18]).decode()


def buyer_secret(django_secret: str) -> str:
    """The per-deployment key buyers' passwords derive from (itself derived from Django's secret, never stored)."""
    return hmac.new(django_secret.encode(), b"pretix-lab buyers", hashlib.sha256).hexdigest()
