"""Seaborn figures of runs and studies, one consistent style: titled, axes with units, readable on screen and
paper. Each function takes frames (or a Run) and returns a matplotlib Figure; nothing here reads files."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from lab.analysis.frames import Run, latency_over_time, throughput
from lab.analysis.timelines import GAUGES, available_gauges, errors_over_time, gauge, resource_series

STYLE = {"context": "notebook", "style": "whitegrid", "palette": "colorblind"}
WIDTH = 10.0  # inches: fits an A4 page's text width when printed, full width on screen
PANEL_HEIGHT = 2.6
FAULT_COLOUR = "tab:red"
TIME_LABEL = "time since the first scheduled attempt (s)"


def use_style() -> None:
    """The report's one style; in a notebook also keep every figure at its own size (no tight cropping, so
    timelines of different runs line up)."""
    sns.set_theme(**STYLE)
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.run_line_magic("config", "InlineBackend.print_figure_kwargs = {'bbox_inches': None}")
    except ImportError:
        pass
    plt.rcParams.update({"figure.figsize": (WIDTH, 4), "figure.dpi": 110, "axes.titleweight": "bold",
                         "axes.titlesize": 12, "axes.labelsize": 10, "legend.fontsize": 8,
                         "legend.title_fontsize": 9})


def shade_faults(ax, spans: pd.DataFrame | None, t0: float, label: bool = True) -> None:
    """Shade each fault window (inject to undo, from lab.faults.analysis.fault_spans) and name it at the top."""
    if spans is None or spans.empty:
        return
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for span in spans.itertuples():
        if math.isnan(span.inject):
            continue
        end = span.undo if not math.isnan(span.undo) else span.inject
        ax.axvspan(span.inject - t0, max(end - t0, span.inject - t0 + 0.5), color=FAULT_COLOUR, alpha=0.13, lw=0)
        if label:
            ax.text(span.inject - t0, 0.97, f" {span.action} {span.target}", transform=top, fontsize=8,
                    color=FAULT_COLOUR, va="top", ha="left")


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} recorded", transform=ax.transAxes, ha="center", va="center", color="grey")


def _legend_outside(ax, title: str | None = None) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _panels(n: int, title: str):
    """n stacked panels on one time axis, with the same plot width in every timeline (legends to the right)."""
    height = PANEL_HEIGHT * n + 0.9
    fig, axes = plt.subplots(n, 1, figsize=(WIDTH, height), sharex=True, squeeze=False)
    fig.suptitle(title, fontweight="bold", y=1 - 0.12 / height)
    fig.subplots_adjust(left=0.1, right=0.78, top=1 - 0.75 / height, bottom=0.55 / height, hspace=0.45)
    return fig, [a[0] for a in axes]


def traffic_timeline(run: Run, spans: pd.DataFrame | None = None, title: str | None = None):
    """Throughput by outcome, latency p50/p95/p99 and failed requests by kind over time, fault windows shaded."""
    fig, (tp, lat, err) = _panels(3, title or f"Buyers' view of run {run.path.name}")
    table = throughput(run.attempts, run.t0)
    if len(table):
        long = table.melt("t", var_name="outcome", value_name="per_second")
        sns.lineplot(data=long, x="t", y="per_second", hue="outcome", ax=tp, lw=1.2)
    else:
        _empty(tp, "attempt")
    tp.set(title="Attempts completed per second", ylabel="attempts/s")
    latency = latency_over_time(run.attempts, run.t0)
    if len(latency):
        long = latency.melt("t", var_name="percentile", value_name="seconds")
        sns.lineplot(data=long, x="t", y="seconds", hue="percentile", ax=lat, marker="o", ms=3)
    else:
        _empty(lat, "answered attempt")
    lat.set(title="Latency from the scheduled start (5 s bins)", ylabel="latency (s)")
    errors = errors_over_time(run.requests, run.t0)
    if len(errors):
        stacked = errors.pivot_table(index="t", columns="error_kind", values="per_second", fill_value=0.0)
        bottom = pd.Series(0.0, index=stacked.index)
        for kind, colour in zip(stacked.columns, sns.color_palette(n_colors=len(stacked.columns)), strict=True):
            err.bar(stacked.index, stacked[kind], width=5.0, bottom=bottom, align="edge", color=colour, label=kind)
            bottom += stacked[kind]
    else:
        _empty(err, "failed request")
    err.set(title="Failed requests by kind (5 s bins)", ylabel="failures/s", xlabel=TIME_LABEL)
    for ax, legend in ((tp, "outcome"), (lat, "percentile"), (err, "error kind")):
        shade_faults(ax, spans, run.t0, label=ax is tp)
        _legend_outside(ax, legend)
    return fig


def resources_timeline(run: Run, spans: pd.DataFrame | None = None, title: str | None = None):
    """CPU (cores) and memory (MiB) per service over time, fault windows shaded."""
    fig, (cpu_ax, mem_ax) = _panels(2, title or f"Resources per service, run {run.path.name}")
    for ax, metric, scale, what, ylabel in ((cpu_ax, "cpu_cores", 1.0, "CPU used", "cores"),
                                           (mem_ax, "memory_bytes", 1 / 2**20, "Memory used", "memory (MiB)")):
        table = resource_series(run.metrics, metric, run.t0, scale)
        if len(table):
            services = sorted(table["service"].unique())
            for service, colour in zip(services, sns.color_palette(n_colors=len(services)), strict=True):
                mine = table[table["service"] == service]  # plain plot: a NaN second breaks the line
                ax.plot(mine["t"], mine["value"], lw=1.1, color=colour, label=service)
        else:
            _empty(ax, f"{metric}")
        ax.set(title=f"{what} per service", ylabel=ylabel)
        shade_faults(ax, spans, run.t0, label=ax is cpu_ax)
        _legend_outside(ax, "service")
    mem_ax.set_xlabel(TIME_LABEL)
    return fig


def gauges_timeline(run: Run, spans: pd.DataFrame | None = None, title: str | None = None):
    """Celery queue, PostgreSQL lock waits and replication lag: whatever the monitor recorded (None if nothing)."""
    names = available_gauges(run.metrics)
    if not names:
        return None
    fig, axes = _panels(len(names), title or f"Queues, locks and replication, run {run.path.name}")
    for ax, name in zip(axes, names, strict=True):
        metric, ylabel, scale = GAUGES[name]
        table = gauge(run.metrics, metric, run.t0, scale)
        sns.lineplot(data=table, x="t", y="value", hue="series", ax=ax, lw=1.1, drawstyle="steps-post")
        ax.set(title=name[0].upper() + name[1:], ylabel=ylabel)
        shade_faults(ax, spans, run.t0, label=ax is axes[0])
        _legend_outside(ax, None)
    axes[-1].set_xlabel(TIME_LABEL)
    return fig


def capacity_figure(steps: pd.DataFrame, p95_limits: dict[str, float]):
    """Per journey: throughput vs offered load (open) or buyers (closed), and latency percentiles vs load."""
    groups = list(steps.groupby(["journey", "model"], sort=True))
    fig, axes = plt.subplots(len(groups), 2, figsize=(WIDTH, 3.4 * len(groups) + 0.5), squeeze=False)
    fig.suptitle("Capacity: what each load step delivered", fontweight="bold")
    for (journey, model), group in groups:
        row = axes[groups.index(((journey, model), group))]
        xlabel = "offered load (attempts/min)" if model == "open" else "concurrent buyers"
        tp, lat = row
        sns.lineplot(data=group, x="load", y="throughput_per_min", marker="o", ax=tp, label="purchases/min")
        if model == "open":
            top = float(group["load"].max())
            tp.plot([0, top], [0, top], ls="--", color="grey", lw=1, label="offered")
        tp.set(title=f"{journey} journey: throughput", xlabel=xlabel, ylabel="purchases/min")
        tp.set_ylim(bottom=0)
        long = group.melt("load", value_vars=["p50", "p95", "p99"], var_name="percentile", value_name="seconds")
        sns.lineplot(data=long, x="load", y="seconds", hue="percentile", marker="o", ax=lat)
        lat.axhline(p95_limits.get(journey, math.nan), color=FAULT_COLOUR, ls=":", lw=1.2, label="p95 SLO")
        lat.set(title=f"{journey} journey: latency", xlabel=xlabel, ylabel="latency (s)")
        lat.set_ylim(bottom=0)
        if model == "closed":
            for ax in (tp, lat):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        tp.legend(frameon=False)
        lat.legend(frameon=False)
    fig.tight_layout()
    return fig


def ramp_figure(steps: pd.DataFrame):
    """Notebook 02-load: purchases achieved against offered on the api capacity ramp (lab.study.folder.step_figures);
    None without such a step."""
    ramp = steps[(steps["kind"] == "capacity") & (steps["journey"] == "api")] if len(steps) else steps
    if not len(ramp):
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=ramp, x="offered", y="achieved", marker="o", ax=ax, label="achieved")
    ax.plot(ramp["offered"], ramp["offered"], ls="--", color="grey", label="offered")
    ax.set(title="api journey: purchases achieved vs offered", xlabel="offered (orders/s)",
           ylabel="purchased (orders/s)")
    ax.legend()
    return fig


def cost_figure(journeys: pd.DataFrame):
    """CPU-seconds per purchase by module, one bar per journey (stacked by module)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 1.2 + 0.8 * max(len(journeys), 1)))
    if journeys.empty:
        _empty(ax, "CPU measurement")
    else:
        journeys.plot.barh(stacked=True, ax=ax, color=sns.color_palette(n_colors=len(journeys.columns)))
        _legend_outside(ax, "module")
    ax.set(title="Measured CPU per purchase by module", xlabel="CPU-seconds per purchase", ylabel="journey")
    fig.tight_layout()
    return fig


