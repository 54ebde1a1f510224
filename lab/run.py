"""One measured run: params -> run folder with the client's history, the monitor's samples, logs and audit.

A run folder is written once: params.yaml, environment.json, customers.parquet, requests.parquet/,
attempts.parquet/, metrics.parquet/, logs/, proxy_access.parquet, summary.json, audit.json.
Everything is flushed while the run goes, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lab.load.workload import WorkloadError, WorkloadModel, parse_workload
from lab.paths import data_dir
from lab.seed import Catalogue, CustomerSeed
from lab.validation import describe


class RunParamsError(ValueError):
    """A load parameter is wrong; raised before anything is deployed, seeded or sent."""


class LoadParams(BaseModel):
    """What one run does: which journey, under which workload, buying what."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    name: str = Field(default="run", pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    journey: Literal["api", "shop"] = "api"
    workload: dict[str, Any] = Field(default_factory=lambda: {"model": "constant", "rate": 2, "duration": 10})
    login_share: float = Field(default=0.2, ge=0, le=1, description="shop: share of buyers who log in")
    product_mix: dict[str, float] = Field(default_factory=lambda: {"Bilhete Geral": 0.8, "Estudante": 0.15,
                                                                    "VIP": 0.05})
    monitor: bool = True
    audit: bool = True

    @field_validator("workload")
    @classmethod
    def _workload(cls, value: dict[str, Any]) -> dict[str, Any]:
        parse_workload(value)  # raises WorkloadError naming the field
        return value

    @field_validator("product_mix")
    @classmethod
    def _mix(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("product_mix needs at least one product with a positive share")
        return value

    def parsed_workload(self) -> WorkloadModel:
        return parse_workload(self.workload)


def validate_load(raw: dict[str, Any], catalogue: Catalogue | None = None) -> LoadParams:
    """Raw mapping -> LoadParams, or RunParamsError with one line per bad field (names the allowed values)."""
    try:
        params = LoadParams.model_validate(raw)
    except ValidationError as error:
        raise RunParamsError(describe(error, LoadParams, "load")) from None
    except WorkloadError as error:
        raise RunParamsError(f"invalid load parameters:\n  workload: {error}") from None
    if catalogue is not None:
        names = [p.name for p in catalogue.products]
        for product in params.product_mix:
            if product not in names:
                raise RunParamsError(f"invalid load parameters:\n  product_mix: unknown product {product!r}; "
                                     f"the catalogue has: {', '.join(names)}")
    return params


def new_run_dir(name: str, journey: str, root: Path | None = None) -> tuple[str, Path]:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{name}-{journey}"
    path = (root or data_dir() / "runs") / run_id
    path.mkdir(parents=True, exist_ok=False)
    return run_id, path


def write_once(path: Path, text: str) -> None:
    """Run files are immutable: refuse to overwrite what a run already recorded."""
    with path.open("x") as out:
        out.write(text)


def environment(docker_client) -> dict[str, Any]:
    from importlib.metadata import version

    from lab.stack.deploy import environment_record

    record = environment_record(docker_client)
    record.update({
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                 "kernel": platform.release(), "python": platform.python_version()},
        "packages": {p: version(p) for p in ("httpx", "pandas", "pyarrow", "docker")},
        "pretix": "2026.8.0",
    })
    return record


async def _drive(params: LoadParams, journey, attempts_listener) -> Any:
    from lab.load.runner import run_closed, run_open
    from lab.load.workload import ClosedWorkload

    workload = params.parsed_workload()
    runner = run_closed if isinstance(workload, ClosedWorkload) else run_open
    if hasattr(journey, "__aenter__"):
        async with journey:
            return await runner(workload, journey, on_event=attempts_listener, progress=True)
    return await runner(workload, journey, on_event=attempts_listener, progress=True)


def execute(params: LoadParams, *, access, docker_client, buyers: list, catalogue_ids: dict[str, dict],
            event: str, buyer_secret: str, stack_params: dict | None = None, root: Path | None = None,
            log=print) -> Path:
    """Run one workload against the deployed stack and record everything; returns the run folder."""
    from lab.buyers import password_for
    from lab.load.api import ApiJourney
    from lab.load.http import Stepper
    from lab.load.recorder import Recorder
    from lab.load.runner import attempts_to

    run_id, run_dir = new_run_dir(params.name, params.journey, root)
    write_once(run_dir / "params.yaml", yaml.safe_dump({"load": params.model_dump(), "stack": stack_params},
                                                        sort_keys=False, allow_unicode=True))
    write_once(run_dir / "environment.json", json.dumps(environment(docker_client), indent=2))
    pd.DataFrame([b.model_dump() for b in buyers]).to_parquet(run_dir / "customers.parquet")
    weights = {catalogue_ids[name]["item"]: share for name, share in params.product_mix.items() if share > 0}
    monitor = None
    if params.monitor:
        from lab.monitor import Monitor

        monitor = Monitor(run_dir, docker_client, interval=1.0, run_id=run_id)
        monitor.start()
    started = time.time()
    summary = None
    try:
        with Recorder.requests(run_dir, run_id) as requests, Recorder.attempts(run_dir, run_id) as attempts:
            stepper = Stepper(requests, params.journey)
            if params.journey == "api":
                journey = ApiJourney(access.base_url, access.tls(), access.api_token, access.organizer, event,
                                     stepper, buyers, weights)
            else:
                from lab.load.shop import ShopJourney

                journey = ShopJourney(access.base_url, access.tls(), access.organizer, event, stepper, buyers,
                                      item_weights=weights, login_share=params.login_share,
                                      password=lambda b: password_for(buyer_secret, b.email))
            summary = asyncio.run(_drive(params, journey, attempts_to(attempts, params.journey)))
    finally:
        ended = time.time()
        if monitor is not None:
            monitor.stop()
        try:
            from lab.runlogs import save_logs

            save_logs(run_dir, docker_client, since=started - 2, until=ended + 2)
        except Exception as error:  # logs are evidence, but their loss must not hide the run's data
            log(f"warning: saving container logs failed: {error}")
        meta = {"run_id": run_id, "event": event, "organizer": access.organizer, "started": started,
                "ended": ended, "journey": params.journey, "workload": params.parsed_workload().describe(),
                "summary": summary.to_dict() if summary is not None else None, "interrupted": summary is None}
        write_once(run_dir / "run.json", json.dumps(meta, indent=2, default=str))
    if summary is not None:
        log(summary.describe())
    if params.audit:
        from lab.audit import audit_run

        result = audit_run(run_dir, docker_client, access, access.organizer, event, since=started - 5)
        log(result.describe())
    return run_dir


def load_file(path: Path) -> tuple[dict, dict, dict]:
    """(stack, seed, load) sections of a study/run parameter file."""
    doc = yaml.safe_load(Path(path).read_text()) or {}
    return doc.get("stack", {}), doc.get("seed", {}), doc.get("load", {})


__all__ = ["LoadParams", "RunParamsError", "validate_load", "execute", "CustomerSeed"]
