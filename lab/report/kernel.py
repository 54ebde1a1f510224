"""The Jupyter kernel the lab's notebooks run in: the venv's own Python, for papermill and JupyterLab alike.

The kernelspec lives in the venv (sys.prefix), so it never touches the user's ~/.local. It carries no PYTHONPATH:
papermill starts the kernel in the project folder and `lab lab` starts JupyterLab with the project on PYTHONPATH,
and the kernel inherits that environment, so `import lab` reads this checkout's code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KERNEL_NAME = "pretix-lab"
DISPLAY_NAME = "pretix-lab (Python 3.11)"


def kernel_dir() -> Path:
    return Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME


def ensure_kernel() -> str:
    """Install the kernelspec into the venv when missing or pointing at another interpreter; returns its name."""
    spec = kernel_dir() / "kernel.json"
    try:
        current = json.loads(spec.read_text())
    except (OSError, ValueError):
        current = {}
    if (current.get("argv") or [None])[0] != sys.executable:
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL_NAME, display_name=DISPLAY_NAME, prefix=sys.prefix)
    return KERNEL_NAME


def jupyterlab_command(port: int) -> tuple[list[str], dict[str, str], Path, str, str]:
    """(argv, environment, folder, URL, kernel) of JupyterLab on the notebooks, on 127.0.0.1 only, with a fresh
    token and this checkout on PYTHONPATH (the kernel inherits it)."""
    import os
    import secrets

    from lab.common.paths import ROOT

    kernel = ensure_kernel()
    token = secrets.token_urlsafe(24)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    notebooks = ROOT / "notebooks"
    command = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
               "--no-browser", f"--ServerApp.root_dir={notebooks}", f"--IdentityProvider.token={token}",
               f"--MultiKernelManager.default_kernel_name={kernel}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # the lab's set-up runs as root on a fresh machine
    return command, env, notebooks, f"http://127.0.0.1:{port}/lab?token={token}", kernel
