"""`lab study`'s one progress line per notebook: where the study is, how long it has run, how long is left.

What is left comes from the study's own estimate (lab.study.params.estimate): the phases of the notebooks not yet
run, so a notebook that ran long does not make the estimate of the ones after it any longer or shorter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.study.params import Budget

# the estimate's phases that each notebook runs; phases of no notebook (teardown) come after the last one
PHASES = {"00-deploy": ("deploy",), "01-seed": ("seed",), "02-load": ("load", "efficiency", "overload"),
          "03-faults": ("faults",), "04-analysis": ("report",)}


def notebook_seconds(budget: Budget, notebooks: list[str]) -> dict[str, float]:
    """Estimated seconds per notebook (0 for a notebook the estimate does not know)."""
    return {name: sum(budget.phases.get(phase, 0.0) for phase in PHASES.get(name.removesuffix(".ipynb"), ()))
            for name in notebooks}


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


@dataclass
class Progress:
    """The study's clock and its estimate; line(i) is the line printed as notebook i (0-based) starts."""

    budget: Budget
    notebooks: list[str]
    clock: Callable[[], float] = time.monotonic
    began: float = field(init=False)

    def __post_init__(self) -> None:
        self.began = self.clock()
        self.planned = notebook_seconds(self.budget, self.notebooks)
        known = {p for phases in PHASES.values() for p in phases}
        self.after = sum(v for k, v in self.budget.phases.items() if k not in known)  # teardown

    def elapsed(self) -> float:
        return self.clock() - self.began

    def remaining(self, index: int) -> float:
        """Estimated seconds from the start of notebook `index` to the study's end."""
        return sum(self.planned[name] for name in self.notebooks[index:]) + self.after

    def line(self, index: int) -> str:
        name = self.notebooks[index].removesuffix(".ipynb")
        return (f"[{index + 1}/{len(self.notebooks)}] {name}: {minutes(self.elapsed())} elapsed, "
                f"about {minutes(self.remaining(index))} left (estimate {minutes(self.budget.total)})")


__all__ = ["PHASES", "Progress", "minutes", "notebook_seconds"]
