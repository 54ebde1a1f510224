"""`lab faults ...`: the fault journal's verbs (what a killed run left to undo)."""

from __future__ import annotations

import click

from lab.cli.base import FAILED, exits, log_err
from lab.errors import LabError


@click.group("faults")
def faults_group() -> None:
    """The fault journal: what a killed run left to undo."""


@faults_group.command("undo", epilog=exits(FAILED) + "\n  (1 when a record could not be restored or read)")
@click.option("--force", is_flag=True, help="also undo the faults of a run that still goes on")
def undo(force: bool) -> None:
    """Undo what the fault journal holds (a run killed mid-fault); print what was restored and what was not."""
    from lab.faults.journal import FaultJournal
    from lab.faults.replay import replay
    from lab.stack.engine import ensure_engine

    if FaultJournal().entries() == ([], []):
        click.echo("nothing to undo: the fault journal is empty")
        return
    results = replay(ensure_engine(log=log_err), force=force)
    for outcome in results:
        click.echo(outcome.line())
    left = [outcome for outcome in results if not outcome.ok]
    if left:
        raise LabError(f"{len(left)} record(s) of the fault journal were not undone (see above); they stay in it")


def register(main: click.Group) -> None:
    main.add_command(faults_group)
