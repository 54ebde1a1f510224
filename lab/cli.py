"""`lab ...`: thin commands over the lab package."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lab.stack.params import ParamsError, ServiceLimits


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


def _parse_limits(values: tuple[str, ...]) -> dict[str, dict]:
    """--limit pretix-web-1:cpus=1.5,memory=2G"""
    limits: dict[str, dict] = {}
    for value in values:
        service, _, spec = value.partition(":")
        entry: dict[str, str] = {}
        for part in filter(None, spec.split(",")):
            key, _, val = part.partition("=")
            if key not in ServiceLimits.model_fields:
                _fail(f"--limit {value}: unknown limit {key!r}; allowed: cpus, memory")
            entry[key] = val
        if not service or not entry:
            _fail(f"--limit {value}: expected SERVICE:cpus=N,memory=SIZE")
        limits[service] = entry
    return limits


@click.group()
def main() -> None:
    """pretix-lab: deploy pretix, drive purchase load, break things, and report what happened."""


@main.command()
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML parameter file (its `stack:` section)")
@click.option("--https-port", type=int, help="HTTPS port published on 127.0.0.1 (default 8443)")
@click.option("--http-port", type=int, help="HTTP port (redirects to HTTPS) on 127.0.0.1 (default 8080)")
@click.option("--web-workers", type=int, help="gunicorn workers per web instance")
@click.option("--replication", help="PostgreSQL replication: async or sync")
@click.option("--limit", "limits", multiple=True, metavar="SERVICE:cpus=N,memory=SIZE",
              help="override one service's limits (repeatable)")
def up(params_file, https_port, http_port, web_workers, replication, limits) -> None:
    """Deploy the stack (or converge it to the parameters) and bootstrap pretix."""
    from lab.stack import deploy, params
    from lab.stack.engine import EngineError
    from lab.stack.images import ImageError

    try:
        chosen = params.load(params_file, {
            "https_port": https_port, "http_port": http_port, "web_workers": web_workers,
            "replication": replication, "limits": _parse_limits(limits),
        })
        report = deploy.up(chosen, log=lambda m: click.echo(m, err=True))
    except (ParamsError, EngineError, ImageError, deploy.DeployError) as error:
        _fail(str(error))
    click.echo(report.describe())
    click.echo(f"pretix: {report.access.base_url}/control/  (CA: {report.access.ca_file})")


@main.command()
@click.option("--volumes", is_flag=True, help="also remove the data volumes and this deployment's secrets")
def down(volumes: bool) -> None:
    """Stop and remove the stack's containers and networks (only this project's)."""
    from lab.stack import deploy

    left = deploy.down(volumes=volumes, log=lambda m: click.echo(m, err=True))
    if left:
        _fail("left behind: " + ", ".join(left))
    click.echo("stack removed" + (" with its volumes and secrets" if volumes else ""))


@main.command()
def status() -> None:
    """Each service: state, health, CPU, memory and addresses."""
    from lab.stack import deploy

    rows = deploy.status()
    if not rows:
        click.echo("no container of the stack exists (deploy with `lab up`)")
        return
    header = ("service", "container", "state", "health", "cpu%", "mem MiB")
    click.echo("{:18} {:32} {:9} {:10} {:>6} {:>15}  addresses".format(*header))
    for r in rows:
        mem = "-" if r.memory_mib is None else f"{r.memory_mib:.0f}/{r.memory_limit_mib:.0f}"
        cpu = f"{r.cpu_percent:.1f}" if r.cpu_percent is not None else "-"
        addrs = " ".join(f"{n}={a}" for n, a in r.addresses.items())
        click.echo(f"{r.service:18} {r.container:32} {r.state:9} {r.health:10} {cpu:>6} {mem:>15}  {addrs}")


@main.command()
@click.argument("service")
@click.option("--tail", default=200, show_default=True)
def logs(service: str, tail: int) -> None:
    """Print a service's container log."""
    from lab.stack import deploy
    from lab.stack.topology import services

    if service not in services():
        _fail(f"unknown service {service!r}; the services are: {', '.join(services())}")
    click.echo(deploy.logs(service, tail=tail), nl=False)


@main.command()
@click.option("--keep", is_flag=True, help="leave the stack running afterwards")
def smoke(keep: bool) -> None:
    """Deploy, place one order through the proxy, check it in PostgreSQL, tear down; write a short report."""
    import datetime as dt

    from lab.paths import reports_dir
    from lab.smoke import place_one_order, primary_sql
    from lab.stack import deploy, params
    from lab.stack.engine import ensure_engine

    report = deploy.up(params.StackParams(), log=lambda m: click.echo(m, err=True))
    lines = [report.describe()]
    try:
        order = place_one_order(report.access)
        code = order["code"]
        found = primary_sql(ensure_engine(), f"select count(*) from pretixbase_order where code = '{code}'")
        lines.append(f"order {code} (status {order['status']}) placed through the proxy over verified HTTPS, "
                     f"served by {order['_served_by']}; in the primary's database: {found == '1'}")
        rows = deploy.status()
        lines += [f"  {r.service:18} {r.state:8} {r.health:8} cpu {r.cpu_percent}% mem {r.memory_mib} MiB"
                  for r in rows]
    finally:
        if not keep:
            deploy.down(volumes=True, log=lambda m: click.echo(m, err=True))
            lines.append("stack removed with its volumes")
    out = reports_dir() / f"smoke-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))
    click.echo(f"report: {out}")
    if found != "1":
        _fail(f"order {code} is not in the primary's database")


@main.command()
def study() -> None:
    """Run the default study end to end (for now: the deployment smoke test) and leave a report."""
    from click import get_current_context

    get_current_context().invoke(smoke)


if __name__ == "__main__":
    main()
