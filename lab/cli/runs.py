"""A deployment's verbs: seed it, run a workload against it, audit a run again."""

from __future__ import annotations

from pathlib import Path

import click

from lab.cli.base import BAD_INPUT, FAILED, INTERRUPTED, context, exits, log_err
from lab.errors import LabError

PARAMS_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command(epilog=exits(FAILED, BAD_INPUT))
@click.option("--params", "params_file", type=PARAMS_FILE,
              help="YAML parameter file (its `seed:` section: catalogue and customers)")
@click.option("--customers", type=click.IntRange(1, 200_000), help="how many fictitious customers (default 3000)")
@click.option("--login-pool", type=click.IntRange(0), help="how many of them get a password to log in with "
              "(default 200)")
def seed(params_file, customers, login_pool) -> None:
    """Create the event, its products and quotas, and the fictitious customers (idempotent)."""
    from lab.experiments.inputs import seed_inputs

    cat, who = seed_inputs(params_file, customers, login_pool)
    ctx = context()
    made = ctx.catalogue(cat)
    click.echo(f"event {cat.slug}: " + ", ".join(f"{n} (quota {m['size']})" for n, m in made.items()))
    buyers, figures = ctx.customers(who, log=click.echo)
    click.echo(f"customers: {len(buyers)} ready ({figures['existing']} existed, {figures['created']} created)")


@click.command(epilog=exits(FAILED, BAD_INPUT, INTERRUPTED))
@click.option("--params", "params_file", type=PARAMS_FILE,
              help="YAML parameter file: its `load:` section, and its `seed:` section's catalogue (the event "
                   "the run buys from; default: the default catalogue)")
@click.option("--journey", help="purchase journey: a registered one (api, shop, or a plugin's)")
@click.option("--workload", "workload_json", help='workload as JSON, e.g. {"model":"constant","rate":5,"duration":30}')
@click.option("--name", help="run name (lowercase, digits, dashes)")
@click.option("--faults", "faults_arg",
              help="fault schedule: a YAML/JSON file, or inline JSON, e.g. "
                   '[{"at":20,"target":"pretix-web-1","action":"kill","duration":15}]')
@click.option("--admission", "admission_arg",
              help='admission control during the run (restored after): a mode (off) or JSON, e.g. '
                   '{"mode":"waiting-room","rate":12} or {"mode":"rate","rate":5,"burst":10}')
@click.option("--queue-max-wait", type=float, help="seconds a refused buyer waits in the queue in all (default 60)")
@click.option("--generators", type=int, help="generator processes sharing the open workload's schedule, each "
              "taking every K-th arrival (default 1; at most one per core)")
def load(params_file, journey, workload_json, name, faults_arg, admission_arg, queue_max_wait, generators) -> None:
    """Run one workload against the deployed stack; record, monitor, save logs and audit."""
    from lab.evidence.secretscan import check_or_fail
    from lab.experiments.inputs import load_inputs
    from lab.experiments.run import execute
    from lab.faults.signals import undo_on_signals

    params, cat = load_inputs(params_file, {"journey": journey, "workload": workload_json, "name": name,
                                            "faults": faults_arg, "admission": admission_arg,
                                            "queue_max_wait": queue_max_wait, "generators": generators})
    ctx = context()
    run_ctx = ctx.for_run(cat)
    with undo_on_signals(lambda: ctx.docker, log_err, exit_code=INTERRUPTED):  # SIGINT/TERM/HUP: undo, then exit
        run_dir = execute(params, run_ctx, log=click.echo)
    click.echo(f"run folder: {run_dir}")
    check_or_fail([run_dir], click.echo)  # every file the run wrote, searched for every secret of the deployment


@click.command(epilog=exits(FAILED, BAD_INPUT) + "\n  (1 also when the audit finds a problem)")
@click.argument("run", type=FOLDER)
def audit(run: Path) -> None:
    """Audit a run folder again against the database (lost, ghost, duplicate, oversold)."""
    from lab.evidence.audit import audit_run, load_run_meta

    meta = load_run_meta(run)
    ctx = context()
    result = audit_run(run, ctx.docker, ctx.access, meta["organizer"], meta["event"],
                       since=meta["started"] - 5, overwrite=True)
    click.echo(result.describe())
    if not result.clean:
        raise LabError(f"the audit of {run.name} is not clean")


def register(main: click.Group) -> None:
    for command in (seed, load, audit):
        main.add_command(command)
