"""Measurements that print figures: `lab capacity` and the `lab bench ...` group."""

from __future__ import annotations

import click

from lab.cli.base import BAD_INPUT, FAILED, bad_input, context, exits
from lab.errors import LabError
from lab.stack.admission import ROOM_MODES

POSITIVE = click.FloatRange(0, min_open=True)


class RateList(click.ParamType):
    """A comma-separated list of positive rates, e.g. 5,10,15."""

    name = "RATE,RATE,..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            rates = tuple(float(r) for r in str(value).split(",") if r.strip())
        except ValueError:
            self.fail(f"{value!r}: expected comma-separated numbers, e.g. 5,10,15", param, ctx)
        if not rates or any(r <= 0 for r in rates):
            self.fail(f"{value!r}: every rate must be > 0 (per second)", param, ctx)
        return rates


@click.command(epilog=exits(FAILED, BAD_INPUT) + "\n  (1 also when no probed rate met the SLO)")
@click.option("--journey", type=click.Choice(["api", "shop"]), default="api", show_default=True)
@click.option("--start", type=float, help="first arrival rate probed, per second (default api 4, shop 0.5)")
@click.option("--seconds", "probe_seconds", type=float, help="length of each probe (default api 10, shop 30)")
@click.option("--p95", "slo_p95", type=float, help="SLO on p95 latency from scheduled start, s (api 1, shop 10)")
@click.option("--tolerance", type=float, help="stop when pass and fail are this close, relative (default 0.1)")
@click.option("--max-rate", type=float, help="never probe above this rate (default 400)")
def capacity(journey: str, start, probe_seconds, slo_p95, tolerance, max_rate) -> None:
    """Find the journey's capacity under the SLO (step up, then bisect) and the admission limits it implies.
    A probe meets the SLO as a study's run does (p95, failed attempts, goodput, latency not still rising)."""
    from lab.experiments.capacity import DEFAULTS, admission_for, search_journey, settings

    chosen = settings(DEFAULTS[journey], start=start, probe_seconds=probe_seconds, slo_p95=slo_p95,
                      tolerance=tolerance, max_rate=max_rate)
    result = search_journey(context(), journey, chosen, log=click.echo)
    if result.capacity is None:
        raise LabError("no probed rate met the SLO")
    room = admission_for(result)
    click.echo(f"waiting room for this capacity: {room.describe()}  "
               f"(lab load --admission '{room.model_dump_json(exclude_none=True)}')")


@click.group(epilog=exits(FAILED, BAD_INPUT))
def bench() -> None:
    """Benchmarks that print figures: the load generator, and capacity under the SLO."""


@bench.command("loadgen", epilog=exits(FAILED, BAD_INPUT))
@click.option("--rates", type=RateList(), default=None,
              help="arrival rates per second (default 200,1000; with --generators K > 1 or --target local: 2250)")
@click.option("--seconds", default=10.0, show_default=True, type=POSITIVE)
@click.option("--generators", default=1, show_default=True, type=int,
              help="K > 1: one process and K processes sharing one schedule, at the same rates, interleaved")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 10),
              help="with --generators: interleaved repeats (median and min-max printed)")
@click.option("--target", type=click.Choice(["auto", "proxy", "local"]), default="auto", show_default=True,
              help="proxy: the deployed stack's /lab-ping; local: a tiny server the bench starts on 127.0.0.1; "
                   "auto: the proxy with --generators 1, else the proxy when a deployment exists, else local")
