"""Seaborn figures of a run, one consistent style: titled, axes with units, readable on screen and paper."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lab.analysis.frames import Run, latency_over_time, throughput

STYLE = {"context": "notebook", "style": "whitegrid", "palette": "colorblind"}


def use_style() -> None:
    sns.set_theme(**STYLE)
    plt.rcParams.update({"figure.figsize": (10, 4), "figure.dpi": 110, "axes.titleweight": "bold"})


def shade_faults(ax, faults: pd.DataFrame | None, t0: float) -> None:
    """Shade and name each fault window (from faults.parquet: start of inject, end of undo)."""
    if faults is None or faults.empty:
        return
    for _fault, rows in faults.groupby("fault_id"):
        start, end = rows["start"].min() - t0, rows["end"].max() - t0
        ax.axvspan(start, end, color="tab:red", alpha=0.12)
        ax.text(start, ax.get_ylim()[1] * 0.95, str(rows["action"].iloc[0]), fontsize=8, color="tab:red")


def _timeline(table: pd.DataFrame, y: str, hue: str, title: str, ylabel: str, run: Run,
              faults: pd.DataFrame | None):
    fig, ax = plt.subplots()
    sns.lineplot(data=table, x="t", y=y, hue=hue, ax=ax)
    ax.set(title=title, xlabel="time since start (s)", ylabel=ylabel)
    shade_faults(ax, faults, run.t0)
    return fig


def throughput_figure(run: Run, faults: pd.DataFrame | None = None):
    table = throughput(run.attempts, run.t0).melt("t", var_name="outcome", value_name="per_second")
    return _timeline(table, "per_second", "outcome", "Purchase attempts completed per second",
                     "attempts per second", run, faults)


def latency_figure(run: Run, faults: pd.DataFrame | None = None):
    table = latency_over_time(run.attempts, run.t0).melt("t", var_name="percentile", value_name="seconds")
    return _timeline(table, "seconds", "percentile", "Purchase latency from scheduled start (5 s bins)",
                     "latency (s)", run, faults)


def cpu_figure(run: Run):
    cpu = run.metrics[(run.metrics["metric"] == "cpu_cores") & (run.metrics["service"] != "monitor")].copy()
    fig, ax = plt.subplots()
    if not cpu.empty:
        cpu["t"] = cpu["time"] - run.t0
        sns.lineplot(data=cpu, x="t", y="value", hue="service", ax=ax)
    ax.set(title="CPU used per service", xlabel="time since start (s)", ylabel="cores")
    return fig


def memory_figure(run: Run):
    mem = run.metrics[run.metrics["metric"] == "memory_bytes"].copy()
    fig, ax = plt.subplots()
    if not mem.empty:
        mem["t"] = mem["time"] - run.t0
        mem["MiB"] = mem["value"] / 2**20
        sns.lineplot(data=mem, x="t", y="MiB", hue="service", ax=ax)
    ax.set(title="Memory used per service", xlabel="time since start (s)", ylabel="memory (MiB)")
    return fig
