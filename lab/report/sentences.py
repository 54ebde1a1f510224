"""Every sentence of the study report (notebooks/04-analysis), as markdown computed from the study's summary.

The notebook only shows what these return, so each sentence is tested on the fixtures (tests/test_report_sentences.py)
and the first page (lab.report.first_page) can be read by people who decide without the detail.
"""

from __future__ import annotations

import math

import pandas as pd

from lab.analysis.summary import StudySummary

MET = {"PASS": "met", "FAIL": "did not meet",
       "UNDECIDED": "may or may not meet (the measurement's interval straddles)"}


def _plan_per_min(s: StudySummary) -> float:
    return s.extra_targets[0] if s.extra_targets else s.targets.target_per_min


def scope(s: StudySummary, is_study: bool) -> str:
    """What the report covers: the folder, its runs by kind, its journeys."""
    table = s.table
    kinds = ", ".join(f"{n} {k}" for k, n in table["kind"].value_counts().items())
    return (f"**{'Study' if is_study else 'Run'} `{s.folder.name}`**: {len(table)} run(s) ({kinds}), "
            f"journeys {', '.join(sorted(table['journey'].unique()))}.")


PROVENANCE = ("Every number, verdict and sentence below is computed from the study's run folders (params.yaml, "
              "environment.json, requests/attempts/metrics/faults parquet, audit.json).")


def verdict_statement(s: StudySummary) -> str:
    """What the verdict (on the first page) was judged against."""
    t = s.targets
    return (f"The deployment {MET[s.verdict]} the bar of {t.target_per_min:.0f} purchases/min "
            f"within its SLOs: p95 within {t.slo_p95_seconds:g} s (api) / {t.slo_p95_shop_seconds:g} s (web shop), at "
            f"most {t.slo_error_rate:.0%} failed attempts, and no lost, altered, duplicate or oversold order.")


def failed_runs(s: StudySummary) -> list[str]:
    """One sentence per run that failed and was recorded as far as it got."""
    return [f"Run `{r.run_id}` failed and was recorded as far as it got: {r.run_failed}"
            for r in s.table[s.table["run_failed"].astype(bool)].itertuples()]


def runs_legend(s: StudySummary) -> str:
    """What the run table's figures mean, including the warm-up left out."""
    warmup = s.warmup_seconds
    return ("Sustained throughput: purchases per minute from a run's first scheduled attempt to its last purchase. "
            "Latency counts from each attempt's scheduled start (no coordinated omission), for every launched "
            "attempt: one that never got an answer counts with the time it waited. Ghosts: orders in the database "
            "that no buyer was told about (made after the client gave up)"
            + (f"; latency and failures leave out each run's first {warmup:g} s." if warmup else
               ", from the first second of each run (no warm-up left out)."))


def environment_note(run_id: str, same_images: bool) -> str:
    return (f"Recorded by run `{run_id}`; the image ids are "
            f"{'the same in every run' if same_images else 'NOT the same in every run (see below)'}.")


def report_parameters(s: StudySummary) -> str:
    t = s.targets
    return (f"Report parameters: target {t.target_per_min:.0f} purchases/min (and {_plan_per_min(s):.0f} for "
            f"planning), SLO p95 {t.slo_p95_seconds:g} s api / {t.slo_p95_shop_seconds:g} s web shop, failed "
            f"attempts at most {t.slo_error_rate:.0%}, cores planned at {s.utilisation:.0%} utilisation.")


NO_CAPACITY_STEP = "No capacity step (a run without faults or overload) in this study."


def saturation_sentences(s: StudySummary) -> list[str]:
    """One bullet per journey of the capacity steps: the most it delivered, within the SLOs, and where it bent."""
    return [f"- **{row.journey}** ({row.model} workload, {row.steps} step(s)): at most "
            f"{row.max_throughput_per_min:.0f} purchases/min, {row.max_within_slo_per_min:.0f}/min within the "
            f"SLOs; {row.where}." for row in s.saturation.itertuples()]


def capacity_interval(s: StudySummary) -> str | None:
    """The api capacity with its interval and how it was measured; None without a ramp of rounds."""
    if not len(s.capacity_rounds):
        return None
    from lab.analysis.capacity import describe_interval

    return (f"**api capacity within the SLOs: {describe_interval(s.capacity['api'])}.** Each round of the ramp "
            "(the rates interleaved with the other rounds) counts the highest offered rate whose run met every SLO: "
            "p95 from the scheduled start, failed attempts, at least 95% of the offered attempts bought, latency not "
            "still rising; the figure is their median, with a bootstrap interval. A round's capacity lies between "
            "its step and the next one, so the interval is no finer than the ramp's steps.")


def timelines_intro(run_ids_kinds: list[tuple[str, str]]) -> str:
    return (f"Shown for: {', '.join(f'`{run}` ({kind})' for run, kind in run_ids_kinds)}. Fault windows are shaded "
            "and named.")


def timeline_heading(run_id: str, kind: str, journey: str) -> str:
    return f"### {run_id} ({kind}, {journey} journey)"


NO_GAUGES = "The monitor recorded no celery queue, lock or replication figure in this run."
NO_FAULT = "No fault was injected in this study."
AUDIT_PER_FAULT = "Audit per fault (lost and duplicate attempts scheduled inside the fault's window):"


