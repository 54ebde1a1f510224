"""py-spy on the gunicorn workers while one constant-rate step runs: where pretix's own CPU per order goes.

Off by default (`lab bench efficiency --profile`): sampling costs CPU on the measured machine, so the profiled
step is an extra step whose figures the efficiency does not use. py-spy runs on the host against the host PIDs of
each container's gunicorn master with --subprocesses (its workers), non-blocking, so pretix is never paused, and
--gil, so a sample is Python running (a worker waiting for PostgreSQL or redis releases the GIL and is not counted).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from lab.analysis.pyspy import Profile, profile
from lab.errors import LabError

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


def gunicorn_masters(container) -> list[int]:
    """Host PIDs of the gunicorn master processes in a container (`docker top` lists host PIDs)."""
    top = container.top()
    titles = top["Titles"]
    pid, ppid, cmd = titles.index("PID"), titles.index("PPID"), titles.index("CMD")
    procs = [(int(p[pid]), int(p[ppid]), p[cmd]) for p in top["Processes"] if "gunicorn" in p[cmd]]
    ours = {p for p, _, _ in procs}
    return [p for p, parent, _ in procs if parent not in ours]


def profiled_step(journey_factory: Callable[[], object], rate: float, seconds: float, containers: list,
                  out: Path) -> Profile:
    """One constant-rate step of `seconds` at `rate` with py-spy sampling each container's gunicorn workers; the
    raw samples are kept in `out` (a folder), the top frames returned."""
    from lab.experiments.bench import constant_step

    pyspy = ensure_pyspy()
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for c in containers:
        for master in gunicorn_masters(c):
            target = out / f"{c.name}-{master}.raw"
            procs.append((subprocess.Popen(
                [pyspy, "record", "--pid", str(master), "--subprocesses", "--duration", str(max(1, int(seconds))),
                 "--rate", str(SAMPLE_RATE), "--format", "raw", "--nolineno", "--nonblocking", "--gil",
                 "-o", str(target)],
                stdout=subprocess.DEVNULL, stderr=tempfile.TemporaryFile()), target))
    if not procs:
        raise ProfileError("no gunicorn master found to profile in " + ", ".join(c.name for c in containers))
    try:
        asyncio.run(constant_step(journey_factory, rate, seconds))
    finally:
        for proc, _ in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    texts = [target.read_text() for _, target in procs if target.exists()]
    if not texts:
        proc, _ = procs[0]
        proc.stderr.seek(0)  # type: ignore[union-attr]
        why = proc.stderr.read().decode(errors="replace").strip()  # type: ignore[union-attr]
        raise ProfileError(f"py-spy wrote no samples: {why.splitlines()[-1] if why else 'no message'}")
    return profile("\n".join(texts))


__all__ = ["ProfileError", "ensure_pyspy", "gunicorn_masters", "pinned", "profiled_step"]
