"""The composition root: everything a seed, run or audit needs about the deployed stack, in one object."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lab.common.paths import deploy_dir
from lab.pretix.bootstrap import PretixAccess
from lab.pretix.buyers import Buyer
from lab.pretix.client import PretixClient
from lab.pretix.seed import Catalogue, CustomerSeed, ensure_catalogue, ensure_customers


@dataclass
class LabContext:
    access: PretixAccess
    docker: object
    directory: Path

    @classmethod
    def load(cls) -> LabContext:
        from lab.stack.engine import ensure_engine

        return cls(access=PretixAccess.load(), docker=ensure_engine(), directory=deploy_dir())

    def buyer_secret(self) -> str:
        """Per-deployment key from which buyers' passwords are derived (never stored in clear)."""
        django_secret = json.loads((self.directory / "secrets.json").read_text())["django_secret"]
        return hmac.new(django_secret.encode(), b"pretix-lab buyers", hashlib.sha256).hexdigest()

    def catalogue(self, cat: Catalogue) -> dict[str, dict]:
        with PretixClient(self.access) as client:
            return ensure_catalogue(client, cat)

    def customers(self, seed: CustomerSeed, log=print) -> tuple[list[Buyer], dict]:
        buyers, figures = ensure_customers(self.access, seed, self.buyer_secret(), log=log,
                                             docker_client=self.docker)
        pd.DataFrame([b.model_dump() for b in buyers]).to_parquet(self.directory / "buyers.parquet")
        return buyers, figures

    def saved_buyers(self) -> list[Buyer]:
        path = self.directory / "buyers.parquet"
        if not path.exists():
            raise FileNotFoundError("no seeded buyers for this deployment: run `lab seed` first")
        return [Buyer(**row) for row in pd.read_parquet(path).to_dict("records")]
