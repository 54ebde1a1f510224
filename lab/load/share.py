"""One arrival schedule kept by several generator processes: each takes every K-th arrival.

The schedule is computed once (lab.load.workload) and dealt out round-robin, so every share offers the same rate
shape, each arrival is kept by exactly one process under its number in the whole schedule (the buyer index, so a
run picks the same buyers whatever K is), and its due time stays `t0 + offset` with one t0 for all: latency is
counted from the same scheduled start as a single process would (no coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Share:
    """A generator's part of a schedule: its arrivals' numbers in the whole schedule and their offsets (s after
    t0, sorted), and t0 itself (wall epoch s; nan until the processes agree on it)."""

    indices: np.ndarray
    offsets: np.ndarray
    t0: float = float("nan")

    def at(self, t0: float) -> Share:
        """The same arrivals from an agreed origin."""
        return Share(self.indices, self.offsets, t0)

    def __len__(self) -> int:
        return len(self.offsets)


def split(offsets: np.ndarray, generators: int) -> list[Share]:
    """Deal a sorted schedule out to `generators` processes: process k keeps arrivals i with i % generators == k."""
    if generators < 1:
        raise ValueError(f"generators must be >= 1, not {generators}")
    offsets = np.asarray(offsets, dtype=float)
    numbers = np.arange(len(offsets))
    return [Share(numbers[k::generators].copy(), offsets[k::generators].copy()) for k in range(generators)]


__all__ = ["Share", "split"]
