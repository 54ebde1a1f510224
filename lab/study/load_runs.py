"""Notebook 02-load's runs in one call: the planned capacity ramps and on-sales, then the overload scenario, sized
from the api capacity those ramps just measured (so it cannot be planned with the others, before the study).

The notebook only shows the plan, calls run_load and shows what was run; the sizing is here, where it is tested.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lab.analysis.who_pays import EFFICIENCY_FILE  # in the study folder, beside study.json
from lab.study.folder import StudyFolder, step_figures
from lab.study.params import Overload, kept_up_from, overload_available

NOTEBOOK = "02-load"
EFFICIENCY_DIR = "efficiency"  # its steps' run folders
Log = Callable[[str], None]


@dataclass
class OverloadPlan:
    """The overload scenario's offered rate and the capacity it was sized from, or why there is none."""

    rate: float | None
    capacity: float | None  # purchases/s the admission controls admit; None: no step told us
    source: str  # how the capacity was found: "within SLO", "kept up", "fallback"
    skipped: str = ""  # why no overload runs: empty when they run

    def describe(self) -> str:
        if self.skipped:
            return f"No overload scenario: {self.skipped}."
        measured = {"within SLO": "api capacity within the SLOs",
                    "kept up": "no api step met its SLOs; the highest rate it kept up with",
                    "fallback": "no api step measured a capacity; the study's fallback rate"}[self.source]
        return f"{measured}: {self.capacity:g}/s; offering {self.rate:g}/s"


def size_overload(overload: Overload, capacity: float | None, steps: list[dict[str, Any]],
                  error_limit: float, available: bool = True) -> OverloadPlan:
    """The offered rate: `factor` times the capacity within the SLOs; without one, times the highest rate a step
    still kept up with (a measured figure); without that, the study's fallback rate."""
    if not overload.enabled:
        return OverloadPlan(None, None, "", skipped="disabled in the study")
    if not available:
        return OverloadPlan(None, None, "", skipped="lab.experiments.overload is not in this lab")
    source = "within SLO"
    if capacity is None:
        capacity, source = kept_up_from(steps, error_limit), "kept up"
    if capacity is None:
        return OverloadPlan(round(overload.fallback_rate * overload.factor, 2), None, "fallback")
    return OverloadPlan(round(capacity * overload.factor, 2), capacity, source)


def plan_overload(study: StudyFolder) -> OverloadPlan:
    """size_overload from the api capacity ramp recorded in the study so far."""
    analysis = study.params.analysis
    steps = step_figures(study, study.runs(kind="capacity", journey="api"), analysis.warmup_seconds)
    rows = steps.to_dict("records") if len(steps) else []
    return size_overload(study.params.overload, study.api_capacity(), rows, analysis.slo_error_rate,
                         overload_available())


def plan_table(study: StudyFolder) -> pd.DataFrame:
    """The notebook's planned runs (the overload runs are sized later, from the measured capacity)."""
    return pd.DataFrame([{"run": r.name, "kind": r.kind, "journey": r.journey, "label": r.label,
                          "seconds": r.seconds()} for r in study.planned(NOTEBOOK)])


def plan_intro(study: StudyFolder) -> str:
    return (f"Study `{study.study_id}`, preset `{study.params.preset}`: the planned runs (the overload runs are "
            "sized from the api capacity these measure).")


@dataclass
class LoadOutcome:
    entries: list[dict[str, Any]] = field(default_factory=list)  # study.json entries of every run made
    overload: OverloadPlan | None = None
    efficiency: dict[str, Any] | None = None  # pretix alone against the stack (efficiency.json), None when disabled


def run_efficiency(study: StudyFolder, ctx, log: Log = print) -> dict[str, Any] | None:
    """pretix alone against the stack at a share of the api capacity just measured (lab.experiments.who_pays),
    kept in <study>/efficiency.json; a failure is recorded there with its reason and the study goes on."""
    settings = study.params.efficiency
    if not settings.enabled:
        return None
    from lab.experiments.who_pays import choose_rate, measure

    rate, source = choose_rate(study.api_capacity(), settings.share, settings.fallback_rate)
    log(f"pretix alone against this deployment at {rate:g}/s ({source}), {settings.repeats} x {settings.seconds:g}s "
        "per side, interleaved")
    from lab.common.blocking import run_blocking

    try:  # its steps use asyncio.run, which a notebook's running loop refuses: a worker thread there
        record: dict[str, Any] = run_blocking(measure, ctx, rate, settings.seconds, settings.repeats,
                                              study.path / EFFICIENCY_DIR, log=log)
    except Exception as error:  # noqa: BLE001 - the runs before it stand; the report says why this part is missing
        record = {"error": f"{type(error).__name__}: {error}"}
        log(f"the comparison with pretix alone failed: {record['error']}")
    record["rate_source"] = source
    (study.path / EFFICIENCY_FILE).write_text(json.dumps(record, indent=1, default=str))
    return record


def run_load(study: StudyFolder, ctx, log: Log = print) -> LoadOutcome:
    """Execute 02-load's planned runs, then the overload scenario sized from them; each run is recorded in
    study.json as it ends (a failed run too: the study goes on unless the stack is gone)."""
    outcome = LoadOutcome([study.execute(ctx, run, log=log) for run in study.planned(NOTEBOOK)])
    outcome.efficiency = run_efficiency(study, ctx, log)
    plan = outcome.overload = plan_overload(study)
    log(plan.describe())
    if plan.skipped:
        return outcome
    from lab.common.blocking import run_blocking
    from lab.experiments.overload import run_overload
    from lab.load.queue import QueueSettings

    overload = study.params.overload
    for entry in run_blocking(run_overload, ctx, journey="api", rate=plan.rate, seconds=overload.seconds,
                              runs_dir=study.runs_dir, log=log, capacity=plan.capacity,
                              queue=QueueSettings(max_wait=overload.queue_max_wait),
                              controls=tuple(overload.controls)):
        study.add_run(entry)
        outcome.entries.append(entry)
    return outcome


__all__ = ["EFFICIENCY_FILE", "LoadOutcome", "OverloadPlan", "plan_intro", "plan_overload", "plan_table",
           "run_efficiency", "run_load", "size_overload"]
