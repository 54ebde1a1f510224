"""A study: one validated parameter file -> the runs it makes, and whether it fits its time budget.

A study is the lab's main job: deploy, seed, a capacity ramp per journey, the seed's on-sale spike (it sells out a
product on each journey), the fault catalogue under load (while a third product sells out), the overload scenario,
analysis and report (lab/study/runner.py runs the notebooks in order).
Everything a study will do is derived from StudyParams here, so every mistake (a bad field, a fault schedule that
does not fit, a study longer than its `max_minutes`) is reported before anything is deployed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab.common.paths import ROOT
from lab.common.validation import not_a_mapping, problems
from lab.errors import InputError, Problem
from lab.pretix.seed import Catalogue, CustomerSeed, Product
from lab.stack.admission import RoomMode
from lab.stack.params import StackParams
from lab.study.sellouts import SELLOUT_PRICE, SELLOUT_PRODUCTS, Sellout, sellout_errors, sellouts

PRESETS_DIR = ROOT / "studies"


WHAT = "study parameters"


class StudyParamsError(InputError):
    """A study parameter is wrong; raised before anything is deployed. One line per bad field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedParams(_Section):
    catalogue: Catalogue = Field(default_factory=Catalogue)
    customers: CustomerSeed = Field(default_factory=CustomerSeed)


class CapacityApi(_Section):
    """Open workload, constant-rate steps of the api journey: where does it saturate?"""

    rates: list[float] = Field(min_length=1, max_length=20, description="offered orders per second, one run each")
    step_seconds: float = Field(default=25, ge=3, le=600, description="seconds each step offers load")
    repeats: int = Field(default=3, ge=1, le=10, description="rounds of the whole ramp, interleaved (round 1 of every "
                         "rate, then round 2, ...): the capacity is their median with a 95% interval")

    @field_validator("rates")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        if any(r <= 0 or r > 200 for r in value):
            raise ValueError(f"every rate must be > 0 and <= 200 per second (got {value})")
        return value


class CapacityShop(_Section):
    """Closed workload steps of the web-shop journey (N concurrent buyers with think time)."""

    users: list[int] = Field(min_length=1, max_length=10, description="concurrent buyers, one run each")
    step_seconds: float = Field(default=15, ge=3, le=600)
    think_time: float = Field(default=1.0, ge=0, le=60, description="mean seconds between a buyer's checkouts")
    login_share: float = Field(default=0.2, ge=0, le=1, description="share of buyers who log in")

    @field_validator("users")
    @classmethod
    def _users(cls, value: list[int]) -> list[int]:
        if any(u < 1 or u > 200 for u in value):
            raise ValueError(f"every step needs 1 to 200 users (got {value})")
        return value


class Spike(_Section):
    """The on-sale: the seed's purchases per minute offered at once, per journey. Each journey's on-sale sells out:
    its buyers all want one product (see SELLOUT_PRODUCTS) whose quota is at most half of them."""

    per_min: float = Field(default=800, gt=0, le=60_000, description="offered purchases per minute")
    api_seconds: float = Field(default=40, ge=0, le=600, description="api journey: seconds (0 skips it)")
    shop_seconds: float = Field(default=15, ge=0, le=600, description="shop journey: seconds (0 skips it)")
    shop_max_in_flight: int = Field(default=100, ge=1, le=2000,
                                    description="shop: checkouts in flight; arrivals beyond are dropped, counted")
    login_share: float = Field(default=0.2, ge=0, le=1)
    grace: float = Field(default=30, ge=1, le=300,
                         description="seconds the attempts still in flight may take after the arrivals stop")
    sellout_quota_api: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="tickets of the api on-sale's product; empty: 45% of its buyers (a crowd over twice the quota)")
    sellout_quota_shop: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="tickets of the shop on-sale's product; empty: a tenth of its arrivals (the shop completes far "
                    "fewer purchases than arrive: the quota must be one it surely sells within the run)")


class FaultSteps(_Section):
    """One api run at a rate below capacity with the fault catalogue injected in sequence."""

    rate: float = Field(default=5, gt=0, le=200, description="api orders per second while faults happen")
    seconds: float = Field(default=240, ge=5, le=1800, description="seconds of load (every fault is undone in it)")
    steps: list[dict[str, Any]] = Field(default_factory=list, max_length=50,
                                        description="fault steps (lab/faults/schedule.py); `optional: true` "
                                                    "drops a step whose action is not in the catalogue")
    steady_state: dict[str, Any] = Field(default_factory=dict)
    sellout_share: float = Field(default=0.1, gt=0, le=0.5,
                                 description="share of the fault run's buyers who want its sell-out product")
    sellout_quota: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="tickets of the fault run's sell-out product; empty: 40% of the buyers who want it, so it "
                    "sells out mid-run, while the faults happen")


