"""Faults done to the stack through the Docker API, each with its undo, run as a declared schedule next to a load.

  catalogue  the registry (`faults`) and the template-method base class `Fault`; plugins register like built-ins
  builtin    kill, pause, restart, partition, cpu-throttle, memory-squeeze
  postgres   pg-failover (kill the primary, promote the standby; undo: rebuild, and fail back by default)
  redis      redis-failover (kill the master, the sentinels promote the replica; undo: rejoin, fail back)
  schedule   the experiment as data (FaultPlan: faults + steady_state), validated before anything runs
  probes     the steady-state hypothesis (health through the proxy, containers healthy, throughput vs baseline)
  runner     run_schedule(): one asyncio task per fault, undo always, everything in faults.parquet
  journal    the undo records on disk, written before each change (atomically; cleared by the undo)
  replay     what a killed run left in the journal, undone from the records by each action's own replay
  signals    SIGINT, SIGTERM and SIGHUP undo the active faults (lab load, lab study)
  analysis   per-fault error window, time to recover, latency during vs before (pure functions)
"""

from lab.faults import builtin, nodes, postgres, redis  # noqa: F401 - the built-ins register themselves
from lab.faults.analysis import (
    ErrorWindow,
    Recovery,
    analyse_faults,
    error_window,
    fault_spans,
    latency_during_vs_before,
    time_to_recover,
)
from lab.faults.catalogue import (
    Fault,
    FaultActionError,
    FaultContext,
    FaultInstance,
    UnknownFaultError,
    faults,
)
from lab.faults.record import FaultRecord, read_faults
from lab.faults.runner import FaultOutcome, ScheduleResult, run_schedule
from lab.faults.schedule import FaultPlan, FaultScheduleError, FaultStep, SteadyState, check_fits, parse_schedule

__all__ = [
    "ErrorWindow", "Fault", "FaultActionError", "FaultContext", "FaultInstance", "FaultOutcome",
    "FaultPlan", "FaultRecord", "FaultScheduleError", "FaultStep", "Recovery", "ScheduleResult", "SteadyState",
    "UnknownFaultError", "analyse_faults", "check_fits", "error_window", "fault_spans", "faults",
    "latency_during_vs_before", "parse_schedule", "read_faults", "run_schedule", "time_to_recover",
]