def bench_loadgen(rates: tuple[float, ...] | None, seconds: float, generators: int, repeats: int,
                  target: str) -> None:
    """The generator's CPU per request and schedule accuracy against the proxy's /lab-ping, beside wrk; with
    --generators K, one process against K processes at the same offered rate (the rate held, the lag p99)."""
    from lab.experiments import bench as b
    from lab.load.fanout import max_generators

    top = max_generators()
    if not 1 <= generators <= top:
        raise bad_input("--generators", f"{generators} is not between 1 and {top} (one process per core at most); "
                        f"allowed: 1..{top}", range(1, top + 1))
    if generators > 1 or target == "local":
        _bench_generators(rates or (2250.0,), seconds, generators, repeats, target)
        return
    results = b.bench_loadgen(context().access, rates or (200.0, 1000.0), seconds)
    click.echo(f"{'tool':40} {'requests':>9} {'rate/s':>9} {'target':>7} {'CPU s/1000 req':>15} "
               f"{'lag p50/p99 ms':>15} {'errors':>6}")
    for r in results:
        lag = f"{r.lag_p50_ms:.1f}/{r.lag_p99_ms:.1f}" if r.lag_p50_ms is not None else "-"
        target = f"{r.target_rate:.0f}" if r.target_rate else "-"
        click.echo(f"{r.tool:40} {r.requests:9d} {r.achieved_rate:9.1f} {target:>7} {r.cpu_per_1000:15.3f} "
                   f"{lag:>15} {r.errors:6d}  {r.note}")
    for r in (r for r in results if r.target_rate):
        click.echo(f"schedule accuracy at {r.target_rate:.0f}/s: achieved {r.achieved_rate / r.target_rate:.2%}")
    click.echo(f"figures saved: {b.save('loadgen', {'results': results})}")


def _bench_generators(rates: tuple[float, ...], seconds: float, generators: int, repeats: int, target: str) -> None:
    from contextlib import ExitStack

    from lab.experiments import bench as b
    from lab.experiments.bench_generators import bench_generators
    from lab.experiments.ping_server import PingServer
    from lab.pretix.bootstrap import PretixAccess

    with ExitStack() as stack:
        access = None
        if target != "local":
            try:
                access = PretixAccess.load()
            except LabError:
                if target == "proxy":
                    raise
        if access is not None:
            base_url, ca_file = access.base_url, access.ca_file
        else:
            server = stack.enter_context(PingServer(lifetime=len(rates) * repeats * 2 * (seconds + 60)))
            base_url, ca_file = server.base_url, None
        results = []
        for rate in rates:
            result = bench_generators(base_url, rate, seconds, generators, repeats, ca_file=ca_file, log=click.echo)
            click.echo("\n".join(result.lines()))
            results.append(result.to_dict())
    click.echo(f"figures saved: {b.save(f'loadgen-generators-{generators}', {'results': results})}")


@bench.command("failover", epilog=exits(FAILED, BAD_INPUT))
@click.option("--replication", "modes", default="async,sync", show_default=True,
              help="replication modes to measure, in order (async, sync)")
@click.option("--rate", default=8.0, show_default=True, type=POSITIVE, help="api orders per second during the run")
@click.option("--seconds", default=70.0, show_default=True, type=POSITIVE, help="length of each run")
@click.option("--kill-at", default=20.0, show_default=True, type=POSITIVE,
              help="seconds into the run the primary is killed")
def bench_failover(modes: str, rate: float, seconds: float, kill_at: float) -> None:
    """Kill the PostgreSQL primary under api load for each replication mode: what is lost, how long writes stop."""
    from lab.experiments import bench as b
    from lab.experiments.bench_failover import HEADER, as_dicts
    from lab.experiments.bench_failover import bench_failover as run_bench

    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    bad = [m for m in chosen if m not in ("async", "sync")]
    if bad or not chosen:
        raise bad_input("--replication", f"{', '.join(bad) or 'nothing given'}; allowed: async, sync",
                        ("async", "sync"))
    if not kill_at < seconds - 25:
        raise bad_input("--kill-at", f"{kill_at:g}: must leave the fault (10 s) and its recovery inside the "
                        f"{seconds:g} s run; allowed: 0 < kill-at < {seconds - 25:g}")
    results = run_bench(chosen, rate, seconds, kill_at, log=click.echo)
    click.echo(HEADER)
    for r in results:
        click.echo(r.line())
    click.echo(f"figures saved: {b.save('failover', {'results': as_dicts(results)})}")


@bench.command("capacity", epilog=exits(FAILED, BAD_INPUT))
@click.option("--journey", type=click.Choice(["api", "shop"]), default="api", show_default=True)
@click.option("--rates", type=RateList(), default=None, help="arrival rates per second to step through "
              "(default by journey)")
