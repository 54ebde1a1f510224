"""One measured run: params -> run folder with the client's history, the monitor's samples, logs and audit.

A run folder (its files are named in lab.evidence.runfolder) is written once. Everything is flushed while the run
goes, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab.common.paths import data_dir, utc_stamp
from lab.common.validation import not_a_mapping, problems
from lab.errors import InputError, LabError, Problem, field_error
from lab.evidence.runfolder import RunFolder
from lab.load.queue import QueueSettings
from lab.load.workload import WorkloadModel, parse_workload
from lab.pretix.seed import Catalogue, CustomerSeed
from lab.stack.admission import Admission

if TYPE_CHECKING:
    from lab.experiments.context import RunContext

WHAT = "load parameters"


class RunParamsError(InputError):
    """A load parameter is wrong; raised before anything is deployed, seeded or sent."""


class RunFailed(LabError, RuntimeError):
    """A run ended with an error after its folder was made: what it recorded stays there, and the caller decides
    whether the next run can go on (a study goes on unless the stack itself is gone)."""

    def __init__(self, run_dir: Path, why: str):
        super().__init__(f"run {run_dir.name} failed: {why}")
        self.run_dir, self.why = run_dir, why


class LoadParams(BaseModel):
    """What one run does: which journey, under which workload, buying what."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    name: str = Field(default="run", pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    journey: str = Field(default="api", description="a registered journey (lab.load.journey): api, shop, ...")
    workload: dict[str, Any] = Field(default_factory=lambda: {"model": "constant", "rate": 2, "duration": 10})
    login_share: float = Field(default=0.2, ge=0, le=1, description="shop: share of buyers who log in")
    product_mix: dict[str, float] = Field(default_factory=lambda: {"Bilhete Geral": 0.8, "Estudante": 0.15,
                                                                    "VIP": 0.05})
    monitor: bool = True
    audit: bool = True
    faults: list[Any] | dict[str, Any] | None = Field(
        default=None, description="a fault schedule (lab/faults/schedule.py) run next to the load from one t0")
    admission: Admission | None = Field(
        default=None, description="admission control at the proxy during the run (lab/stack/admission.py), "
                                  "restored afterwards; None leaves the proxy as it is")
    queue: QueueSettings = Field(default_factory=QueueSettings,
                                 description="how buyers refused by admission control wait and retry")
    generators: int = Field(default=1, description="generator processes sharing the open workload's arrival "
                                                   "schedule, each taking every K-th arrival (lab.load.fanout)")

    @field_validator("generators")
    @classmethod
    def _generators(cls, value: int) -> int:
        from lab.load.fanout import max_generators

        top = max_generators()
        if not 1 <= value <= top:
            raise field_error("", f"{value} is not between 1 and {top} (one process per core at most; this "
                              f"machine has {os.cpu_count()}); allowed: 1..{top}", range(1, top + 1))
        return value

    @model_validator(mode="after")
    def _fanout_is_open(self) -> LoadParams:
        if self.generators > 1 and self.parsed_workload().kind != "open":
            raise field_error("generators", f"{self.generators} generators share an open workload's schedule "
                              f"(constant, ramp, spike); a {self.parsed_workload().model} workload runs in one "
                              "process: use generators 1", ("1",))
        return self

    @field_validator("journey")
    @classmethod
    def _journey(cls, value: str) -> str:
        from lab.load.journey import journeys

        journeys.get(value)  # raises UnknownJourneyError (a ValueError) naming the known journeys
        return value

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

    def load_seconds(self) -> float:
        """How long the workload offers load: faults must be undone within it."""
        workload = self.parsed_workload()
        return float(getattr(workload, "total_duration", None) or workload.duration)

    def fault_plan(self):
        """The validated fault schedule, or None (raises FaultScheduleError naming the field)."""
        if not self.faults:
            return None
        from lab.faults.schedule import parse_schedule

        return parse_schedule(self.faults)


def _under(section: str, problem: Problem) -> Problem:
    return problem.moved(f"{section}.{problem.field}" if problem.field else section)