class Overload(_Section):
    """Traffic control (lab.experiments.overload, when present): the same offered load without and with admission."""

    enabled: bool = True
    factor: float = Field(default=2.0, gt=0, le=10, description="offered rate as a multiple of the measured "
                                                                  "api capacity")
    seconds: float = Field(default=25, ge=3, le=600)
    fallback_rate: float = Field(default=16, gt=0, le=200,
                                 description="offered rate when no capacity step met the SLO")
    queue_max_wait: float = Field(default=30, ge=1, le=600,
                                  description="seconds a refused buyer keeps retrying (Retry-After) before giving up")
    controls: list[RoomMode] = Field(
        default_factory=lambda: ["waiting-room"], min_length=1, max_length=2,
        description="admission controls run after the uncontrolled run: waiting-room (nginx limit_req), "
                    "queue (tickets, first come first served)")


class Efficiency(_Section):
    """pretix alone against the deployed stack at one rate, in the study's own run (lab.experiments.who_pays): what
    an order costs pretix itself and what the HA parts and the lab add, the base of the capacity plan."""

    enabled: bool = True
    share: float = Field(default=0.5, gt=0, le=1, description="the arrival rate as a share of the api capacity the "
                                                              "study's ramp measured (both sides comfortable)")
    fallback_rate: float = Field(default=3.0, gt=0, le=200, description="arrivals per second when no api capacity "
                                                                        "was measured")
    seconds: float = Field(default=15, ge=3, le=600, description="seconds each side is measured per repeat")
    repeats: int = Field(default=3, ge=1, le=10, description="rounds, alternating which side goes first: each "
                                                             "figure is their median with its min-max")


class Analysis(_Section):
    target_per_min: float = Field(default=800.0, gt=0)
    slo_p95_seconds: float = Field(default=1.0, gt=0)
    slo_p95_shop_seconds: float = Field(default=10.0, gt=0)
    slo_error_rate: float = Field(default=0.01, ge=0, le=1)
    warmup_seconds: float = Field(default=5.0, ge=0, le=120,
                                  description="each run's first seconds left out of latency and error figures "
                                              "(a freshly deployed stack's cold caches are not its capacity)")


class StudyParams(_Section):
    """Everything a study does. Defaults are the `default` preset's shape; presets live in studies/*.yaml."""

    preset: str = Field(default="custom", pattern=r"^[a-z0-9][a-z0-9-]{0,30}$",
                        description="a short name, part of the study id")
    description: str = ""
    max_minutes: float = Field(default=24, gt=0, le=600, description="refuse a study estimated to take longer")
    stack: StackParams = Field(default_factory=StackParams)
    seed: SeedParams = Field(default_factory=SeedParams)
    product_mix: dict[str, float] = Field(default_factory=lambda: {"Bilhete Geral": 0.8, "Estudante": 0.15,
                                                                    "VIP": 0.05})
    capacity_api: CapacityApi = Field(default_factory=lambda: CapacityApi(rates=[4, 7, 10, 13], step_seconds=15))
    capacity_shop: CapacityShop = Field(default_factory=lambda: CapacityShop(users=[2, 4, 8]))
    spike: Spike = Field(default_factory=Spike)
    faults: FaultSteps = Field(default_factory=FaultSteps)
    overload: Overload = Field(default_factory=Overload)
    efficiency: Efficiency = Field(default_factory=Efficiency)
    analysis: Analysis = Field(default_factory=Analysis)

    @model_validator(mode="after")
    def _sellout_products(self) -> StudyParams:
        """The sell-out products join the seed's catalogue, each with the quota its parameter gives: they are the
        study's, so a catalogue entry of the same name (e.g. in a study.yaml written earlier) takes that quota."""
        products = list(self.seed.catalogue.products)
        for sellout in sellouts(self):
            at = next((i for i, p in enumerate(products) if p.name == sellout.product), None)
            if at is None:
                products.append(Product(name=sellout.product, price=SELLOUT_PRICE, quota=sellout.quota))
            else:
                products[at] = products[at].model_copy(update={"quota": sellout.quota})
        catalogue = self.seed.catalogue.model_copy(update={"products": products})
        self.seed = self.seed.model_copy(update={"catalogue": catalogue})  # copies: a caller's objects stay
        return self