@click.option("--seconds", default=20.0, show_default=True, type=POSITIVE, help="length of each step")
@click.option("--bare/--no-bare", default=True, show_default=True,
              help="also measure one bare pretix web container in the same run, for the ratio")
@click.option("--login-share", default=0.2, show_default=True, type=click.FloatRange(0, 1),
              help="shop: share of buyers who log in")
@click.option("--p95", "p95_limit", type=POSITIVE, default=None,
              help="SLO on purchase latency from scheduled start, seconds (default: api 1, shop 10: a whole "
                   "16-request checkout cannot finish in 1 s)")
def bench_capacity(journey: str, rates, seconds: float, bare: bool, login_share: float,
                   p95_limit: float | None) -> None:
    """Raise the arrival rate until the SLO breaks (the study's definition: p95, failed <= 1%, goodput, latency
    not still rising); print sustained purchases/min, full stack and one bare web container."""
    from lab.experiments.bench_capacity import bench_capacity as run_bench

    result = run_bench(context(), journey, rates, seconds, bare=bare, login_share=login_share,
                       p95_limit=p95_limit, log=click.echo)
    click.echo("\n".join(result.lines()))


@bench.command("efficiency", epilog=exits(FAILED, BAD_INPUT))
@click.option("--journey", type=click.Choice(["api", "shop"]), default="api", show_default=True)
@click.option("--rates", type=RateList(), default=None, help="arrival rates per second to step through, both sides "
              "(default api 3,4.5,6,7.5,9,10.5,12,13.5,15,18,21; shop 0.5,1,1.5,2,2.5,3)")
@click.option("--seconds", type=POSITIVE, default=None, help="length of each step (default api 20, shop 40)")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 10),
              help="interleaved repeats (odd: stack first, even: alone first); figures are medians over them")
@click.option("--profile", is_flag=True, help="then one more step per side at its top sustained rate with py-spy "
              "on gunicorn and celery and pg_stat_statements on PostgreSQL; print the top costs per order (py-spy is "
              "installed on first use; the stack must be up with `lab up --pg-stat-statements`)")
@click.option("--compare-tuning", "tuning_spec", default=None, metavar="FILE|deployed|stock",
              help="instead: pretix alone stock against pretix alone with the tuning knobs of FILE's stack section "
              "(or the deployed stack's; `stock`: an A/A run), at fixed rates (default api 3,5; shop 0.5,1): "
              "pretix's CPU per order per side and the tuned/stock ratio")
@click.option("--compare-stack", "stack_spec", default=None, metavar="FILE|defaults",
              help="instead: the deployed stack (A) against itself converged to FILE's HA/lab knobs and tuning knobs "
              "(B; `defaults`: every HA/lab knob at its default), in turn, interleaved, at fixed rates (default api "
              "3,6; shop 0.5,1): idle cores and CPU per order per module per side, and B/A; ends converged to A")
def bench_efficiency(journey: str, rates, seconds: float | None, repeats: int, profile: bool,
                     tuning_spec: str | None, stack_spec: str | None) -> None:
    """The deployed stack against pretix alone (same image and pretix.cfg minus the HA parts, a copy of the stack's
    database), in one run, interleaved: sustained purchases/min under the SLO, CPU per order per module and idle
    cores, each a median over the repeats. The last line is the ratio of the sustained rates."""
    from lab.experiments.bench_efficiency import bench_efficiency as run_bench

    if tuning_spec is not None and stack_spec is not None:
        raise bad_input("--compare-stack", "give --compare-tuning or --compare-stack, not both; allowed: one of them",
                        ("--compare-tuning", "--compare-stack"))
    if stack_spec is not None:
        from lab.experiments.bench_stack_knobs import bench_stack_knobs, variant_params
        from lab.stack.deploy import saved_params
        from lab.stack.params import StackParams

        variant = variant_params(stack_spec, saved_params() or StackParams())  # a bad FILE stops here
        result_s = bench_stack_knobs(context, variant, stack_spec, journey, rates, seconds, repeats, log=click.echo)
        click.echo("\n".join(result_s.lines()))
        return
    if tuning_spec is not None:
        from lab.experiments.bench_tuning import bench_tuning, tuned_params

        tuned = tuned_params(tuning_spec)  # a bad FILE stops here, before anything starts
        result_t = bench_tuning(context(), tuned, tuning_spec, journey, rates, seconds, repeats, log=click.echo)
        click.echo("\n".join(result_t.lines()))
        return
    result = run_bench(context(), journey, rates, seconds, repeats, profile=profile, log=click.echo)
    click.echo("\n".join(result.lines()))


