"""`lab ...`: thin commands over the lab package."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lab.stack.admission import ROOM_MODES
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
    from lab.common.paths import reports_dir, utc_stamp
    from lab.experiments.smoke import place_one_order, primary_sql
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
    out = reports_dir() / f"smoke-{utc_stamp()}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))
    click.echo(f"report: {out}")
    if found != "1":
        _fail(f"order {code} is not in the primary's database")


def _context():
    from lab.experiments.context import LabContext
    from lab.pretix.bootstrap import BootstrapError

    try:
        return LabContext.load()
    except BootstrapError as error:
        _fail(str(error))


@main.command()
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML parameter file (its `seed:` section: catalogue and customers)")
@click.option("--customers", type=int, help="how many fictitious customers (default 3000)")
@click.option("--login-pool", type=int, help="how many of them get a password to log in with (default 200)")
def seed(params_file, customers, login_pool) -> None:
    """Create the event, its products and quotas, and the fictitious customers (idempotent)."""
    from pydantic import ValidationError

    from lab.experiments.run import load_file
    from lab.pretix.seed import Catalogue, CustomerSeed

    raw = load_file(params_file)[1] if params_file else {}
    cust = dict(raw.get("customers") or {})
    if customers is not None:
        cust["count"] = customers
    if login_pool is not None:
        cust["login_pool"] = login_pool
    try:
        cat, who = Catalogue(**(raw.get("catalogue") or {})), CustomerSeed(**cust)
    except ValidationError as error:
        _fail(f"invalid seed parameters: {error}")
    ctx = _context()
    made = ctx.catalogue(cat)
    click.echo(f"event {cat.slug}: " + ", ".join(f"{n} (quota {m['size']})" for n, m in made.items()))
    buyers, figures = ctx.customers(who, log=click.echo)
    click.echo(f"customers: {len(buyers)} ready ({figures['existing']} existed, {figures['created']} created)")


@main.command()
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML parameter file (its `load:` section)")
@click.option("--journey", type=click.Choice(["api", "shop"]), help="purchase journey")
@click.option("--workload", "workload_json", help='workload as JSON, e.g. {"model":"constant","rate":5,"duration":30}')
@click.option("--name", help="run name (lowercase, digits, dashes)")
@click.option("--faults", "faults_arg",
              help="fault schedule: a YAML/JSON file, or inline JSON, e.g. "
                   '[{"at":20,"target":"pretix-web-1","action":"kill","duration":15}]')
@click.option("--admission", "admission_arg",
              help='admission control during the run (restored after): a mode (off) or JSON, e.g. '
                   '{"mode":"waiting-room","rate":12} or {"mode":"rate","rate":5,"burst":10}')
@click.option("--queue-max-wait", type=float, help="seconds a refused buyer waits in the queue in all (default 60)")
def load(params_file, journey, workload_json, name, faults_arg, admission_arg, queue_max_wait) -> None:
    """Run one workload against the deployed stack; record, monitor, save logs and audit."""
    import json as _json

    from lab.experiments.run import RunParamsError, execute, load_file, validate_load
    from lab.pretix.seed import Catalogue

    raw = dict(load_file(params_file)[2]) if params_file else {}
    if journey:
        raw["journey"] = journey
    if name:
        raw["name"] = name
    if workload_json:
        try:
            raw["workload"] = _json.loads(workload_json)
        except ValueError as error:
            _fail(f"--workload is not JSON: {error}")
    if faults_arg:
        raw["faults"] = _schedule_arg(faults_arg)
    if admission_arg:
        raw["admission"] = _admission_arg(admission_arg)
    if queue_max_wait is not None:
        raw["queue"] = {**(raw.get("queue") or {}), "max_wait": queue_max_wait}
    cat = Catalogue()
    try:
        params = validate_load(raw, cat)
    except RunParamsError as error:
        _fail(str(error))
    ctx = _context()
    try:
        run_ctx = ctx.for_run(cat)
    except FileNotFoundError as error:
        _fail(str(error))
    run_dir = execute(params, run_ctx, log=click.echo)
    click.echo(f"run folder: {run_dir}")


def _admission_arg(text: str) -> dict:
    """--admission: a bare mode name or a JSON object."""
    import json as _json

    if not text.lstrip().startswith("{"):
        return {"mode": text.strip()}
    try:
        doc = _json.loads(text)
    except ValueError as error:
        _fail(f"--admission is neither a mode name nor JSON: {error}")
    if not isinstance(doc, dict):
        _fail('--admission: expected a JSON object such as {"mode":"waiting-room","rate":12}')
    return doc


def _schedule_arg(text: str):
    """--faults: a file (YAML or JSON; a mapping with `faults:` or a list) or inline JSON."""
    import yaml

    path = Path(text)
    try:
        doc = yaml.safe_load(path.read_text() if path.is_file() else text)
    except yaml.YAMLError as error:
        _fail(f"--faults is neither a readable file nor JSON/YAML: {error}")
    if not isinstance(doc, list | dict):
        _fail("--faults: expected a list of fault steps or a mapping with `faults:` (see lab/faults/schedule.py)")
    return doc


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
def audit(run: Path) -> None:
    """Audit a run folder again against the database (lost, ghost, duplicate, oversold)."""
    from lab.evidence.audit import audit_run, load_run_meta

    meta = load_run_meta(run)
    ctx = _context()
    result = audit_run(run, ctx.docker, ctx.access, meta["organizer"], meta["event"],
                       since=meta["started"] - 5, overwrite=True)
    click.echo(result.describe())
    if not result.clean:
        sys.exit(1)


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--target", type=float, default=None, help="purchases per minute to judge and plan for "
              "[default: a study's own analysis.target_per_min, else 800]")
@click.option("--utilisation", type=float, default=None, help="plan each module's cores at this share "
              "[default: a study's own analysis.utilisation, else 0.7]")
def analyse(folder: Path, target: float | None, utilisation: float | None) -> None:
    """Headline figures of a run or study folder: verdicts, runs, saturation, CPU per purchase, cores needed.
    A study is judged by its own analysis parameters (targets, SLOs, warm-up), as its report was."""
    from lab.report.publish import study_summary

    if utilisation is not None and not 0 < utilisation <= 1:
        _fail(f"--utilisation must be in (0, 1]; got {utilisation}")
    try:
        s = study_summary(folder, target, utilisation)
    except FileNotFoundError as error:
        _fail(str(error))
    target, utilisation = s.targets.target_per_min, s.utilisation
    click.echo(f"{s.verdict}: {folder.name} ({len(s.table)} run(s))")
    for v in s.verdicts:
        click.echo(f"  {v.label:7} {v.check}: {v.measured} (target {v.target}; {v.evidence})")
    for r in s.table.itertuples():
        click.echo(f"  run {r.run_id} [{r.kind}, {r.journey}]: {r.throughput_per_min:.0f}/min sustained, "
                   f"p50/p95/p99 {r.p50:.2f}/{r.p95:.2f}/{r.p99:.2f} s, failed {r.error_rate:.2%}")
    for r in s.saturation.itertuples():
        click.echo(f"  capacity {r.journey}: at most {r.max_throughput_per_min:.0f}/min; {r.where}")
    for journey in s.journey_costs.index:
        per, need = s.journey_costs.loc[journey], s.cores(target, journey)
        click.echo(f"  {journey}: CPU-s per purchase and cores for {target:.0f}/min at {utilisation:.0%}: "
                   + ", ".join(f"{m} {per[m]:.3f} s -> {need[m]:.2f}" for m in per.index)
                   + f"; total {per.sum():.3f} s -> {need.sum():.2f} cores")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pdf/--no-pdf", default=True, show_default=True, help="also print a PDF with headless Chromium")
def report(folder: Path, pdf: bool) -> None:
    """Publish a run or study folder as reports/<name>/index.html (+ report.pdf) through 04-analysis."""
    from lab.report.publish import ReportError, report_run

    try:
        html = report_run(folder, pdf=pdf)
    except ReportError as error:
        _fail(str(error))
    click.echo(f"report: {html}" + (f" and {html.with_name('report.pdf')}" if pdf else ""))


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--label", "labels", multiple=True, help="a short label per run, in order (repeatable)")
@click.option("--name", help="report folder name under reports/ (default from the run names)")
@click.option("--pdf/--no-pdf", default=True, show_default=True, help="also print a PDF with headless Chromium")
def compare(folders: tuple[Path, ...], labels: tuple[str, ...], name: str | None, pdf: bool) -> None:
    """Compare two or more runs (e.g. sync vs async replication) through 05-compare; baseline first. Two study
    folders: their headline figures side by side, each difference said to be beyond the noise or not."""
    from lab.report.publish import ReportError, report_compare

    if len(folders) == 2 and all((f / "study.json").exists() for f in folders):
        from lab.analysis.compare import compare_studies
        from lab.report.publish import study_summary

        table = compare_studies(study_summary(folders[0]), study_summary(folders[1]))
        click.echo(f"baseline {folders[0].name} vs {folders[1].name}")
        click.echo(table.to_string(index=False))
        return

    if len(folders) < 2 and not any((f / "runs").is_dir() for f in folders):
        _fail("compare needs two or more run folders (or a study folder)")
    if labels and len(labels) != len(folders):
        _fail(f"--label given {len(labels)} times for {len(folders)} folders; give one per folder or none")
    try:
        html = report_compare(list(folders), list(labels), name, pdf=pdf)
    except ReportError as error:
        _fail(str(error))
    click.echo(f"report: {html}" + (f" and {html.with_name('report.pdf')}" if pdf else ""))


@main.group()
def bench() -> None:
    """Benchmarks that print figures: the load generator, and capacity under the SLO."""


@bench.command("loadgen")
@click.option("--rates", default="200,1000", show_default=True, help="arrival rates per second to hold")
@click.option("--seconds", default=10.0, show_default=True)
def bench_loadgen(rates: str, seconds: float) -> None:
    """The generator's CPU per request and schedule accuracy against the proxy's /lab-ping, beside wrk."""
    from lab.experiments import bench as b

    ctx = _context()
    results = b.bench_loadgen(ctx.access, tuple(float(r) for r in rates.split(",")), seconds)
    click.echo(f"{'tool':40} {'requests':>9} {'rate/s':>9} {'target':>7} {'CPU s/1000 req':>15} "
               f"{'lag p50/p99 ms':>15} {'errors':>6}")
    for r in results:
        lag = f"{r.lag_p50_ms:.1f}/{r.lag_p99_ms:.1f}" if r.lag_p50_ms is not None else "-"
        target = f"{r.target_rate:.0f}" if r.target_rate else "-"
        click.echo(f"{r.tool:40} {r.requests:9d} {r.achieved_rate:9.1f} {target:>7} {r.cpu_per_1000:15.3f} "
                   f"{lag:>15} {r.errors:6d}  {r.note}")
    ours = [r for r in results if r.target_rate]
    for r in ours:
        click.echo(f"schedule accuracy at {r.target_rate:.0f}/s: achieved {r.achieved_rate / r.target_rate:.2%}")
    click.echo(f"figures saved: {b.save('loadgen', {'results': results})}")


@bench.command("failover")
@click.option("--replication", "modes", default="async,sync", show_default=True,
              help="replication modes to measure, in order (async, sync)")
@click.option("--rate", default=8.0, show_default=True, help="api orders per second during the run")
@click.option("--seconds", default=70.0, show_default=True, help="length of each run")
@click.option("--kill-at", default=20.0, show_default=True, help="seconds into the run the primary is killed")
def bench_failover(modes: str, rate: float, seconds: float, kill_at: float) -> None:
    """Kill the PostgreSQL primary under api load for each replication mode: what is lost, how long writes stop."""
    from lab.experiments import bench as b
    from lab.experiments.bench_failover import HEADER, as_dicts
    from lab.experiments.bench_failover import bench_failover as run_bench

    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    bad = [m for m in chosen if m not in ("async", "sync")]
    if bad or not chosen:
        _fail(f"--replication: {', '.join(bad) or 'nothing given'}; allowed: async, sync")
    if not 0 < kill_at < seconds - 25:
        _fail(f"--kill-at {kill_at:g}: must leave the fault (10 s) and its recovery inside the {seconds:g} s run")
    results = run_bench(chosen, rate, seconds, kill_at, log=click.echo)
    click.echo(HEADER)
    for r in results:
        click.echo(r.line())
    click.echo(f"figures saved: {b.save('failover', {'results': as_dicts(results)})}")


@bench.command("capacity")
@click.option("--journey", type=click.Choice(["api", "shop"]), default="api", show_default=True)
@click.option("--rates", default=None, help="arrival rates per second to step through (default by journey)")
@click.option("--seconds", default=20.0, show_default=True, help="length of each step")
@click.option("--bare/--no-bare", default=True, show_default=True,
              help="also measure one bare pretix web container in the same run, for the ratio")
@click.option("--login-share", default=0.2, show_default=True, help="shop: share of buyers who log in")
@click.option("--p95", "p95_limit", type=float, default=None,
              help="SLO on purchase latency from scheduled start, seconds (default: api 1, shop 10: a whole "
                   "16-request checkout cannot finish in 1 s)")
def bench_capacity(journey: str, rates: str | None, seconds: float, bare: bool, login_share: float,
                   p95_limit: float | None) -> None:
    """Raise the arrival rate until the SLO breaks (p95, errors <= 1%); print sustained purchases/min."""
    import itertools

    from lab.common.paths import bench_path
    from lab.experiments import bench as b
    from lab.experiments.capacity import journey_builder

    default = "5,10,15,20,25,30,35,40" if journey == "api" else "0.5,1,1.5,2,2.5,3,4"
    if p95_limit is None:
        p95_limit = 1.0 if journey == "api" else 10.0
    if p95_limit <= 0:
        _fail("--p95 must be positive (seconds)")
    steps = [float(r) for r in (rates or default).split(",")]
    if any(r <= 0 for r in steps):
        _fail("--rates must all be positive")
    ctx = _context()
    build = journey_builder(ctx, journey, login_share=login_share)
    folder = bench_path(f"capacity-{journey}")  # each step's run folder; the figures go beside it at the end
    counter = itertools.count()

    def factory(base_url, tls, headers=None):
        return lambda: build(folder / f"step-{next(counter):02d}", base_url, tls, headers)

    click.echo(f"full stack ({journey} journey, through the proxy; SLO p95 <= {p95_limit:g} s, errors <= 1%):")
    full_steps, full = b.capacity_search(factory(ctx.access.base_url, ctx.access.tls()), ctx.docker, steps,
                                         seconds, p95_limit=p95_limit, log=click.echo)
    payload = {"journey": journey, "full": full_steps}
    bare_best = None
    if bare:
        container = b.bare_web_container(ctx.docker)
        try:
            headers = {"Host": ctx.access.base_url.split("//")[1], "X-Forwarded-Proto": "https"}
            b.wait_http("http://127.0.0.1:18000/healthcheck/", headers)
            click.echo("one bare pretix web container (no proxy, same limits as one web instance):")
            bare_steps, bare_best = b.capacity_search(factory("http://127.0.0.1:18000", ctx.access.tls(), headers),
                                                      ctx.docker, steps, seconds, p95_limit=p95_limit,
                                                      log=click.echo)
            payload["bare"] = bare_steps
        finally:
            container.remove(force=True)
    sustained = full.achieved_per_min if full else 0.0
    click.echo(f"sustained under the SLO, full stack: {sustained:.0f} purchases/min")
    if bare:
        bare_rate = bare_best.achieved_per_min if bare_best else 0.0
        ratio = sustained / bare_rate if bare_rate else float("nan")
        click.echo(f"sustained under the SLO, one bare web container: {bare_rate:.0f} purchases/min; "
                   f"ratio full/bare = {ratio:.2f}")
    if full:
        gen = full.generator_cpu
        stack = sum(full.stack_cpu.values())
        click.echo(f"generator CPU at the sustained step: {gen:.1f}s = {gen / stack:.1%} of the stack's {stack:.1f}s")
    click.echo(f"figures saved: {b.save(f'capacity-{journey}', payload)}")


@bench.command("admission")
@click.option("--journey", type=click.Choice(["api", "shop"]), default="api", show_default=True)
@click.option("--capacity", type=float, default=None,
              help="the journey's capacity (arrivals/s); default: measured first with the capacity search")
@click.option("--overload", default=2.0, show_default=True, help="offered load as a multiple of the capacity")
@click.option("--seconds", default=40.0, show_default=True, help="how long the load is offered")
@click.option("--max-wait", default=60.0, show_default=True, help="seconds a queued buyer waits in all")
@click.option("--control", "controls", multiple=True, type=click.Choice(list(ROOM_MODES)),
              help="admission control(s) compared with none (repeatable; default: waiting-room)")
def bench_admission(journey: str, capacity: float | None, overload: float, seconds: float, max_wait: float,
                    controls: tuple[str, ...]) -> None:
    """The same offered load (default 2x capacity) without and with admission control: goodput, latency, fairness."""
    import pandas as pd

    from lab.analysis.frames import Run
    from lab.analysis.traffic import admission_figure, admission_table
    from lab.common.paths import bench_path
    from lab.experiments.capacity import search_journey
    from lab.experiments.overload import run_overload
    from lab.load.queue import QueueSettings

    if capacity is not None and capacity <= 0:
        _fail("--capacity must be > 0 (arrivals per second)")
    if not 1 <= overload <= 10:
        _fail(f"--overload {overload:g}: allowed 1 to 10 (a multiple of the capacity)")
    if not 0 < seconds <= 600:
        _fail(f"--seconds {seconds:g}: allowed 0 < seconds <= 600")
    try:
        queue = QueueSettings(max_wait=max_wait)
    except ValueError as error:
        _fail(f"--max-wait {max_wait:g}: {error}")
    ctx = _context()
    if capacity is None:
        capacity = search_journey(ctx, journey, log=click.echo).capacity
        if capacity is None:
            _fail("the capacity search found no rate that meets the SLO")
    runs_dir = bench_path(f"admission-{journey}") / "runs"
    entries = run_overload(ctx, journey=journey, rate=capacity * overload, seconds=seconds, runs_dir=runs_dir,
                           log=click.echo, capacity=capacity, queue=queue, controls=controls or ("waiting-room",))
    runs = [Run.load(runs_dir.parent / e["dir"]) for e in entries]  # each run's files read once for both
    table = admission_table(runs, [e["label"] for e in entries])
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        click.echo(table.set_index("label").T.to_string(float_format=lambda v: f"{v:.2f}"))
    figure = admission_figure(runs, [e["label"] for e in entries])
    figure.savefig(runs_dir.parent / "admission.png", dpi=110)
    (runs_dir.parent / "table.csv").write_text(table.to_csv(index=False))
    click.echo(f"capacity {capacity:g}/s, offered {capacity * overload:g}/s for {seconds:g}s; "
               f"figures saved: {runs_dir.parent}")


@main.command()
@click.option("--journey", type=click.Choice(["api", "shop"]), default="api", show_default=True)
@click.option("--start", type=float, help="first arrival rate probed, per second (default api 4, shop 0.5)")
@click.option("--seconds", "probe_seconds", type=float, help="length of each probe (default api 10, shop 30)")
@click.option("--p95", "slo_p95", type=float, help="SLO on p95 latency from scheduled start, s (api 1, shop 10)")
@click.option("--tolerance", type=float, help="stop when pass and fail are this close, relative (default 0.1)")
@click.option("--max-rate", type=float, help="never probe above this rate (default 400)")
def capacity(journey: str, start, probe_seconds, slo_p95, tolerance, max_rate) -> None:
    """Find the journey's capacity under the SLO (step up, then bisect) and the admission limits it implies."""
    from lab.experiments.capacity import DEFAULTS, CapacityError, admission_for, search_journey, settings

    try:
        chosen = settings(DEFAULTS[journey], start=start, probe_seconds=probe_seconds, slo_p95=slo_p95,
                          tolerance=tolerance, max_rate=max_rate)
    except CapacityError as error:
        _fail(str(error))
    result = search_journey(_context(), journey, chosen, log=click.echo)
    if result.capacity is None:
        _fail("no probed rate met the SLO")
    room = admission_for(result)
    click.echo(f"waiting room for this capacity: {room.describe()}  "
               f"(lab load --admission '{room.model_dump_json(exclude_none=True)}')")