def validate_load(raw: dict[str, Any], catalogue: Catalogue | None = None) -> LoadParams:
    """Raw mapping -> LoadParams, or RunParamsError carrying every bad field by its path in the load parameters
    (workload.rate, faults.0.target, product_mix, ...) and the allowed values."""
    if not isinstance(raw, dict):
        raise RunParamsError(WHAT, not_a_mapping(raw, "load"))
    try:
        params = LoadParams.model_validate(raw)  # the workload's own fields come through as workload.<field>
    except ValidationError as error:
        raise RunParamsError(WHAT, problems(error, LoadParams)) from None
    if params.faults:
        from lab.faults.schedule import FaultScheduleError, check_fits

        # a schedule given as a mapping has its steps under faults.faults; as a list, under faults
        nested = isinstance(raw.get("faults"), dict)
        try:
            plan = params.fault_plan()
            for warning in check_fits(plan, params.load_seconds()):
                print(f"warning: {warning}")
        except FaultScheduleError as error:
            raise RunParamsError(WHAT, [_under("faults", p) if nested or not p.field.startswith("faults")
                                        else p for p in error.problems]) from None
    if params.admission is not None and params.admission.mode != "off" and params.queue.waits():
        grace = float(getattr(params.parsed_workload(), "grace", 0.0))
        if grace < params.queue.max_wait:
            print(f"warning: workload.grace {grace:g}s < queue.max_wait {params.queue.max_wait:g}s: buyers still "
                  "queued when the grace ends are cancelled")
    if catalogue is not None:
        names = [p.name for p in catalogue.products]
        for product in params.product_mix:
            if product not in names:
                raise RunParamsError(WHAT, Problem("product_mix", f"unknown product {product!r}; the catalogue "
                                                                  f"has: {', '.join(names)}", tuple(names)))
    return params


def new_run_folder(name: str, journey: str, root: Path | None = None) -> RunFolder:
    """A new folder <utc stamp>-<name>-<journey> under `root` (default data/runs)."""
    return RunFolder.create(root or data_dir() / "runs", f"{utc_stamp()}-{name}-{journey}")


def host_hardware(cpuinfo: str | None = None, meminfo: str | None = None) -> dict[str, Any]:
    """CPU model, logical cores and RAM of the machine (from /proc; None where it cannot be read)."""
    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    cpuinfo = read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    meminfo = read("/proc/meminfo") if meminfo is None else meminfo
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.lower().startswith("model name")), None)
    total_kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), None)
    return {"cpu_model": model or platform.processor() or None, "cpus": os.cpu_count(),
            "memory_bytes": total_kib * 1024 if total_kib else None}


def environment(docker_client) -> dict[str, Any]:
    from importlib.metadata import version

    from lab.stack.deploy import environment_record

    record = environment_record(docker_client)
    record.update({
        "host": {"machine": platform.machine(), **host_hardware(),
                 "kernel": platform.release(), "python": platform.python_version()},
        "packages": {p: version(p) for p in ("httpx", "pandas", "pyarrow", "docker")},
        "pretix": pretix_version(docker_client),
    })
    return record


def pretix_version(docker_client) -> str | None:
    """The pretix version installed in the running web container (what was measured), None when none answers."""
    from lab.stack.containers import container

    try:
        found = container(docker_client, "pretix-web-1").exec_run(
            ["/opt/pretix/venv/bin/python", "-c", "import importlib.metadata as m; print(m.version('pretix'))"])
    except Exception:  # noqa: BLE001 - a record, never a reason to stop a run
        return None
    text = (found.output or b"").decode(errors="replace").strip()
    return text.splitlines()[-1] if found.exit_code == 0 and text else None


