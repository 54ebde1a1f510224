"""The report's first page, for the people who decide: the verdict, three to five sentences on what it means for
the on-sale, and one figure. The detail (and its tables) follows on the next pages."""

from __future__ import annotations

import math

from lab.analysis.summary import StudySummary
from lab.analysis.verdicts import CAPACITY_CHECK

AUDIT_CHECK = "lost / duplicate / oversold orders"
# printed, the detail starts on the page after the first one
PAGE_BREAK = '<div class="lab-first-page-end" style="break-after: page"></div>'


def _capacity_sentence(s: StudySummary) -> list[str]:
    """What the deployment sustains against the target, and how far it is from it."""
    target = s.targets.target_per_min
    capacity = next((v for v in s.verdicts if v.check.endswith(CAPACITY_CHECK)), None)
    steady = next((v for v in s.verdicts if v.check == "sustained purchases per minute"), None)
    judged = capacity or steady
    if judged is None or judged.passed is None and not judged.undecided:
        return [f"Nothing this study measured says whether the deployment can take {target:.0f} purchases/min."]
    out = [f"Within its SLOs the deployment sustained {judged.measured} against the on-sale's "
           f"{target:.0f} purchases/min."]
    measured = judged.measured.split("/")[0].strip()
    per = float(measured) if measured.replace(".", "", 1).isdigit() else math.nan
    if judged.undecided:
        out.append("The interval straddles the target: repeat the capacity ramp, or measure on a quieter machine, "
                   "before deciding.")
    elif judged.passed:
        out.append(f"It can take the expected rush at this size ({per / target:.1f}x the target)." if per == per
                   else "It can take the expected rush at this size.")
    elif per > 0:
        out.append(f"About {target / per:.1f}x that capacity is needed before the doors open: add cores where the "
                   "capacity planning below says, then measure again.")
    else:
        out.append("No step met its SLOs: the deployment needs more capacity before the doors open.")
    return out


def _audit_sentence(s: StudySummary) -> list[str]:
    audit = next((v for v in s.verdicts if v.check == AUDIT_CHECK), None)
    if audit is None or audit.passed is None:
        return ["No run was audited: nothing here says whether buyers got exactly what they were told."]
    if audit.passed:
        return [f"Every buyer told 'purchased' owns that ticket exactly once: no order lost, duplicated, oversold or "
                f"altered in {audit.evidence}."]
    return [f"Orders were lost, duplicated, oversold or altered ({audit.measured}): fix correctness before the "
            "on-sale, whatever the capacity."]


def _sellout_sentence(s: StudySummary) -> list[str]:
    if s.sellout.empty:
        return []
    sold = s.sellout
    oversold = int(sold["oversold"].fillna(0).sum())
    false = int(sold["false_availability"].fillna(0).sum())
    quota = "never oversold" if oversold == 0 else f"oversold by {oversold}"
    told = "never misreported" if false == 0 else f"misreported {false} time(s)"
    return [f"In {len(sold)} sell-out(s) the quota was {quota} and pretix {told} what was left."]


def _fault_sentence(s: StudySummary) -> list[str]:
    from lab.faults.analysis import unrecovered

    if s.faults.empty or "recovery_recovered" not in s.faults:
        return []
    stuck, unsettled, cut = unrecovered(s.faults)
    if stuck.empty and unsettled.empty and cut.empty:
        worst = s.faults.loc[s.faults["recovery_time_to_recover"].idxmax()]
        return [f"After each of the {len(s.faults)} injected fault(s) the throughput came back, the slowest "
                f"{worst['recovery_time_to_recover']:.0f} s after {worst['action']} on {worst['target']}."]
    out = []
    if len(stuck):
        out.append(f"After {_faults_named(stuck)} the throughput did not come back within the observation window "
                   "and the steady-state check after the undo failed: make that component redundant or restart it "
                   "automatically.")
    parts = []  # one sentence for both: the first page holds five
    if len(unsettled):
        parts.append(f"after {_faults_named(unsettled)} the steady-state check after the undo passed, but the "
                     "throughput had not settled within 10% of its pre-fault level before the next fault or the end "
                     "of the load")
    if len(cut):
        parts.append(f"after {_faults_named(cut)} the next fault began before the steady-state check after the undo "
                     "held, so whether the service came back is not known")
    if parts:
        said = "; ".join(parts)
        out.append(said[0].upper() + said[1:] + ": space the faults further apart to measure how long it takes.")
    return out


def _faults_named(faults) -> str:
    return ", ".join(f"{r.action} on {r.target}" for r in faults.itertuples())


def on_sale_sentences(s: StudySummary) -> list[str]:
    """Three to five sentences on what the verdict means for the on-sale: capacity against the target, the
    audit, and, when measured, the sell-out and the faults."""
    return (_capacity_sentence(s) + _audit_sentence(s) + _sellout_sentence(s) + _fault_sentence(s))[:5]


def first_page(s: StudySummary) -> str:
    """The verdict heading and the sentences, as one markdown block."""
    return f"# Verdict: {s.verdict}\n\n" + " ".join(on_sale_sentences(s))


def first_page_figure(s: StudySummary):
    """The capacity figure (purchases and p95 against the offered load), else the buyers' view of the busiest run;
    None when the study has no run to draw."""
    from lab.analysis import figures

    if not s.steps.empty:
        return figures.capacity_figure(s.steps, {j: s.targets.p95_limit(j) for j in s.steps["journey"].unique()})
    return None


__all__ = ["PAGE_BREAK", "first_page", "first_page_figure", "on_sale_sentences"]
