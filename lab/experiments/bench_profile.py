"""One constant-rate step with its costs recorded: py-spy on the gunicorn workers and the celery processes, and
pg_stat_statements on the side's PostgreSQL, so the CPU per order can be followed into frames and queries.

Off by default (`lab bench efficiency --profile`): sampling costs CPU on the measured machine, so the profiled
step is an extra step whose figures the efficiency does not use. py-spy runs on the host against the host PIDs of
each container's gunicorn or celery master with --subprocesses (its workers or pool processes), non-blocking, so
pretix is never paused, and --gil, so a sample is Python running (a worker waiting for PostgreSQL or redis releases
the GIL and is not counted). pg_stat_statements is reset just before the step and read just after it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.analysis.pyspy import WITHIN, Profile, profile
from lab.errors import LabError
from lab.stack import pgstat

SAMPLE_RATE = 50  # per second and process: enough for shares of a few percent in a 20 s step


class ProfileError(LabError):
    """py-spy could not be installed or could not attach."""


def pinned(extra: str = "bench", package: str = "py-spy") -> str:
    """The requirement pyproject.toml pins for `package` in the optional dependency group `extra`."""
    import tomllib

    from lab.common.paths import ROOT

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][extra]
    for dep in deps:
        if re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0].lower() == package:
            return dep
    raise ProfileError(f"pyproject.toml pins no {package} in its {extra!r} extra")


def ensure_pyspy() -> str:
    """py-spy's binary beside this interpreter, pip-installed at the pinned version on first use."""
    binary = Path(sys.executable).parent / "py-spy"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", pinned()], capture_output=True)
    if not binary.exists():
        raise ProfileError(f"py-spy could not be installed ({pinned()}): pip install it into {sys.executable}'s "
                           "environment")
    return str(binary)


def masters(container, program: str = "gunicorn") -> list[int]:
    """Host PIDs of a program's master processes in a container: its processes whose parent is not one of them
    (`docker top` lists host PIDs)."""
    top = container.top()
    titles = top["Titles"]
    pid, ppid, cmd = titles.index("PID"), titles.index("PPID"), titles.index("CMD")
    procs = [(int(p[pid]), int(p[ppid]), p[cmd]) for p in top["Processes"] if program in p[cmd].split(" -")[0]]
    ours = {p for p, _, _ in procs}
    return [p for p, parent, _ in procs if parent not in ours]


def gunicorn_masters(container) -> list[int]:
    """Host PIDs of the gunicorn master processes in a container."""
    return masters(container, "gunicorn")


@dataclass
class ProfiledStep:
    """What one profiled step left: its orders, py-spy's profile per program, pg_stat_statements' read, and why a
    part is missing (the step's other parts stand without it)."""

    rate: float
    seconds: float
    orders: int = 0
    sample_rate: int = SAMPLE_RATE
    profiles: dict[str, Profile] = field(default_factory=dict)
    statements: dict | None = None  # lab.stack.pgstat.read's document
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per service over the step (cgroup counters)
    problems: list[str] = field(default_factory=list)


def _record(pyspy: str, master: int, seconds: float, target: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [pyspy, "record", "--pid", str(master), "--subprocesses", "--duration", str(max(1, int(seconds))),
         "--rate", str(SAMPLE_RATE), "--format", "raw", "--nolineno", "--nonblocking", "--gil", "-o", str(target)],
        stdout=subprocess.DEVNULL, stderr=tempfile.TemporaryFile())


def _why(proc: subprocess.Popen) -> str:
    proc.stderr.seek(0)  # type: ignore[union-attr]
    why = proc.stderr.read().decode(errors="replace").strip()  # type: ignore[union-attr]
    return why.splitlines()[-1] if why else "no message"


def profiled_step(journey_factory: Callable[[], object], rate: float, seconds: float,
                  targets: dict[str, list], out: Path, postgres=None,
                  cpu: Callable[[], dict[str, float]] | None = None) -> ProfiledStep:
    """One constant-rate step of `seconds` at `rate` with py-spy sampling each program's containers (`targets`:
    'gunicorn' or 'celery' -> containers) and, when `postgres` (a container) is given, pg_stat_statements reset
    before and read after the step; `cpu` reads the side's CPU seconds per service, so the samples' shares can be
    turned into CPU per order (py-spy's GIL-held time also counts a process that waits for a core). The raw
    samples are kept in `out` (a folder)."""
    from lab.experiments.bench import constant_step
    from lab.stack.cpu import delta

    pyspy = ensure_pyspy()
    out.mkdir(parents=True, exist_ok=True)
    result = ProfiledStep(rate, seconds)
    if postgres is not None:  # before py-spy starts: a failure here leaves no sampler running
        pgstat.reset(postgres)
    procs: list[tuple[str, subprocess.Popen, Path]] = []
    for program, containers in targets.items():
        found = [(c, m) for c in containers for m in masters(c, program)]
        if not found:
            result.problems.append(f"no {program} master found in " + ", ".join(c.name for c in containers))
        for c, master in found:
            target = out / f"{program}-{c.name}-{master}.raw"
            procs.append((program, _record(pyspy, master, seconds, target), target))
    if not procs:
        raise ProfileError("; ".join(result.problems))
    cpu0 = cpu() if cpu is not None else None
    try:
        _, attempts = asyncio.run(constant_step(journey_factory, rate, seconds))
    finally:
        for _, proc, _ in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if cpu is not None and cpu0 is not None:
        result.cpu_seconds = delta(cpu0, cpu())
    result.orders = [a.outcome for a in attempts].count("purchased")  # type: ignore[attr-defined]
    if postgres is not None:
        try:
            result.statements = pgstat.read(postgres)
        except pgstat.StatementsError as error:
            result.problems.append(str(error))
    for program in targets:
        mine = [(proc, target) for p, proc, target in procs if p == program]
        texts = [target.read_text() for _, target in mine if target.exists()]
        if texts:
            result.profiles[program] = profile("\n".join(texts), within=WITHIN[program])
        elif mine:
            result.problems.append(f"py-spy wrote no samples of {program}: {_why(mine[0][0])}")
    return result


__all__ = ["ProfileError", "ProfiledStep", "ensure_pyspy", "gunicorn_masters", "masters", "pinned",
           "profiled_step"]