async def _drive(params: LoadParams, journey, attempts_listener, faults: FaultsAlongside | None = None) -> Any:
    """The workload, and the fault schedule from the same t0; the faults are undone whatever happens."""
    from contextlib import AsyncExitStack

    from lab.load.runner import run_closed, run_open
    from lab.load.workload import ClosedWorkload

    workload = params.parsed_workload()
    runner = run_closed if isinstance(workload, ClosedWorkload) else run_open
    async with AsyncExitStack() as stack:
        if hasattr(journey, "__aenter__"):
            await stack.enter_async_context(journey)
        if faults is None:
            return await runner(workload, journey, on_event=attempts_listener, progress=True)
        return await faults.alongside(workload, lambda w, stop: runner(
            w, journey, on_event=attempts_listener, progress=True, **({"stop": stop} if stop is not None else {})))


def run_recipe(params: LoadParams, ctx: RunContext, weights: dict[int, float]):
    """The run's journey as data each generator process builds its own copy from; one request-id prefix for all."""
    from lab.load.http import Stepper
    from lab.load.recipes import RunJourney

    access = ctx.access
    return RunJourney(name=params.journey, base_url=access.base_url, ca_file=access.ca_file,
                      organizer=access.organizer, event=ctx.event, buyers=list(ctx.buyers), item_weights=weights,
                      id_prefix=Stepper.new_prefix(), api_token=access.api_token, buyer_secret=ctx.buyer_secret,
                      login_share=params.login_share, queue=params.queue)


async def _drive_fanout(params: LoadParams, recipe, folder: RunFolder, faults: FaultsAlongside | None,
                        log=print) -> Any:
    """The workload kept by `params.generators` processes, recording into this run's folder; faults as in _drive."""
    from lab.load.fanout import run_fanout

    async def load(workload, stop):
        result = await run_fanout(workload, recipe, params.generators, run_dir=folder.path, run_id=folder.run_id,
                                  stop=stop, log=log)
        return result.summary

    workload = params.parsed_workload()
    if faults is None:
        return await load(workload, None)
    return await faults.alongside(workload, load)


HOLD_MARGIN = 10.0  # seconds of load kept beyond the schedule's longest after-undo check


class FaultsAlongside:
    """Runs a fault schedule next to a load coroutine; keeps the schedule's result (or error) for run.json."""

    def __init__(self, plan, docker_client, run_dir: Path, run_id: str, access, shop=None) -> None:
        self.plan, self.docker, self.run_dir, self.run_id, self.access = plan, docker_client, run_dir, run_id, access
        self.shop = shop  # lab.faults.probes.ShopTarget: where the steady-state check adds to a cart
        self.t0: float | None = None
        self.result = None
        self.error: str | None = None

    def held(self, workload: WorkloadModel) -> tuple[WorkloadModel, float]:
        """The workload the load runs (a constant one lengthened by the most the last after-undo check can take)
        and the planned end (s after t0) before which it never stops."""
        from lab.load.workload import MAX_DURATION, ConstantWorkload

        if not isinstance(workload, ConstantWorkload):
            return workload, float(workload.total_duration)
        steady = self.plan.steady_state
        hold = steady.settle + steady.window + steady.flush_lag + HOLD_MARGIN
        longer = min(workload.duration + hold, MAX_DURATION)
        return workload.model_copy(update={"duration": longer}), float(workload.duration)

    async def alongside(self, workload: WorkloadModel, start_load) -> Any:
        """Run `start_load(workload, stop)` and the schedule from one t0. A constant load goes on past its planned
        end while the schedule still works (a slow recovery still has load to be checked against), bounded by the
        settle time, and stops once both its planned duration and the schedule are over."""
        from lab.faults.runner import run_schedule

        loaded, planned_end = self.held(workload)
        stop = asyncio.Event() if loaded is not workload else None
        self.t0 = time.time()
        load_task = asyncio.ensure_future(start_load(loaded, stop))
        schedule = asyncio.ensure_future(run_schedule(self.plan, self.docker, self.run_dir, self.t0,
                                                      access=self.access, run_id=self.run_id, shop=self.shop))
        release = asyncio.ensure_future(self._release(schedule, stop, self.t0 + planned_end)) if stop else None
        try:
            # Both normally end together (check_fits: every undo is due within the load); a fault action that
            # fails ends the experiment at once instead of letting the load run on without its faults.
            await asyncio.wait({load_task, schedule}, return_when=asyncio.FIRST_EXCEPTION)
            if schedule.done() and schedule.exception() is not None:
                raise schedule.exception()  # type: ignore[misc]
            summary = await load_task
            self.result = await schedule
            return summary
        except BaseException as error:
            self.error = f"{type(error).__name__}: {error}"
            raise
        finally:
            for task in (load_task, schedule, *((release,) if release else ())):
                task.cancel()  # a no-op when done; else the schedule's undos run now
            await asyncio.gather(load_task, schedule, *((release,) if release else ()), return_exceptions=True)

    @staticmethod
    async def _release(schedule: asyncio.Future, stop: asyncio.Event, planned_end: float) -> None:
        """Set `stop` once the schedule is over (its last after-undo check done) and the planned end has passed."""
        await asyncio.wait({schedule})
        await asyncio.sleep(max(0.0, planned_end - time.time()))
        stop.set()

    def record(self) -> dict[str, Any]:
        from dataclasses import asdict

        faults = [asdict(f) for f in self.result.faults] if self.result is not None else []
        return {"t0": self.t0, "error": self.error, "faults": faults}


