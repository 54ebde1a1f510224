"""What a run measured on: hardware, versions, image digests, limits and parameters, from its environment.json,
params.yaml and the monitor's memory limits (the limits the engine really enforced)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from lab.evidence.runfolder import RunFolder


def read_environment(run_dir: Path) -> dict[str, Any]:
    path = RunFolder(run_dir).environment_path
    return json.loads(path.read_text()) if path.exists() else {}


def hardware_table(env: dict[str, Any]) -> pd.DataFrame:
    """Host CPU model, cores, RAM, kernel, Python and the Docker engine."""
    host = env.get("host", {})
    memory = host.get("memory_bytes")
    rows = {
        "CPU model": host.get("cpu_model") or "not recorded",
        "logical cores": host.get("cpus") if host.get("cpus") is not None else "not recorded",
        "RAM": f"{memory / 2**30:.1f} GiB" if memory else "not recorded",
        "architecture": host.get("machine", "not recorded"),
        "kernel": host.get("kernel", "not recorded"),
        "Python": host.get("python", "not recorded"),
        "Docker engine": env.get("engine", "not recorded"),
    }
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=pd.Index(list(rows), name="host"))


def versions_table(env: dict[str, Any]) -> pd.DataFrame:
    """pretix and the lab's client libraries, with their versions."""
    rows = {"pretix": env.get("pretix", "not recorded"), **env.get("packages", {})}
    return pd.DataFrame({"version": [str(v) for v in rows.values()]}, index=pd.Index(list(rows), name="software"))


def images_table(env: dict[str, Any]) -> pd.DataFrame:
    """Each stack image and its id (sha256 digest, shortened to 19 characters as docker shows it)."""
    images = env.get("images", {})
    return pd.DataFrame({"image id": [str(v)[:19] for v in images.values()]},
                        index=pd.Index(list(images), name="image"))


def limits_table(env: dict[str, Any], metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per service: the CPU and memory limits (compose defaults with the run's overrides) and, when the monitor
    saw it, the memory limit the engine enforced."""
    from lab.stack.topology import services

    overrides = (env.get("stack_params") or {}).get("limits") or {}
    rows = []
    try:
        specs = services()
    except Exception:  # noqa: BLE001 - the compose file is not required to read a run
        specs = {}
    seen = {}
    if metrics is not None and len(metrics):
        limit = metrics[metrics["metric"] == "memory_limit_bytes"]
        seen = (limit.groupby("service")["value"].max() / 2**20).to_dict()
    for name in sorted(set(specs) | set(overrides) | set(seen)):
        spec = specs.get(name)
        override = overrides.get(name) or {}
        cpus = override.get("cpus") or (spec.default_cpus if spec else None)
        memory = override.get("memory") or (spec.default_memory if spec else None)
        if cpus is None and memory is None and name not in seen:
            continue
        rows.append({"service": name, "CPU limit (cores)": cpus if cpus is not None else "none",
                     "memory limit": memory or "none",
                     "enforced memory limit (MiB)": round(seen[name]) if name in seen else "-"})
    return pd.DataFrame(rows).set_index("service") if rows else pd.DataFrame()


def stack_params_table(env: dict[str, Any]) -> pd.DataFrame:
    """The stack's parameters (without limits, shown in their own table)."""
    params = {k: v for k, v in (env.get("stack_params") or {}).items() if k != "limits"}
    return pd.DataFrame({"value": [str(v) for v in params.values()]}, index=pd.Index(list(params), name="stack"))


def tuning_table(env: dict[str, Any]) -> pd.DataFrame:
    """pretix's tuning knobs (lab/stack/tuning.py): the value the run had, the stock value and whether the knob was
    on (away from stock). A run recorded before a knob existed ran it stock."""
    from lab.stack import tuning

    recorded = env.get("stack_params") or {}
    stock, on = tuning.stock(), tuning.changed(recorded)
    rows = {k: {"value": str(recorded.get(k, stock[k])), "stock": str(stock[k]), "on": "yes" if k in on else "no"}
            for k in tuning.KNOBS}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("pretix tuning")


def tuning_sentence(env: dict[str, Any]) -> str:
    """One sentence for the report: pretix ran stock, or which knobs were on."""
    from lab.stack import tuning

    on = tuning.changed(env.get("stack_params") or {})
    if not on:
        return "pretix ran with its stock settings (no tuning knob on)."
    return f"pretix tuning on: {tuning.describe(on)} (everything else stock)."


__all__ = ["hardware_table", "images_table", "limits_table", "read_environment", "stack_params_table",
           "tuning_sentence", "tuning_table", "versions_table"]