# ------------------------------------------------------------------------------------------------------ planning
@dataclass
class PlannedRun:
    """One run of the study: what lab.experiments.run.execute is given, and how study.json names it."""

    name: str
    kind: str
    journey: str
    label: str
    load: dict[str, Any]
    notebook: str

    def seconds(self) -> float:
        from lab.load.workload import parse_workload

        workload = parse_workload(self.load["workload"])
        return float(getattr(workload, "total_duration", None) or workload.duration)


def _rate_name(rate: float) -> str:
    return f"{rate:g}".replace(".", "p")


def fault_steps(params: StudyParams) -> list[dict[str, Any]]:
    """The schedule's steps: `optional` steps whose action the catalogue lacks are left out."""
    from lab.faults import faults

    known = set(faults.names())
    steps = []
    for step in params.faults.steps:
        step = dict(step)
        optional = bool(step.pop("optional", False))
        if optional and step.get("action") not in known:
            continue
        steps.append(step)
    return steps


def plan_runs(params: StudyParams) -> list[PlannedRun]:
    """Every run of notebooks 02-load and 03-faults, in order (the overload runs depend on the measured capacity
    and are planned by the notebook)."""
    mix = params.product_mix
    runs: list[PlannedRun] = []
    cap = params.capacity_api
    for round_ in range(1, cap.repeats + 1):  # interleaved: a slow minute of the machine hits one step of a round
        suffix = f"-r{round_}" if cap.repeats > 1 else ""
        for rate in cap.rates:
            runs.append(PlannedRun(f"capacity-api-{_rate_name(rate)}{suffix}", "capacity", "api", f"{rate:g}/s", {
                "journey": "api", "product_mix": mix,
                "workload": {"model": "constant", "rate": rate, "duration": cap.step_seconds, "grace": 30}},
                "02-load"))
    shop = params.capacity_shop
    for users in shop.users:
        runs.append(PlannedRun(f"capacity-shop-{users}", "capacity", "shop", f"{users} users", {
            "journey": "shop", "product_mix": mix, "login_share": shop.login_share,
            "workload": {"model": "closed", "users": users, "think_time": shop.think_time,
                         "duration": shop.step_seconds, "grace": 30}}, "02-load"))
    spike = params.spike
    rate = spike.per_min / 60.0
    sold = {s.run: s for s in sellouts(params)}  # each on-sale buys only its sell-out product
    if spike.api_seconds > 0:
        label = f"{spike.per_min:g}/min, {sold['spike-api'].quota} tickets"
        runs.append(PlannedRun("spike-api", "spike", "api", label, {
            "journey": "api", "product_mix": {sold["spike-api"].product: 1.0},
            "workload": {"model": "constant", "rate": round(rate, 3), "duration": spike.api_seconds,
                         "grace": spike.grace}}, "02-load"))
    if spike.shop_seconds > 0:
        label = f"{spike.per_min:g}/min, {sold['spike-shop'].quota} tickets"
        runs.append(PlannedRun("spike-shop", "spike", "shop", label, {
            "journey": "shop", "product_mix": {sold["spike-shop"].product: 1.0}, "login_share": spike.login_share,
            "workload": {"model": "constant", "rate": round(rate, 3), "duration": spike.shop_seconds,
                         "max_in_flight": spike.shop_max_in_flight, "grace": spike.grace}}, "02-load"))
    steps = fault_steps(params)
    if steps:
        schedule: dict[str, Any] = {"faults": steps}
        if params.faults.steady_state:
            schedule["steady_state"] = params.faults.steady_state
        share, total = params.faults.sellout_share, sum(mix.values())  # the study's mix, scaled to make room
        fault_mix = {name: round(weight / total * (1 - share), 6) for name, weight in mix.items()}
        fault_mix[sold["faults-api"].product] = share
        label = f"{len(steps)} faults, {sold['faults-api'].quota} tickets sell out"
        runs.append(PlannedRun("faults-api", "faults", "api", label, {
            "journey": "api", "product_mix": fault_mix, "faults": schedule,
            "workload": {"model": "constant", "rate": params.faults.rate, "duration": params.faults.seconds,
                         "grace": 30}}, "03-faults"))
    for run in runs:
        run.load["name"] = run.name
    return runs


def overload_available() -> bool:
    try:
        import lab.experiments.overload  # noqa: F401
    except ImportError:
        return False
    return True


