"""First-run set-up inside pretix: lock the default admin, make our superuser, organizer, team and token.

It runs as a script inside a web container (`python -m pretix shell -c`), because pretix has no API
for creating the first organizer or token. Secrets travel in the exec's environment, never argv.
"""

from __future__ import annotations

import json
import secrets
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.common.paths import deploy_dir
from lab.errors import LabError
from lab.stack.secrets import write_private

ORGANIZER_SLUG = "techpt"
ORGANIZER_NAME = "Comunidade Tech Portugal"
ADMIN_EMAIL = "lab-admin@pretix-lab.invalid"

# Runs inside pretix's Django shell. Idempotent: every object is looked up before it is made.
SCRIPT = r"""
import json, os
from django_scopes import scopes_disabled
from pretix.base.models import Organizer, Team, User
from pretix.base.models.organizer import TeamAPIToken

with scopes_disabled():
    for default in User.objects.filter(email="admin@localhost"):
        default.is_active = False
        default.set_unusable_password()
        default.save()
    admin = User.objects.filter(email=os.environ["LAB_ADMIN_EMAIL"]).first()
    if admin is None:
        admin = User.objects.create_superuser(os.environ["LAB_ADMIN_EMAIL"], os.environ["LAB_ADMIN_PASSWORD"])
    org, _ = Organizer.objects.get_or_create(
        slug=os.environ["LAB_ORGANIZER"], defaults={"name": os.environ["LAB_ORGANIZER_NAME"]})
    # Organizer-level defaults that events inherit: the settings API cannot enable a payment method,
    # and pretix refuses to take an event with paid products live without one.
    if not org.settings.get("payment_manual__enabled", as_type=bool):
        org.settings.set("payment_manual__enabled", True)
        org.settings.set("payment_manual_public_name", "Transferência bancária")
        org.settings.set("payment_manual_information", "Pague por transferência bancária (evento simulado).")
    team, _ = Team.objects.get_or_create(organizer=org, name="pretix-lab", defaults={
        "all_events": True, "all_event_permissions": True, "all_organizer_permissions": True})
    team.members.add(admin)
    token = TeamAPIToken.objects.filter(team=team, name="pretix-lab", active=True).first()
    if token is None:
        token = TeamAPIToken.objects.create(team=team, name="pretix-lab")
    print("LAB-BOOTSTRAP " + json.dumps({"organizer": org.slug, "api_token": token.token,
                                        "default_admin_active": User.objects.filter(
                                            email="admin@localhost", is_active=True).exists()}))
"""


class BootstrapError(LabError, RuntimeError):
    pass


@dataclass(frozen=True)
class PretixAccess:
    """What the rest of the lab needs to talk to this deployment's pretix."""

    base_url: str
    organizer: str
    api_token: str
    admin_email: str
    admin_password: str
    ca_file: str

    def tls(self) -> ssl.SSLContext:
        """Verify the proxy against this deployment's own CA (never switch verification off)."""
        return ssl.create_default_context(cafile=self.ca_file)

    @classmethod
    def load(cls, directory: Path | None = None) -> PretixAccess:
        path = (directory or deploy_dir()) / "pretix.json"
        if not path.exists():
            raise BootstrapError(f"{path} does not exist: deploy first with `lab up`")
        return cls(**json.loads(path.read_text()))


def bootstrap(container, base_url: str, ca_file: Path, directory: Path | None = None) -> PretixAccess:
    """Run SCRIPT in a pretix web container; keep the result (0600) where the lab reads it."""
    directory = directory or deploy_dir()
    path = directory / "pretix.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    password = previous.get("admin_password") or secrets.token_urlsafe(18)
    result = container.exec_run(
        ["pretix-lab-entrypoint", "shell", "-c", SCRIPT],
        environment={
            "LAB_ADMIN_EMAIL": ADMIN_EMAIL, "LAB_ADMIN_PASSWORD": password,
            "LAB_ORGANIZER": ORGANIZER_SLUG, "LAB_ORGANIZER_NAME": ORGANIZER_NAME,
        },
        demux=True,
    )
    out = (result.output[0] or b"").decode()
    line = next((ln for ln in out.splitlines() if ln.startswith("LAB-BOOTSTRAP ")), None)
    if result.exit_code != 0 or line is None:
        err = (result.output[1] or b"").decode()[-2000:]
        raise BootstrapError(f"pretix bootstrap failed (exit {result.exit_code}):\n{err}")
    doc = json.loads(line.removeprefix("LAB-BOOTSTRAP "))
    if doc["default_admin_active"]:
        raise BootstrapError("the default admin@localhost account is still active after bootstrap")
    access = PretixAccess(
        base_url=base_url, organizer=doc["organizer"], api_token=doc["api_token"],
        admin_email=ADMIN_EMAIL, admin_password=password, ca_file=str(ca_file),
    )
    write_private(path, json.dumps(asdict(access), indent=2))
    return access