def fault_latency_figure(faults: pd.DataFrame):
    """p95 latency before vs during each fault (from lab.faults.analysis.analyse_faults)."""
    rows = []
    for row in faults.itertuples():
        name = f"{row.fault_id}\n{row.action} {row.target}"
        for when in ("before", "during"):
            rows.append({"fault": name, "when": when, "p95": getattr(row, f"latency_{when}_p95", math.nan)})
    table = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(WIDTH, 1.5 + 0.7 * max(len(faults), 1)))
    if table.empty or table["p95"].isna().all():
        _empty(ax, "latency around a fault")
    else:
        sns.barplot(data=table, y="fault", x="p95", hue="when", ax=ax, orient="h")
        _legend_outside(ax, None)
    ax.set(title="p95 latency before vs during each fault", xlabel="p95 latency (s)", ylabel="")
    fig.tight_layout()
    return fig


def compare_timeline(runs: dict[str, Run], spans: dict[str, pd.DataFrame] | None = None):
    """Purchases per second and p95 latency of several runs on one time axis (each from its own start)."""
    fig, (tp, lat) = _panels(2, "Runs compared over time")
    frames_tp, frames_lat = [], []
    for name, run in runs.items():
        table = throughput(run.attempts, run.t0, bin_seconds=2.0)
        if len(table):
            frames_tp.append(table.assign(run=name))
        latency = latency_over_time(run.attempts, run.t0)
        if len(latency):
            frames_lat.append(latency.assign(run=name))
    if frames_tp:
        sns.lineplot(data=pd.concat(frames_tp), x="t", y="purchased", hue="run", ax=tp, lw=1.2)
    else:
        _empty(tp, "attempt")
    if frames_lat:
        sns.lineplot(data=pd.concat(frames_lat), x="t", y="p95", hue="run", ax=lat, marker="o", ms=3)
    else:
        _empty(lat, "answered attempt")
    tp.set(title="Purchases per second (2 s bins)", ylabel="purchases/s")
    lat.set(title="p95 latency from the scheduled start (5 s bins)", ylabel="latency (s)", xlabel=TIME_LABEL)
    for name, run in runs.items():
        if spans and name in spans:
            shade_faults(tp, spans[name], run.t0, label=True)
            shade_faults(lat, spans[name], run.t0, label=False)
    _legend_outside(tp, "run")
    _legend_outside(lat, "run")
    return fig


def compare_bars(table: pd.DataFrame):
    """Throughput, p95 latency and error rate side by side for each compared run."""
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 1.6 + 0.45 * max(len(table), 1)), sharey=True)
    fig.suptitle("Runs compared: headline figures", fontweight="bold")
    labels = table["label"]
    for ax, column, title, xlabel, scale in (
            (axes[0], "throughput_per_min", "Throughput", "purchases/min", 1.0),
            (axes[1], "p95", "p95 latency", "seconds", 1.0),
            (axes[2], "error_rate", "Failed attempts", "% of attempts", 100.0)):
        sns.barplot(x=table[column] * scale, y=labels, ax=ax, orient="h", hue=labels, legend=False)
        ax.set(title=title, xlabel=xlabel, ylabel="")
    fig.tight_layout()
    return fig


__all__ = ["capacity_figure", "compare_bars", "compare_timeline", "cost_figure", "fault_latency_figure", "ramp_figure",
           "gauges_timeline", "resources_timeline", "shade_faults", "traffic_timeline", "use_style"]