# -------------------------------------------------------------------------------------------------------- budget
# Measured on this 2-core machine (the quick study, README): seconds outside the load itself.
# The machine's one-time set-up is not part of a study's budget (like the image builds): the first deployment
# on a machine migrates an empty database (~95 s more than a warm one) and keeps it as a template.
DEPLOY_WARM_SECONDS = 50.0  # a new deployment restoring the migrated-database template (measured 46-49 s)
DEPLOY_CONVERGE_SECONDS = 12.0  # `lab up` on a running deployment, migrate skipped (measured 10 s)
CUSTOMERS_PASSWORD_PER_S = 5.5
CUSTOMERS_PLAIN_PER_S = 30.0
SEED_SECONDS = 2.0  # the catalogue, the customer list
RUN_OVERHEAD_SECONDS = 5.0  # environment record, container logs, audit (measured about 4 s)
API_SATURATES_PER_S = 10.0  # the api journey saturates both cores at about 10 orders/s (README)
PG_FAILOVER_EXTRA_SECONDS = 20.0  # the undo's rebuild and failback (measured: done within the load, settle 8 s)
NOTEBOOK_SECONDS = 4.0  # a kernel start and the imports (measured 2-4 s)
REPORT_SECONDS = 30.0  # 04-analysis over every run, HTML, Chromium's PDF (quick study: 6 s)
TEARDOWN_SECONDS = 15.0  # lab down --volumes (measured about 10 s)
ALONE_START_SECONDS = 30.0  # pretix alone: copy the stack's database, start four containers, wait for gunicorn
EFFICIENCY_STEP_OVERHEAD = 4.0  # a step's grace for its last attempts, then the side drains


def deploy_seconds() -> float:
    """What `lab up` will cost, from the machine's state files (no engine call)."""
    from lab.common.paths import deploy_dir

    return DEPLOY_CONVERGE_SECONDS if (deploy_dir() / "pretix.json").exists() else DEPLOY_WARM_SECONDS


@dataclass
class Budget:
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.phases.values())

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in self.phases.items())
        return f"estimated {self.total / 60:.1f} min ({parts})"


def estimate(params: StudyParams, runs: list[PlannedRun] | None = None, deploy: float | None = None) -> Budget:
    """The study's wall time from its parameters and the costs measured here (deploy, seeding, overheads).
    `deploy`: seconds for the deployment (default: from the machine's state, cold, warm or converge)."""
    runs = plan_runs(params) if runs is None else runs
    who = params.seed.customers
    budget = Budget()
    budget.phases["deploy"] = (deploy_seconds() if deploy is None else deploy) + NOTEBOOK_SECONDS
    budget.phases["seed"] = (who.login_pool / CUSTOMERS_PASSWORD_PER_S
                             + (who.count - who.login_pool) / CUSTOMERS_PLAIN_PER_S + SEED_SECONDS + NOTEBOOK_SECONDS)
    for notebook in ("02-load", "03-faults"):
        mine = [r for r in runs if r.notebook == notebook]
        seconds = sum(r.seconds() + RUN_OVERHEAD_SECONDS + drain_seconds(r) for r in mine) + NOTEBOOK_SECONDS
        if any(s.get("action") == "pg-failover" for r in mine for s in (r.load.get("faults") or {}).get("faults", [])):
            seconds += PG_FAILOVER_EXTRA_SECONDS
        budget.phases[notebook.split("-", 1)[1]] = seconds
    if params.overload.enabled and overload_available():
        over = params.overload  # each run: arrivals, then queued buyers' last tries, then the stack drains
        overload_runs = 1 + len(over.controls)  # the uncontrolled run, then one per control
        budget.phases["overload"] = overload_runs * (over.seconds + RUN_OVERHEAD_SECONDS + over.queue_max_wait
                                                     + overload_drain_seconds(over.seconds))
    if params.efficiency.enabled:
        eff = params.efficiency  # the alone side's start, a warm-up per side, then both sides per repeat
        budget.phases["efficiency"] = ALONE_START_SECONDS + 2 * min(eff.seconds, 5.0) + eff.repeats * 2 * (
            eff.seconds + EFFICIENCY_STEP_OVERHEAD)
    budget.phases["report"] = REPORT_SECONDS + NOTEBOOK_SECONDS
    budget.phases["teardown"] = TEARDOWN_SECONDS
    return budget


def overload_drain_seconds(seconds: float) -> float:
    """After an overload run the backlog drains until pretix answers fast again: measured 70-80 s after 30 s at
    twice the capacity, so it grows with the run's length."""
    return min(90.0, 2.5 * seconds + 5.0)