def execute(params: LoadParams, ctx: RunContext, *, root: Path | None = None, log=print) -> Path:
    """Run one workload against the deployed stack and record everything in a new run folder under `root` (default
    data/runs); returns the folder. `ctx` (LabContext.for_run) is the stack, the buyers and the catalogue.

    With `params.admission`, the proxy's admission control is set before the load and restored after it.
    """
    folder = new_run_folder(params.name, params.journey, root)
    run_id, run_dir = folder.run_id, folder.path
    access, docker_client = ctx.access, ctx.docker
    try:
        folder.write_once(RunFolder.PARAMS, yaml.safe_dump({"load": params.model_dump(), "stack": ctx.stack_params},
                                                           sort_keys=False, allow_unicode=True))
        folder.write_once(RunFolder.ENVIRONMENT, json.dumps(environment(docker_client), indent=2))
        pd.DataFrame([b.model_dump() for b in ctx.buyers]).to_parquet(folder.customers_path)
        from lab.load.http import Stepper
        from lab.load.journey import JourneySetting, build_journey
        from lab.load.recorder import Recorder
        from lab.load.runner import attempts_to

        weights = {ctx.catalogue_ids[name]["item"]: share for name, share in params.product_mix.items() if share > 0}
        monitor = None
        if params.monitor:
            from lab.evidence.monitor.monitor import Monitor

            monitor = Monitor(run_dir, docker_client, interval=1.0, run_id=run_id)
            monitor.start()
        started = time.time()
        summary = None
        plan = params.fault_plan()
        faults = None
        if plan is not None:
            from lab.faults.probes import ShopTarget

            # the shop check adds to a cart of the item most bought (never a small sell-out quota)
            faults = FaultsAlongside(plan, docker_client, run_dir, run_id, access,
                                     shop=ShopTarget(ctx.event, max(weights, key=weights.__getitem__)))
        restore_error = None
        admission_set = ExitStack()  # closed after the load (before the audit: its API calls must not queue)
        if params.admission is not None:
            from lab.stack import admission

            admission_set.enter_context(admission.applied(params.admission, docker_client=docker_client,
                                                          access=access, log=log))
        prefix = None  # every request id of this run starts with it
        try:
            if params.generators > 1:  # K processes, one schedule, one run folder (lab.load.fanout)
                recipe = run_recipe(params, ctx, weights)
                prefix = recipe.id_prefix
                summary = asyncio.run(_drive_fanout(params, recipe, folder, faults, log))
            else:
                with Recorder.requests(run_dir, run_id) as requests, Recorder.attempts(run_dir, run_id) as attempts:
                    stepper = Stepper(requests, params.journey, queue=params.queue)
                    prefix = stepper.id_prefix
                    journey = build_journey(params.journey, JourneySetting(
                        base_url=access.base_url, tls=access.tls(), organizer=access.organizer, event=ctx.event,
                        stepper=stepper, buyers=ctx.buyers, item_weights=weights, api_token=access.api_token,
                        buyer_secret=ctx.buyer_secret, login_share=params.login_share))
                    summary = asyncio.run(_drive(params, journey, attempts_to(attempts, params.journey), faults))
        finally:
            ended = time.time()
            try:
                admission_set.close()
            except Exception as error:  # noqa: BLE001 - raised after the run's record is written
                restore_error = error
            if monitor is not None:
                monitor.stop()
            try:
                from lab.evidence.runlogs import save_logs

                save_logs(run_dir, docker_client, since=started - 2, until=ended + 2)
            except Exception as error:  # logs are evidence, but their loss must not hide the run's data
                log(f"warning: saving container logs failed: {error}")
            agree = client_and_proxy(run_dir, prefix, log)
            folder.write_meta({
                "run_id": run_id, "event": ctx.event, "organizer": access.organizer, "started": started,
                "ended": ended, "journey": params.journey, "workload": params.parsed_workload().describe(),
                "summary": summary.to_dict() if summary is not None else None, "interrupted": summary is None,
                "faults": faults.record() if faults is not None else None,
                "admission": params.admission.model_dump() if params.admission is not None else None,
                "requests_vs_proxy": agree})
        if restore_error is not None:
            raise restore_error
        if summary is not None:
            log(summary.describe())
        if faults is not None and faults.result is not None:
            log(faults.result.describe())
    except Exception as error:
        raise RunFailed(run_dir, f"{type(error).__name__}: {error}") from error
    if params.audit:
        audit_after(run_dir, docker_client, access, ctx.event, since=started - 5, log=log)
    return run_dir


