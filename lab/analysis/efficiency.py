"""The arithmetic of `lab bench efficiency`: which module a service's CPU belongs to, CPU per order, idle cores,
medians over repeats with their spread, and the command's last line.

Pure and typed, so the figures the bench prints can be checked without Docker; the bench only feeds it counters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

# Where CPU goes, in the order the bench prints it. "other" catches what no rule names (a one-shot job), so no
# counted second is dropped silently.
MODULES = ("web", "celery", "pg primary", "pg replica", "redis", "sentinels", "proxy", "cron", "monitor",
           "generator", "other")
SIDES = ("stack", "alone")

_PREFIXES = (  # (service name prefix, module); first match wins, so the longer prefixes come first
    ("pretix-web", "web"), ("pretix-worker", "celery"), ("pretix-cron", "cron"), ("postgres-primary", "pg primary"),
    ("postgres-replica", "pg replica"), ("redis-sentinel", "sentinels"), ("redis", "redis"), ("proxy", "proxy"),
    ("monitor", "monitor"), ("generator", "generator"),
)


def module_of(service: str) -> str:
    """The module a compose service (or an alone-side service, named the same way) counts under.

    redis and its replica are one module (the data nodes); a replica promoted by a failover still counts as
    "pg replica", because the service name is what the counters carry.
    """
    for prefix, module in _PREFIXES:
        if service == prefix or service.startswith(prefix + "-"):
            return module
    return "other"


def by_module(service_cpu: Mapping[str, float], generator: float | None = None) -> dict[str, float]:
    """CPU seconds per service (plus the generator's own) -> CPU seconds per module, every module present."""
    out = dict.fromkeys(MODULES, 0.0)
    for service, seconds in service_cpu.items():
        out[module_of(service)] += seconds
    if generator is not None:
        out["generator"] += generator
    return out


def per_order(module_cpu: Mapping[str, float], orders: int) -> dict[str, float]:
    """CPU seconds per order, per module (NaN when nothing was ordered: no cost can be divided by zero orders)."""
    return {m: (s / orders if orders > 0 else math.nan) for m, s in module_cpu.items()}


def idle_cores(cores: int, busy_seconds: float, wall_seconds: float) -> float:
    """Cores left idle on the host over a window: the cores minus the busy CPU seconds spread over the window."""
    if not wall_seconds > 0:
        return math.nan
    return max(0.0, cores - busy_seconds / wall_seconds)


@dataclass(frozen=True)
class Spread:
    """A median over repeats and its range: the spread says how far one repeat may land from it."""

    median: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 0) -> str:
        if self.n == 0 or math.isnan(self.median):
            return "-"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def spread(values: Iterable[float]) -> Spread:
    """Median and min-max of the finite values (NaN ones are repeats that measured nothing)."""
    data = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not data:
        return Spread(math.nan, math.nan, math.nan, 0)
    return Spread(float(np.median(data)), min(data), max(data), len(data))


@dataclass
class SideRepeat:
    """One side's capacity search in one repeat, reduced to its figures at the top sustained step."""

    side: str
    repeat: int
    sustained_per_min: float  # purchases/min at the highest rate that met the SLO; 0 when none did
    rate: float | None  # that rate (arrivals/s)
    orders: int  # purchases in that step
    cpu_per_order: dict[str, float] = field(default_factory=dict)  # module -> CPU seconds per order
    idle_cores: float = math.nan  # host cores left idle during that step
    capped: bool = False  # the highest step offered met the SLO: the side's capacity is at least this, not this


@dataclass
class SideSummary:
    side: str
    sustained: Spread
    cpu_per_order: dict[str, Spread]
    total_per_order: Spread
    idle: Spread


def summarise(side: str, repeats: list[SideRepeat]) -> SideSummary:
    """Medians over one side's repeats: sustained rate, CPU per order per module (and in all), idle cores."""
    mine = [r for r in repeats if r.side == side]
    per_module = {m: spread(r.cpu_per_order.get(m, math.nan) for r in mine) for m in MODULES}
    totals = [sum(r.cpu_per_order.values()) if r.cpu_per_order else math.nan for r in mine]
    return SideSummary(side, spread(r.sustained_per_min for r in mine), per_module, spread(totals),
                       spread(r.idle_cores for r in mine))


def ratio(stack_per_min: float, alone_per_min: float) -> float:
    """Stack over alone; NaN when pretix alone sustained nothing (no ratio to a zero)."""
    return stack_per_min / alone_per_min if alone_per_min > 0 else math.nan


def efficiency_line(stack_per_min: float, alone_per_min: float) -> str:
    """The bench's last line, exactly: medians of the two sides' sustained rates and their ratio."""
    def whole(v: float) -> str:
        return "nan" if math.isnan(v) else str(round(v))

    return (f"efficiency: stack/alone = {ratio(stack_per_min, alone_per_min):.2f}; "
            f"stack sustained = {whole(stack_per_min)}/min; alone sustained = {whole(alone_per_min)}/min")


def table(stack: SideSummary, alone: SideSummary) -> list[str]:
    """The two sides side by side, median (min-max) over the repeats; modules neither side used are left out."""
    width = 28
    lines = [f"{'':24} {'stack':>{width}} {'alone':>{width}}",
             f"{'sustained purchases/min':24} {stack.sustained.text():>{width}} {alone.sustained.text():>{width}}"]
    for m in MODULES:
        a, b = stack.cpu_per_order[m], alone.cpu_per_order[m]
        if all(s.n == 0 or s.high == 0 for s in (a, b)):
            continue
        lines.append(f"{'CPU s/order ' + m:24} {a.text(3):>{width}} {b.text(3):>{width}}")
    lines.append(f"{'CPU s/order in all':24} {stack.total_per_order.text(3):>{width}} "
                 f"{alone.total_per_order.text(3):>{width}}")
    lines.append(f"{'idle cores (host)':24} {stack.idle.text(2):>{width}} {alone.idle.text(2):>{width}}")
    return lines


def capped_note(repeats: list[SideRepeat]) -> str | None:
    """A warning when a side met the SLO at the highest step offered: its figure is a floor, and so is the ratio's
    side of it (raise --rates)."""
    capped = sorted({f"{r.side} (repeat {r.repeat})" for r in repeats if r.capped})
    if not capped:
        return None
    return (f"never broke at the highest rate offered: {', '.join(capped)}; that capacity is a floor: "
            "raise --rates")


__all__ = ["MODULES", "SIDES", "SideRepeat", "SideSummary", "Spread", "by_module", "capped_note", "efficiency_line",
           "idle_cores", "module_of", "per_order", "ratio", "spread", "summarise", "table"]