@bench.command("alone-host", epilog=exits(FAILED, BAD_INPUT))
@click.option("--journey", type=click.Choice(["api", "shop"]), default="api", show_default=True)
@click.option("--rates", type=RateList(), default=None, help="fixed arrival rates per second, both sides (default "
              "api 3,5; shop 0.5,1)")
@click.option("--seconds", type=POSITIVE, default=None, help="length of each step (default api 20, shop 40)")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 10),
              help="interleaved repeats (odd: containers first, even: host first)")
def bench_alone_host(journey: str, rates, seconds: float | None, repeats: int) -> None:
    """pretix alone in containers (what the efficiency benches compare with) against pretix alone on the host (same
    wheelhouse, Python build, pretix.cfg and knobs; Debian's PostgreSQL 15 and redis-server, installed when missing),
    in one run: CPU per order per side and the containers/host ratio, which should be within 10%. Needs the stack up
    (its database is copied to both sides) and root (the host side runs in its own cgroups)."""
    from lab.experiments.bench_alone_host import bench_alone_host as run_bench

    result = run_bench(context(), journey, rates, seconds, repeats, log=click.echo)
    click.echo("\n".join(result.lines()))


@bench.command("idle", epilog=exits(FAILED, BAD_INPUT))
@click.option("--seconds", default=60.0, show_default=True, type=click.FloatRange(5, 600),
              help="length of each window")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 20), help="windows, one after another")
def bench_idle(seconds: float, repeats: int) -> None:
    """The deployed stack with no load: every container's CPU (cgroup counters) over each window, in cores per
    module and in all (median and min-max over the windows), throttled periods, and a dated last line with the
    issue's goal (<= 0.1 core)."""
    from lab.experiments.bench_idle import bench_idle as run_bench

    result = run_bench(context().docker, seconds, repeats, log=click.echo)
    click.echo("\n".join(result.lines()))


@bench.command("admission", epilog=exits(FAILED, BAD_INPUT))
@click.option("--journey", type=click.Choice(["api", "shop"]), default="api", show_default=True)
@click.option("--capacity", type=POSITIVE, default=None,
              help="the journey's capacity (arrivals/s); default: measured first with the capacity search")
@click.option("--overload", default=2.0, show_default=True, type=click.FloatRange(1, 10),
              help="offered load as a multiple of the capacity")
@click.option("--seconds", default=40.0, show_default=True, type=click.FloatRange(0, 600, min_open=True),
              help="how long the load is offered")
@click.option("--max-wait", default=60.0, show_default=True, type=click.FloatRange(0, 1800),
              help="seconds a queued buyer waits in all")
@click.option("--control", "controls", multiple=True, type=click.Choice(list(ROOM_MODES)),
              help="admission control(s) compared with none (repeatable; default: waiting-room)")
def bench_admission(journey: str, capacity: float | None, overload: float, seconds: float, max_wait: float,
                    controls: tuple[str, ...]) -> None:
    """The same offered load (default 2x capacity) without and with admission control: goodput, latency, fairness."""
    import pandas as pd

    from lab.experiments.overload import bench_admission as run_bench
    from lab.load.queue import QueueSettings

    queue = QueueSettings(max_wait=max_wait)
    table, folder, capacity = run_bench(context(), journey=journey, capacity=capacity, overload=overload,
                                        seconds=seconds, queue=queue, controls=controls, log=click.echo)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        click.echo(table.set_index("label").T.to_string(float_format=lambda v: f"{v:.2f}"))
    click.echo(f"capacity {capacity:g}/s, offered {capacity * overload:g}/s for {seconds:g}s; figures saved: {folder}")


def register(main: click.Group) -> None:
    main.add_command(capacity)
    main.add_command(bench)