def client_and_proxy(run_dir: Path, prefix: str | None, log=print) -> dict | None:
    """The run's request history held against the proxy's access log (lab.evidence.runlogs.reconcile: the requests whose
    id starts with this run's `prefix`), None when either is missing; a difference is printed."""
    from lab.evidence.runlogs import read_proxy_access, reconcile
    from lab.load.recorder import read_requests

    if prefix is None or not RunFolder(run_dir).proxy_access_path.exists():
        return None
    try:
        agree = reconcile(read_requests(run_dir), read_proxy_access(run_dir), prefix)
    except Exception as error:  # noqa: BLE001 - a comparison, never a reason to lose the run's record
        log(f"warning: comparing the requests with the proxy's log failed: {error}")
        return None
    if agree["client_only"] or agree["proxy_only"] or agree["status_differs"]:
        log(f"requests vs proxy: client {agree['client']}, proxy {agree['proxy']}; only the client: "
            f"{agree['client_only']}, only the proxy: {agree['proxy_only']}, status differs: {agree['status_differs']}")
    return agree


def audit_after(run_dir: Path, docker_client, access, event: str, since: float, log=print):
    """Audit a run that just ended; whatever goes wrong is written to audit.json as `incomplete`, never raised,
    so one unreadable audit does not end a study."""
    from lab.evidence.audit import audit_run
    from lab.evidence.audit_rules import AuditResult, write_audit

    try:
        result = audit_run(run_dir, docker_client, access, access.organizer, event, since=since, log=log)
    except Exception as error:  # noqa: BLE001 - recorded in audit.json, the run's data stays as it is
        result = AuditResult.unreadable(f"audit: {type(error).__name__}: {str(error)[:300]}")
        try:
            write_audit(result, run_dir)
        except FileExistsError:
            pass
    log(result.describe())
    return result


def load_file(path: Path) -> tuple[dict, dict, dict]:
    """(stack, seed, load) sections of a run parameter file, each checked to be a mapping (InputError if not)."""
    from lab.common import paramfile
    from lab.stack.params import StackParams

    doc = paramfile.read(path)
    return (paramfile.section(doc, "stack", StackParams.model_fields),
            paramfile.section(doc, "seed", ("catalogue", "customers")),
            paramfile.section(doc, "load", LoadParams.model_fields))


__all__ = ["LoadParams", "RunFailed", "RunParamsError", "audit_after", "validate_load", "execute", "CustomerSeed"]
