"""The composition root: everything a seed, run or audit needs about the deployed stack, in one object; and what
one run is given (RunContext), made from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lab.common.paths import deploy_dir
from lab.errors import LabError
from lab.pretix.bootstrap import PretixAccess
from lab.pretix.buyers import Buyer
from lab.pretix.client import PretixClient
from lab.pretix.seed import Catalogue, CustomerSeed, ensure_catalogue, ensure_customers


class NotSeeded(LabError, FileNotFoundError):
    """The deployment has no seeded buyers yet."""


@dataclass(frozen=True)
class RunContext:
    """What a run is given besides its parameters (lab.experiments.run.execute): the deployed stack, the buyers it
    draws from, the seeded catalogue's ids in the event it buys in, the key the buyers' passwords derive from, and
    the stack parameters its params.yaml records. LabContext.for_run makes one."""

    access: PretixAccess = field(repr=False)  # holds the API token and the admin's password
    docker: object
    buyers: list[Buyer] = field(repr=False)
    catalogue_ids: dict[str, dict]
    event: str
    buyer_secret: str = field(repr=False)  # a key: never in a log or a notebook's output
    stack_params: dict | None = None


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
        from lab.pretix.buyers import buyer_secret

        return buyer_secret(json.loads((self.directory / "secrets.json").read_text())["django_secret"])

    def catalogue(self, cat: Catalogue) -> dict[str, dict]:
        with PretixClient(self.access) as client:
            return ensure_catalogue(client, cat)

    def customers(self, seed: CustomerSeed, log=print) -> tuple[list[Buyer], dict]:
        buyers, figures = ensure_customers(self.access, seed, self.buyer_secret(), log=log,
                                             docker_client=self.docker)
        pd.DataFrame([b.model_dump() for b in buyers]).to_parquet(self.directory / "buyers.parquet")
        return buyers, figures

    def for_run(self, catalogue: Catalogue | None = None, *, stack_params: dict | None = None,
                buyers: list[Buyer] | None = None) -> RunContext:
        """A run's context on this deployment: the seeded buyers (FileNotFoundError before anything else when there
        are none) and `catalogue`'s ids (default: the lab's catalogue), looked up now."""
        buyers = self.saved_buyers() if buyers is None else buyers
        catalogue = catalogue or Catalogue()
        return RunContext(access=self.access, docker=self.docker, buyers=buyers,
                          catalogue_ids=self.catalogue(catalogue), event=catalogue.slug,
                          buyer_secret=self.buyer_secret(), stack_params=stack_params)

    def saved_buyers(self) -> list[Buyer]:
        path = self.directory / "buyers.parquet"
        if not path.exists():
            raise NotSeeded("no seeded buyers for this deployment: run `lab seed` first")
        return [Buyer(**row) for row in pd.read_parquet(path).to_dict("records")]
