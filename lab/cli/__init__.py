"""`lab ...`: the command line, one module per verb group, each registering its commands on `main`.

No logic lives here: commands parse flags, call the lab, print. Errors are caught once, in LabGroup.invoke:
an InputError (bad input) exits 2, any other LabError exits 1, each as one line on stderr.
"""

from __future__ import annotations

from lab.cli import bench, faults, reports, runs, stack, study, workbench
from lab.cli.base import main

MODULES = (stack, runs, faults, reports, study, bench, workbench)  # a new verb group: a module with register(main)
for _module in MODULES:
    _module.register(main)

__all__ = ["main"]
