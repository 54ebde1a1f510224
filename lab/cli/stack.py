"""The stack's verbs: up, down, status, logs, engine, smoke."""

from __future__ import annotations

from pathlib import Path

import click

from lab.cli.base import BAD_INPUT, FAILED, bad_input, exits, log_err
from lab.errors import LabError

PARAMS_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
PORT = click.IntRange(1024, 65535)


@click.command(epilog=exits(FAILED, BAD_INPUT))
@click.option("--params", "params_file", type=PARAMS_FILE, help="YAML parameter file (its `stack:` section)")
@click.option("--https-port", type=PORT,
              help="HTTPS port published on 127.0.0.1 (default 8443, or PRETIX_LAB_HTTPS_PORT)")
@click.option("--http-port", type=PORT,
              help="HTTP port (redirects to HTTPS) on 127.0.0.1 (default 8080, or PRETIX_LAB_HTTP_PORT)")
@click.option("--web-workers", type=click.IntRange(1, 16), help="gunicorn workers per web instance")
@click.option("--replication", type=click.Choice(["async", "sync"]), help="PostgreSQL replication")
@click.option("--limit", "limits", multiple=True, metavar="SERVICE:cpus=N,memory=SIZE",
              help="override one service's limits (repeatable)")
@click.option("--pg-stat-statements", is_flag=True, default=None,
              help="PostgreSQL loads pg_stat_statements (`lab bench efficiency --profile` reads it; off by default)")
@click.option("--python", type=click.Choice(["3.11", "3.13"]), default=None,
              help="the Python pretix runs: Debian bookworm's 3.11 (default) or trixie's 3.13 (its own image)")
@click.option("--engine", type=click.Choice(["compose", "swarm"]),
              help="compose (default): this machine's engine; swarm: a Docker Swarm of --nodes simulated hosts")
@click.option("--nodes", type=int, help="swarm nodes, at least 3 (--engine swarm; default 3)")
def up(params_file, https_port, http_port, web_workers, replication, limits, pg_stat_statements, python, engine,
       nodes) -> None:
    """Deploy the stack (or converge it to the parameters) and bootstrap pretix."""
    from lab.experiments.inputs import parse_limits
    from lab.stack import deploy, params

    chosen = params.load(params_file, {"https_port": https_port, "http_port": http_port, "web_workers": web_workers,
                                       "replication": replication, "limits": parse_limits(limits),
                                       "pg_stat_statements": pg_stat_statements, "python": python,
                                       "engine": engine, "nodes": nodes})
    report = deploy.up(chosen, log=log_err)
    for line in report.restored:  # what a killed run had left in the fault journal
        click.echo(f"fault journal: {line}")
    click.echo(report.describe())
    click.echo(f"pretix: {report.access.base_url}/control/  (CA: {report.access.ca_file})")


@click.command(epilog=exits(FAILED, BAD_INPUT))
@click.option("--volumes", is_flag=True, help="also remove the data volumes and this deployment's secrets")
def down(volumes: bool) -> None:
    """Stop and remove the stack's containers and networks (only this project's)."""
    from lab.stack import deploy

    left = deploy.down(volumes=volumes, log=log_err)
    if left:
        raise LabError("left behind: " + ", ".join(left))
    click.echo("stack removed" + (" with its volumes and secrets" if volumes else ""))


@click.command(epilog=exits(FAILED, BAD_INPUT))
def status() -> None:
    """Each service: state, health, CPU, memory and addresses."""
    from lab.common import world
    from lab.stack import deploy

    rows = deploy.status()
    if not rows:
        click.echo(f"no container of the stack exists in project {world.project()} (deploy with `lab up`)")
        return
    swarm = any(r.node for r in rows)
    click.echo(f"project {world.project()} ({world.var_dir()})" + (" on a swarm" if swarm else ""))
    header = ("service", "container", "state", "health", "cpu%", "mem MiB")
    node_header = f" {'node':24}" if swarm else ""
    click.echo("{:18} {:32} {:9} {:10} {:>6} {:>15}".format(*header) + node_header + "  addresses")
    for r in rows:
        mem = "-" if r.memory_mib is None else f"{r.memory_mib:.0f}/{r.memory_limit_mib:.0f}"
        cpu = f"{r.cpu_percent:.1f}" if r.cpu_percent is not None else "-"
        addrs = " ".join(f"{n}={a}" for n, a in r.addresses.items())
        node = f" {r.node:24}" if swarm else ""
        click.echo(f"{r.service:18} {r.container[:32]:32} {r.state:9} {r.health:10} {cpu:>6} {mem:>15}{node}  {addrs}")


@click.command(epilog=exits(FAILED, BAD_INPUT))
@click.argument("service")
@click.option("--tail", default=200, show_default=True, type=click.IntRange(1))
def logs(service: str, tail: int) -> None:
    """Print a service's container log."""
    from lab.stack import deploy
    from lab.stack.topology import services

    if service not in services():
        raise bad_input("SERVICE", f"unknown service {service!r}; the services are: {', '.join(services())}",
                        tuple(services()))
    click.echo(deploy.logs(service, tail=tail), nl=False)


@click.command(epilog=exits(FAILED, BAD_INPUT))
@click.option("--images", is_flag=True, help="also build the stack's images (cached)")
def engine(images: bool) -> None:
    """Make sure a Docker engine answers (installing and starting Debian's when root)."""
    from lab.stack.engine import ensure_engine

    client = ensure_engine(log=log_err)
    click.echo(f"docker engine {client.version().get('Version')} answers")
    if images:
        from lab.stack.images import ensure_images

        for tag, image_id in ensure_images(client, log=log_err).items():
            click.echo(f"{tag} {image_id[:19]}")


@click.command(epilog=exits(FAILED, BAD_INPUT))
@click.option("--keep", is_flag=True, help="leave the stack running afterwards")
@click.option("--force", is_flag=True, help="replace an existing deployment (its data and secrets are removed)")
def smoke(keep: bool, force: bool) -> None:
    """Deploy, place one order through the proxy, check it in PostgreSQL, tear down; write a short report.
    Refuses to touch an existing deployment (a deployment folder with secrets, or the project's containers)
    without --force."""
    from lab.experiments.smoke import run_smoke

    result = run_smoke(keep=keep, force=force, log=log_err)
    click.echo("\n".join(result.lines))
    click.echo(f"report: {result.report}")
    if not result.found:
        raise LabError(f"order {result.code} is not in the primary's database")


def register(main: click.Group) -> None:
    for command in (up, down, status, logs, engine, smoke):
        main.add_command(command)
