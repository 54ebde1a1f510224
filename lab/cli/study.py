"""`lab study`: a whole study, end to end, from a study YAML or a preset."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lab.cli.base import (
    BAD_INPUT,
    FAILED,
    INTERRUPTED,
    VERDICT_FAIL,
    bad_input,
    exits,
    fail,
    fail_on_verdict_option,
    verdict_exit,
)


@click.command(epilog=exits(FAILED, BAD_INPUT, VERDICT_FAIL, INTERRUPTED))
@click.argument("params_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--preset", help="a preset of studies/ (quick, default) when no PARAMS_FILE is given")
@click.option("--keep-stack", is_flag=True, help="leave the stack running afterwards (to explore it in `lab lab`)")
@click.option("--pdf/--no-pdf", default=True, show_default=True, help="also print the report as PDF (Chromium)")
@click.option("--check", is_flag=True, help="only validate the parameters and print the plan and its budget")
@fail_on_verdict_option
def study(params_file: Path | None, preset: str | None, keep_stack: bool, pdf: bool, check: bool,
          fail_on_verdict: bool) -> None:
    """Run a study end to end: deploy, seed, load, faults, analysis; publish reports/<study-id>/ (HTML + PDF).

    PARAMS_FILE is a study YAML (see studies/default.yaml); without it, --preset (default: `default`).
    """
    from lab.report.publish import study_verdict
    from lab.study import params as studies
    from lab.study.runner import StudyFailed, run_study

    if params_file and preset:
        raise bad_input("--preset", "give either PARAMS_FILE or --preset, not both")
    params = studies.load(params_file, preset)
    budget = studies.estimate(params)
    click.echo(f"study `{params.preset}`: {budget.describe()}; at most {params.max_minutes:g} min")
    for run in studies.plan_runs(params):
        click.echo(f"  {run.notebook:9} {run.name:22} {run.kind:9} {run.journey:4} {run.label}")
    if check:
        return

    from lab.faults.signals import undo_on_signals

    try:  # SIGINT, SIGTERM (a CI cancel, `timeout`), SIGHUP stop the study like Ctrl-C; its faults are undone
        with undo_on_signals(lambda: None, click.echo, orderly=True):
            result = run_study(params, log=click.echo, keep_stack=keep_stack, pdf=pdf)
    except StudyFailed as error:
        fail(f"{error}; executed notebooks: {error.folder.notebooks_dir}; study record: "
             f"{error.folder.path / 'study.json'}", FAILED)
    except KeyboardInterrupt:
        click.secho("interrupted: the study's record is kept" + ("" if keep_stack else " and the stack was torn down"),
                    fg="red", err=True)
        sys.exit(INTERRUPTED)
    click.echo(f"report: {result.html}" + (f" and {result.pdf}" if result.pdf else ""))
    verdict_exit(study_verdict(result.folder.path), fail_on_verdict)


def register(main: click.Group) -> None:
    main.add_command(study)
