"""What each fault did to the buyers, from the run's records alone (pure functions over DataFrames).

  error window      first to last failed attempt (or failed request) from the fault's injection to its horizon
  time to recover   answered attempts per second (1-second bins, smoothed over a few bins) back within 10 % of
                    the pre-fault level, and staying there until the horizon; measured from the injection (and
                    from the undo: negative when the system recovered while the fault still lasted)
  latency           p50/p95/p99 of attempts (from their scheduled start) scheduled during the fault vs before it
The horizon of a fault ends `after` seconds after its undo, at the next fault's injection, or at the last
scheduled attempt, whichever comes first. Times are epoch seconds (the run's one clock).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

ANSWERED = ("purchased", "sold_out")
FAILED_ATTEMPTS = ("failed", "dropped", "cancelled")
NAN = float("nan")


@dataclass
class ErrorWindow:
    first: float = NAN
    last: float = NAN
    count: int = 0

    @property
    def duration(self) -> float:
        return self.last - self.first if self.count else 0.0


@dataclass
class Recovery:
    pre_rate: float  # answered attempts/s before the fault
    min_rate: float  # lowest smoothed rate within the horizon
    deviated: bool  # the smoothed rate left the tolerance band at all
    recovered: bool  # it was back within the band (and stayed) before the horizon ended
    recovered_at: float  # epoch s (NaN when not recovered)
    time_to_recover: float  # s from the injection (0 when it never deviated)
    after_undo: float  # s from the undo (negative: recovered while the fault still lasted)


def failures(frame: pd.DataFrame) -> pd.Series:
    """Times (epoch s) of failed attempts (attempts frame) or failed requests (requests frame, it has `step`)."""
    if frame is None or frame.empty:
        return pd.Series(dtype=float)
    if "step" in frame.columns:
        failed = frame[frame["outcome"] == "error"]
    else:
        failed = frame[frame["outcome"].isin(FAILED_ATTEMPTS)]
    when = failed["end"].fillna(failed["scheduled"]) if "scheduled" in failed else failed["end"]
    return when.dropna().astype(float).sort_values()


def error_window(frame: pd.DataFrame, start: float, end: float) -> ErrorWindow:
    """First to last failure with a time in [start, end]."""
    times = failures(frame)
    inside = times[(times >= start) & (times <= end)]
    if inside.empty:
        return ErrorWindow()
    return ErrorWindow(float(inside.iloc[0]), float(inside.iloc[-1]), int(len(inside)))


def answered_per_bin(attempts: pd.DataFrame, start: float, end: float, bin_seconds: float = 1.0) -> pd.Series:
    """Answered attempts per second in bins [start + k*bin, start + (k+1)*bin) by their end time."""
    edges = start + np.arange(0, max(int(math.ceil((end - start) / bin_seconds)), 0) + 1) * bin_seconds
    if len(edges) < 2:
        return pd.Series(dtype=float)
    done = attempts[attempts["outcome"].isin(ANSWERED)]["end"].dropna().to_numpy(dtype=float)
    counts, _ = np.histogram(done, bins=edges)
    return pd.Series(counts / bin_seconds, index=edges[:-1], name="rate")


def time_to_recover(attempts: pd.DataFrame, inject: float, undo: float, horizon: float, *,
                    bin_seconds: float = 1.0, tolerance: float = 0.1, baseline_seconds: float = 30.0,
                    smooth: int = 5) -> Recovery:
    """When the throughput was back within `tolerance` of the pre-fault level (both sides: a catch-up burst of
    retried attempts is not steady state either) and stayed there until the horizon."""
    pre_start = inject - baseline_seconds
    if len(attempts):  # not before the load began
        pre_start = max(pre_start, float(attempts["scheduled"].min()))
    pre_bins = answered_per_bin(attempts, pre_start, inject, bin_seconds)
    pre = float(pre_bins.mean()) if len(pre_bins) else NAN
    lead = (smooth // 2) * bin_seconds  # context before the fault for the centred smoothing (none after the
    bins = answered_per_bin(attempts, inject - lead, horizon, bin_seconds)  # horizon: the next fault is there)
    smoothed = bins.rolling(smooth, center=True, min_periods=1).mean()
    smoothed = smoothed[(smoothed.index >= inject - 1e-9) & (smoothed.index < horizon - 1e-9)]
    if not pre or math.isnan(pre) or smoothed.empty:
        return Recovery(pre, NAN, False, False, NAN, NAN, NAN)
    bad = (smoothed - pre).abs() > tolerance * pre
    min_rate = float(smoothed.min())
    if not bad.any():
        return Recovery(pre, min_rate, False, True, inject, 0.0, inject - undo)
    last_bad = float(smoothed.index[bad.to_numpy()][-1])
    if last_bad >= float(smoothed.index[-1]):
        return Recovery(pre, min_rate, True, False, NAN, NAN, NAN)
    recovered_at = last_bad + bin_seconds
    return Recovery(pre, min_rate, True, True, recovered_at, recovered_at - inject, recovered_at - undo)


def latency_during_vs_before(attempts: pd.DataFrame, inject: float, undo: float,
                             baseline_seconds: float = 30.0) -> pd.DataFrame:
    """Latency percentiles (s, from the scheduled start) of answered attempts scheduled in the `baseline_seconds`
    before the fault and during it; index before/during, columns count, p50, p95, p99."""
    done = attempts[attempts["outcome"].isin(ANSWERED)].dropna(subset=["end"])
    latency = done["end"] - done["scheduled"]
    rows = {}
    for name, (a, b) in {"before": (inject - baseline_seconds, inject), "during": (inject, undo)}.items():
        sample = latency[(done["scheduled"] >= a) & (done["scheduled"] < b)]
        quantiles = sample.quantile([0.5, 0.95, 0.99]) if len(sample) else pd.Series([NAN] * 3,
                                                                                     index=[0.5, 0.95, 0.99])
        rows[name] = {"count": int(len(sample)), "p50": float(quantiles[0.5]), "p95": float(quantiles[0.95]),
                      "p99": float(quantiles[0.99])}
    return pd.DataFrame.from_dict(rows, orient="index")[["count", "p50", "p95", "p99"]]


def _step(detail: object) -> str | None:
    if not isinstance(detail, str) or not detail:
        return None
    try:
        return json.loads(detail).get("step")
    except (ValueError, AttributeError):
        return None


def fault_spans(faults: pd.DataFrame) -> pd.DataFrame:
    """One row per fault: action, target, inject (first action, a pre-check excluded), undo (end of its last
    undo), and the steady-state verdicts before and after."""
    rows = []
    for fault_id, group in faults.groupby("fault_id", sort=False):
        acts = group[(group["phase"] == "inject") & (group["outcome"] == "ok")]
        acts = acts[acts["detail"].map(_step) != "check"]
        undos = group[group["phase"] == "undo"]
        probes = group[group["phase"] == "probe"].set_index("probe")["outcome"]
        rows.append({
            "fault_id": fault_id, "action": group["action"].iloc[0], "target": group["target"].iloc[0],
            "inject": float(acts["start"].min()) if len(acts) else NAN,
            "undo": float(undos["end"].max()) if len(undos) else NAN,
            "undo_ok": bool(undos["ok"].fillna(False).all()) if len(undos) else False,
            "steady_before": probes.get("before"), "steady_after": probes.get("after"),
        })
    return pd.DataFrame(rows).sort_values("inject").reset_index(drop=True) if rows else pd.DataFrame(
        columns=["fault_id", "action", "target", "inject", "undo", "undo_ok", "steady_before", "steady_after"])


def analyse_faults(faults: pd.DataFrame, attempts: pd.DataFrame, requests: pd.DataFrame | None = None, *,
                   bin_seconds: float = 1.0, tolerance: float = 0.1, baseline_seconds: float = 30.0,
                   after: float = 60.0, smooth: int = 5) -> pd.DataFrame:
    """Per fault: its span, error windows (attempts and requests), recovery, latency before vs during."""
    spans = fault_spans(faults)
    out = []
    last_scheduled = float(attempts["scheduled"].max()) if len(attempts) else NAN
    for i, span in spans.iterrows():
        inject, undo = span["inject"], span["undo"]
        if math.isnan(inject):
            out.append(span.to_dict())
            continue
        undo = undo if not math.isnan(undo) else inject
        horizon = undo + after
        if i + 1 < len(spans) and not math.isnan(spans.loc[i + 1, "inject"]):
            horizon = min(horizon, spans.loc[i + 1, "inject"])
        if not math.isnan(last_scheduled):
            horizon = min(horizon, last_scheduled)
        attempts_window = error_window(attempts, inject, horizon)
        requests_window = error_window(requests, inject, horizon) if requests is not None else ErrorWindow()
        recovery = time_to_recover(attempts, inject, undo, horizon, bin_seconds=bin_seconds, tolerance=tolerance,
                                   baseline_seconds=baseline_seconds, smooth=smooth)
        latency = latency_during_vs_before(attempts, inject, undo, baseline_seconds)
        row = span.to_dict()
        row.update({
            "horizon": horizon, "fault_seconds": undo - inject,
            "failed_attempts": attempts_window.count,
            "attempt_errors_from": attempts_window.first - inject, "attempt_errors_to": attempts_window.last - inject,
            "failed_requests": requests_window.count,
            "request_errors_from": requests_window.first - inject, "request_errors_to": requests_window.last - inject,
            **{f"recovery_{k}": v for k, v in asdict(recovery).items() if k != "recovered_at"},
            **{f"latency_{when}_{col}": latency.loc[when, col] for when in ("before", "during")
               for col in ("count", "p50", "p95", "p99")},
        })
        out.append(row)
    return pd.DataFrame(out)


def unrecovered(faults: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(stuck, unsettled, cut): the faults whose throughput was not back within the tolerance of its pre-fault level
    by the end of their window, split by the steady-state check after the undo. Stuck: the check failed (or was not
    made), so the service did not come back. Unsettled: the check passed (health, containers, a cart add through
    celery and, where checked, throughput), so the service came back, but the rate had not settled before the
    window ended (the next fault, or the end of the load, came first): not a finding against the component. Cut:
    the next fault began before the check held, so whether the service came back is not known."""
    if faults.empty or "recovery_recovered" not in faults:
        return faults.iloc[0:0], faults.iloc[0:0], faults.iloc[0:0]
    out = faults[~faults["recovery_recovered"].fillna(False).astype(bool)]
    after = out["steady_after"] if "steady_after" in out else pd.Series("", index=out.index)
    return out[~after.isin(["pass", "cut"])], out[after.eq("pass")], out[after.eq("cut")]


__all__ = ["ErrorWindow", "Recovery", "analyse_faults", "answered_per_bin", "error_window", "failures",
           "fault_spans", "latency_during_vs_before", "time_to_recover", "unrecovered"]