def fault_sentences(faults: pd.DataFrame) -> list[str]:
    """One bullet per fault: when attempts and requests failed, whether throughput recovered, p95 before/during."""
    out = []
    for row in faults.itertuples():
        window = (f"failed attempts from {row.attempt_errors_from:.1f} s to {row.attempt_errors_to:.1f} s after "
                  f"the injection ({row.failed_attempts})" if row.failed_attempts else "no failed attempt")
        if row.failed_requests:
            window += (f", {row.failed_requests} failed request(s) from {row.request_errors_from:.1f} s to "
                       f"{row.request_errors_to:.1f} s" + ("" if row.failed_attempts else " (retried)"))
        if row.recovery_recovered:
            recovery = f"throughput back within 10% {row.recovery_time_to_recover:.0f} s after the injection"
        elif getattr(row, "steady_after", None) == "pass":
            recovery = "throughput not yet settled within 10% in the window, steady-state check after the undo passed"
        elif getattr(row, "steady_after", None) == "cut":
            recovery = ("throughput not back within 10% in the window; the next fault began before the steady-state "
                        "check after the undo held")
        else:
            recovery = "throughput NOT back to its pre-fault level in the window"
        out.append(f"- **{row.fault_id}** ({row.action} {row.target}, {row.fault_seconds:.0f} s): {window}; "
                   f"{recovery}; p95 {row.latency_before_p95:.2f} s before vs {row.latency_during_p95:.2f} s during.")
    return out


NO_SELLOUT = "No run sent a product more buyers than its quota holds: this study has no sell-out."
SELLOUT_LEGEND = ("Sold: positions holding the quota (database: the audit's count; client: purchases the buyers were "
                  "told about). Oversold: positions beyond the quota. False availability: pretix called the quota "
                  "available while it was full (the audit), or told a buyer 'sold out' before the quota could be "
                  "full (the buyers' history). The quota is reached when the purchase that filled it ended, counted "
                  "from the run's first scheduled buyer.")


def sellout_sentences(sellout: pd.DataFrame) -> list[str]:
    from lab.analysis.sellout import describe

    return ["- " + describe(row) for row in sellout.to_dict("records")]


NO_PLANNING = "No run without faults has both purchases and monitor data: nothing to plan from."
IDLE_USE = "Idle use (cores), the intercept of each fit:"


def planning_intro(s: StudySummary) -> str:
    return ("CPU-seconds per purchase by module (a module is a service without its instance number), per journey: "
            + "; ".join(f"**{j}** {how}" for j, how in s.fit_methods.items())
            + ". A fit separates the cost of a purchase from the module's idle use; one run charges the idle use to "
            f"its purchases (an upper bound). Cores are planned at {s.utilisation:.0%} utilisation, idle use "
            "included.")


def cores_intro(s: StudySummary) -> str:
    return (f"Cores per module for each journey alone, at {s.targets.target_per_min:.0f} and "
            f"{_plan_per_min(s):.0f} purchases/min:")


def shop_ratio(s: StudySummary) -> str | None:
    """How many times an API order's CPU a web-shop purchase costs; None without both journeys."""
    totals = s.journey_costs.sum(axis=1)
    ratio = totals.get("shop", math.nan) / totals.get("api", math.nan)
    if ratio != ratio:
        return None
    return (f"A web-shop purchase costs {ratio:.1f}x the CPU of an API order here, so the answer depends on "
            "the share of buyers in the shop and how many of them log in:")


def login_cost(s: StudySummary) -> str:
    login = ", ".join(f"{m} {v:.3f} s" for m, v in s.login_cost.items())
    how = "" if s.login_source == "measured" else (": from the login_cpu_seconds parameter, since no shop runs at "
                                                   "two login shares measured it")
    return f"Login cost per shop login: {login} ({s.login_source}{how})."


def mix_heading(rate: float) -> str:
    return f"**Cores per module at {rate:.0f} purchases/min, by journey mix:**"


def mix_table_title(rate: float) -> str:
    return f"Cores at {rate:.0f} purchases/min by journey mix"


TRAFFIC_CONTROL = "## Traffic control under overload"


def no_traffic_analysis(runs: int, error: Exception) -> str:
    return f"{runs} overload run(s), but this lab has no traffic-control analysis ({error})."


def meaning(s: StudySummary) -> str:
    """What it means for the event and what to change, as a numbered list."""
    return "\n".join(f"{i}. {sentence}" for i, sentence in enumerate(s.meaning(), 1))


__all__ = ["AUDIT_PER_FAULT", "IDLE_USE", "NO_CAPACITY_STEP", "NO_FAULT", "NO_GAUGES", "NO_PLANNING", "NO_SELLOUT",
           "PROVENANCE", "SELLOUT_LEGEND", "TRAFFIC_CONTROL", "capacity_interval", "cores_intro", "environment_note",
           "failed_runs", "fault_sentences", "login_cost", "meaning", "mix_heading", "mix_table_title",
           "no_traffic_analysis", "planning_intro", "report_parameters", "runs_legend", "saturation_sentences", "scope",
           "sellout_sentences", "shop_ratio", "timeline_heading", "timelines_intro", "verdict_statement"]
