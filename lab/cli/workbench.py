"""`lab lab`: JupyterLab on the notebooks, with the lab's kernel."""

from __future__ import annotations

import click

from lab.cli.base import BAD_INPUT, FAILED, exits


@click.command("lab", epilog=exits(FAILED, BAD_INPUT))
@click.option("--port", default=8888, show_default=True, type=click.IntRange(1024, 65535), help="port on 127.0.0.1")
def jupyter_lab(port: int) -> None:
    """Open JupyterLab on the notebooks (127.0.0.1 only) with the lab's kernel; prints the URL."""
    from lab.report.kernel import jupyterlab_command

    command, env, cwd, url, kernel = jupyterlab_command(port)
    click.echo(f"JupyterLab on {cwd} with the `{kernel}` kernel: {url}")
    click.echo("Each notebook runs against the deployed stack (`lab up` first); Ctrl-C stops JupyterLab.")
    import os
    import sys

    sys.stdout.flush()
    os.chdir(cwd)
    os.execve(command[0], command, env)  # JupyterLab takes this process over: Ctrl-C and signals reach it directly


def register(main: click.Group) -> None:
    main.add_command(jupyter_lab)