def drain_seconds(run: PlannedRun) -> float:
    """A run that overloads the stack waits up to its grace for the attempts still in flight."""
    workload = run.load["workload"]
    overloads = run.kind in ("spike", "overload") or (
        run.journey == "api" and workload.get("model") == "constant" and workload.get("rate", 0) > API_SATURATES_PER_S)
    return float(workload.get("grace", 30)) if overloads else 0.0


# ---------------------------------------------------------------------------------------------------- validation
def _run_problems(run: PlannedRun, error: InputError) -> list[Problem]:
    """A planned run's bad load fields, re-addressed to the study field that made them (by each error's field)."""
    section = {"capacity": f"capacity_{run.journey}", "spike": "spike", "faults": "faults"}[run.kind]
    found = []
    for p in error.problems:
        if run.kind == "faults" and p.field.startswith("faults.faults"):
            found.append(p.moved("faults.steps" + p.field.removeprefix("faults.faults")))
        elif run.kind == "faults" and p.field.startswith("faults.steady_state"):
            found.append(p)
        elif p.field == "product_mix" or p.field.startswith("product_mix."):
            found.append(p)
        else:
            found.append(Problem(section, f"run {run.name}: {p.line()}", p.allowed))
    return found


def validate(raw: dict[str, Any] | None, *, check_budget: bool = True) -> StudyParams:
    """A raw mapping -> StudyParams whose every run is valid and which fits its budget; else StudyParamsError."""
    from lab.experiments.run import RunParamsError, validate_load

    if raw is not None and not isinstance(raw, dict):
        raise StudyParamsError(WHAT, not_a_mapping(raw))
    for name, value in (raw or {}).items():  # a section left empty (`stack:`) is YAML's None
        fields = getattr(StudyParams.model_fields.get(name), "annotation", None)
        if value is None and isinstance(fields, type) and issubclass(fields, BaseModel):
            raise StudyParamsError(WHAT, Problem(name, "the section is empty; give parameters under it or leave it "
                                                       f"out; allowed: {', '.join(fields.model_fields)}",
                                                 tuple(fields.model_fields)))
    try:
        params = StudyParams.model_validate(raw or {})
    except ValidationError as error:
        raise StudyParamsError(WHAT, problems(error, StudyParams)) from None
    except ValueError as error:  # a model_post_init check (e.g. seed.customers.login_pool > count)
        raise StudyParamsError(WHAT, Problem("", str(error))) from None
    runs = plan_runs(params)
    found = sellout_errors(params, runs)
    for run in runs:
        try:
            validate_load(run.load, params.seed.catalogue)
        except RunParamsError as error:
            found += _run_problems(run, error)
    if found:
        raise StudyParamsError(WHAT, list(dict.fromkeys(found)))
    if check_budget:
        budget = estimate(params, runs)
        if budget.total > params.max_minutes * 60:
            raise StudyParamsError(WHAT, Problem(
                "max_minutes", f"the study is {budget.describe()}, above max_minutes={params.max_minutes:g}; "
                               "shorten its steps or raise max_minutes"))
    return params


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise StudyParamsError(WHAT, Problem("preset", f"no preset named {name!r}; known: "
                                                       f"{', '.join(preset_names())}", tuple(preset_names())))
    return path


def load(path: Path | str | None = None, preset: str | None = None, check_budget: bool = True) -> StudyParams:
    """Parameters from a YAML file, or from a preset (studies/<preset>.yaml); `default` when neither."""
    if path is None:
        path = preset_path(preset or "default")
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise StudyParamsError(WHAT, Problem(str(path), f"cannot be read ({type(error).__name__})")) from None
    except yaml.YAMLError as error:
        raise StudyParamsError(WHAT, Problem(str(path), f"is not YAML ({type(error).__name__})")) from None
    return validate(raw, check_budget=check_budget)


def kept_up_from(rows: list[dict[str, Any]], error_limit: float, share: float = 0.9) -> float | None:
    """When no step met the latency SLO: the highest achieved rate (per second) of a step that still served at
    least `share` of what was offered with few errors. A measured figure, where a fixed fallback would be a guess."""
    good = [r["achieved"] for r in rows if r.get("offered") and r["achieved"] >= share * float(r["offered"])
            and r["errors"] <= error_limit and not r.get("failed")]
    return max(good) if good else None


__all__ = ["StudyParams", "StudyParamsError", "PlannedRun", "Budget", "validate", "load", "plan_runs", "estimate",
           "preset_names", "preset_path", "kept_up_from", "overload_available", "SELLOUT_PRODUCTS",
           "Sellout", "sellouts"]
