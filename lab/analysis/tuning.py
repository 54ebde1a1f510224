"""The arithmetic of `lab bench efficiency --compare-tuning`: pretix alone with the stock settings against pretix
alone with the tuning knobs, at the same offered rates, in one run.

CPU per order is compared at equal offered rates (not at each side's own top rate), so a cut is not confused with a
side that simply ran at a different load. Each repeat pairs the two sides at one rate (same repeat, same rate,
measured back to back), so the ratio is taken per pair and then its median and min-max over the repeats.
Pure and typed: the bench only feeds it counters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lab.analysis.efficiency import MODULES, Spread, spread

SIDES = ("stock", "tuned")
GOAL_CUT = 0.30  # issue 12: pretix's own CPU per API order cut by at least this share against stock, same run
PRETIX_MODULES = tuple(m for m in MODULES if m != "generator")  # what pretix alone runs: its own CPU


@dataclass
class TuningPoint:
    """One side at one offered rate in one repeat."""

    side: str
    repeat: int
    rate: float
    purchased: int
    per_min: float
    p95: float
    meets_slo: bool
    cpu_per_order: dict[str, float] = field(default_factory=dict)  # module -> CPU seconds per order

    def pretix_per_order(self) -> float:
        """pretix's own CPU seconds per order (every module of the alone side; the generator left out)."""
        if not self.cpu_per_order:
            return math.nan
        return sum(v for m, v in self.cpu_per_order.items() if m in PRETIX_MODULES)


@dataclass
class RateSummary:
    rate: float
    pretix: dict[str, Spread]  # side -> pretix CPU s/order
    modules: dict[str, dict[str, Spread]]  # side -> module -> CPU s/order
    per_min: dict[str, Spread]
    p95: dict[str, Spread]
    ratio: Spread  # tuned / stock, per repeat


def paired_ratios(points: list[TuningPoint], rate: float, sides: tuple[str, str] = SIDES) -> list[float]:
    """sides[1]/sides[0] (tuned/stock) pretix CPU per order for each repeat that measured both sides at `rate`."""
    by = {(p.side, p.repeat): p.pretix_per_order() for p in points if p.rate == rate}
    out = []
    for repeat in sorted({r for _, r in by}):
        stock, tuned = by.get((sides[0], repeat), math.nan), by.get((sides[1], repeat), math.nan)
        if stock > 0 and not math.isnan(tuned):
            out.append(tuned / stock)
    return out


def summarise(points: list[TuningPoint], sides: tuple[str, str] = SIDES) -> list[RateSummary]:
    """Per offered rate: each side's medians and the paired sides[1]/sides[0] ratio."""
    out = []
    for rate in sorted({p.rate for p in points}):
        mine = {s: [p for p in points if p.rate == rate and p.side == s] for s in sides}
        out.append(RateSummary(
            rate,
            {s: spread(p.pretix_per_order() for p in ps) for s, ps in mine.items()},
            {s: {m: spread(p.cpu_per_order.get(m, math.nan) for p in ps) for m in PRETIX_MODULES}
             for s, ps in mine.items()},
            {s: spread(p.per_min for p in ps) for s, ps in mine.items()},
            {s: spread(p.p95 for p in ps) for s, ps in mine.items()},
            spread(paired_ratios(points, rate, sides))))
    return out


def table(rows: list[RateSummary], sides: tuple[str, str] = SIDES) -> list[str]:
    """Per offered rate: each side's purchases/min, p95, CPU per order per module and in all; then the ratio."""
    w, label = 22, 24
    a_side, b_side = sides
    lines = []
    for row in rows:
        lines.append(f"{'offered ' + format(row.rate, 'g') + '/s':{label}} {a_side:>{w}} {b_side:>{w}}")
        lines.append(f"{'  purchases/min':{label}} {row.per_min[a_side].text():>{w}} "
                     f"{row.per_min[b_side].text():>{w}}")
        lines.append(f"{'  p95 s':{label}} {row.p95[a_side].text(2):>{w}} {row.p95[b_side].text(2):>{w}}")
        for m in PRETIX_MODULES:
            a, b = row.modules[a_side][m], row.modules[b_side][m]
            if all(s.n == 0 or s.high == 0 for s in (a, b)):
                continue
            lines.append(f"{'  CPU s/order ' + m:{label}} {a.text(4):>{w}} {b.text(4):>{w}}")
        pretix = row.pretix
        lines.append(f"{'  pretix CPU s/order':{label}} {pretix[a_side].text(4):>{w}} {pretix[b_side].text(4):>{w}}")
        lines.append(f"  {b_side}/{a_side} (paired per repeat): {row.ratio.text(2)}")
    return lines


def sustained(points: list[TuningPoint], sides: tuple[str, str] = SIDES) -> dict[str, Spread]:
    """Per side: the purchases/min of its highest offered rate that met the SLO, per repeat (the lab's capacity
    definition on this bench's fixed rates; 0 when none met it), then median and min-max over the repeats."""
    out = {}
    for side in sides:
        mine = [p for p in points if p.side == side]
        per_repeat = []
        for repeat in sorted({p.repeat for p in mine}):
            met = [p for p in mine if p.repeat == repeat and p.meets_slo]
            per_repeat.append(max(met, key=lambda p: p.rate).per_min if met else 0.0)
        out[side] = spread(per_repeat)
    return out


def sustained_line(points: list[TuningPoint], sides: tuple[str, str] = SIDES) -> str:
    """One line: each side's sustained purchases/min; a side that met the SLO at the top rate in every repeat was not
    saturated, so its figure is a floor (marked >=)."""
    if not points:
        return "sustained: nothing measured"
    top = max(p.rate for p in points)
    found = sustained(points, sides)
    parts = []
    for side in sides:
        at_top = [p for p in points if p.side == side and p.rate == top]
        floor = bool(at_top) and all(p.meets_slo for p in at_top)
        parts.append(f"{side} {'>= ' if floor else ''}{found[side].text()}")
    return f"sustained purchases/min within the SLO (offered up to {top:g}/s): " + "; ".join(parts)


def verdict_line(rows: list[RateSummary]) -> str:
    """The last line: the median paired ratio at each rate and whether the issue's goal (a cut of GOAL_CUT) was
    reached at every rate. A figure, never an assertion."""
    if not rows or all(r.ratio.n == 0 for r in rows):
        return "tuning: no rate measured both sides"
    parts = [f"{r.rate:g}/s {r.ratio.median:.2f} (cut {1 - r.ratio.median:.0%})" for r in rows if r.ratio.n]
    reached = all(r.ratio.n and 1 - r.ratio.median >= GOAL_CUT for r in rows)
    return (f"tuning: pretix CPU per order tuned/stock = {'; '.join(parts)}; goal cut >= {GOAL_CUT:.0%}: "
            f"{'reached' if reached else 'not reached'}")


__all__ = ["GOAL_CUT", "PRETIX_MODULES", "RateSummary", "SIDES", "TuningPoint", "paired_ratios", "summarise",
           "sustained", "sustained_line", "table", "verdict_line"]