@main.command()
@click.option("--images", is_flag=True, help="also build the stack's images (cached)")
def engine(images: bool) -> None:
    """Make sure a Docker engine answers (installing and starting Debian's when root)."""
    from lab.stack.engine import EngineError, ensure_engine

    try:
        client = ensure_engine(log=lambda m: click.echo(m, err=True))
    except EngineError as error:
        _fail(str(error))
    click.echo(f"docker engine {client.version().get('Version')} answers")
    if images:
        from lab.stack.images import ensure_images

        for tag, image_id in ensure_images(client, log=lambda m: click.echo(m, err=True)).items():
            click.echo(f"{tag} {image_id[:19]}")


@main.command()
@click.argument("params_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--preset", help="a preset of studies/ (quick, default) when no PARAMS_FILE is given")
@click.option("--keep-stack", is_flag=True, help="leave the stack running afterwards (to explore it in `lab lab`)")
@click.option("--pdf/--no-pdf", default=True, show_default=True, help="also print the report as PDF (Chromium)")
@click.option("--check", is_flag=True, help="only validate the parameters and print the plan and its budget")
def study(params_file: Path | None, preset: str | None, keep_stack: bool, pdf: bool, check: bool) -> None:
    """Run a study end to end: deploy, seed, load, faults, analysis; publish reports/<study-id>/ (HTML + PDF).

    PARAMS_FILE is a study YAML (see studies/default.yaml); without it, --preset (default: `default`).
    """
    from lab.stack import deploy
    from lab.study import params as studies
    from lab.study.runner import StudyFailed, run_study

    if params_file and preset:
        _fail("give either PARAMS_FILE or --preset, not both")
    try:
        params = studies.load(params_file, preset)
    except studies.StudyParamsError as error:
        _fail(str(error))
    budget = studies.estimate(params)
    click.echo(f"study `{params.preset}`: {budget.describe()}; at most {params.max_minutes:g} min")
    for run in studies.plan_runs(params):
        click.echo(f"  {run.notebook:9} {run.name:22} {run.kind:9} {run.journey:4} {run.label}")
    if check:
        return
    import signal

    def _terminated(signum, frame):  # a CI cancel or `timeout` (SIGTERM) stops the study like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminated)
    try:
        result = run_study(params, log=click.echo, keep_stack=keep_stack, pdf=pdf)
    except deploy.DeployError as error:
        _fail(str(error))
    except StudyFailed as error:
        _fail(f"{error}\n  executed notebooks: {error.folder.notebooks_dir}\n  study record: "
              f"{error.folder.path / 'study.json'}")
    except KeyboardInterrupt:
        click.secho("interrupted: the study's record is kept" + ("" if keep_stack else " and the stack was torn down"),
                    fg="red", err=True)
        sys.exit(130)
    click.echo(f"report: {result.html}" + (f" and {result.pdf}" if result.pdf else ""))


@main.command("lab")
@click.option("--port", default=8888, show_default=True, help="port on 127.0.0.1")
def jupyter_lab(port: int) -> None:
    """Open JupyterLab on the notebooks (127.0.0.1 only) with the lab's kernel; prints the URL."""
    import os
    import secrets as _secrets

    from lab.common.paths import ROOT
    from lab.report.kernel import ensure_kernel

    kernel = ensure_kernel()
    token = _secrets.token_urlsafe(24)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    url = f"http://127.0.0.1:{port}/lab?token={token}"
    click.echo(f"JupyterLab on {ROOT / 'notebooks'} with the `{kernel}` kernel: {url}")
    click.echo("Each notebook runs against the deployed stack (`lab up` first); Ctrl-C stops JupyterLab.")
    command = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
               "--no-browser", f"--ServerApp.root_dir={ROOT / 'notebooks'}", f"--IdentityProvider.token={token}",
               f"--MultiKernelManager.default_kernel_name={kernel}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # the lab's set-up runs as root on a fresh machine
    sys.stdout.flush()
    os.chdir(ROOT / "notebooks")
    os.execve(command[0], command, env)  # JupyterLab takes this process over: Ctrl-C and signals reach it directly


if __name__ == "__main__":
    main()
