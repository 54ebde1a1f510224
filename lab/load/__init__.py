"""Load generation: workloads declared as data, open/closed executors, and the client-side history recorder.

Names are imported lazily (PEP 562) so `python -m lab.load.runner --bench` runs its module only once.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "lab.load.journey": ["Journey", "JourneySetting", "UnknownJourneyError", "build_journey", "journeys"],
    "lab.load.recorder": ["AttemptRecord", "Recorder", "RequestRecord", "read_attempts", "read_requests"],
    "lab.load.runner": ["Attempt", "Clock", "RunEvent", "RunSummary", "attempts_to", "run_closed", "run_open"],
    "lab.load.workload": ["WORKLOADS", "WorkloadError", "WorkloadModel", "parse_workload", "register_workload"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lab.load' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
