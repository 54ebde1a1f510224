"""A run's container logs, kept with the run: `run_dir/logs/<service>.log` and the proxy's access log as data.

save_logs() runs once, after the run: each project container's log for the run's window (docker's timestamps
on, stdout and stderr as docker interleaved them), secrets scrubbed, and the proxy's JSON access lines parsed
into `run_dir/proxy_access.parquet`: one row per request nginx saw, an independent count beside the client's.

The proxy writes its access log buffered (`buffer=64k flush=1s` in nginx.conf.template): a request that ended
just before `until` reaches docker's log up to a second later. Access lines are therefore chosen by their own
`time` (nginx's $msec, when the request ended), read from a slightly longer docker window; every other line by
docker's timestamp.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lab.evidence.runfolder import RunFolder
from lab.evidence.secretscan import Scrubber, SecretsUnavailable, load_scrubber
from lab.stack.containers import LABEL_SERVICE, project_containers

NOT_WRITTEN = "NOT-WRITTEN.txt"  # in logs/ when the logs could not be scrubbed
PROXY_SERVICE = "proxy"
ACCESS_FLUSH_SECONDS = 1.0  # nginx's access_log flush=1s
FLUSH_MARGIN = 3.0  # how much later than `until` an access line may reach docker's log

PROXY_ACCESS_SCHEMA = pa.schema([
    ("time", pa.float64()),  # epoch s when nginx finished the request ($msec)
    ("request_id", pa.string()),
    ("remote_addr", pa.string()),
    ("protocol", pa.string()),
    ("method", pa.string()),
    ("uri", pa.string()),
    ("status", pa.int32()),
    ("upstream_addr", pa.string()),  # "" when nginx answered itself; "a:8000, b:8000" after a retry
    ("instance", pa.string()),  # web-1, web-2, nginx, none, unknown (nginx.conf.template's map)
    ("upstream_status", pa.string()),  # as logged: "502, 200" after a retry
    ("upstream_status_last", pa.int32()),  # the try that answered (null when none did)
    ("upstream_tries", pa.int32()),
    ("upstream_connect_time", pa.float64()),  # of the last try
    ("upstream_response_time", pa.float64()),  # of the last try (the response the client got)
    ("upstream_response_time_total", pa.float64()),  # all tries together
    ("request_time", pa.float64()),
    ("bytes", pa.int64()),
])


def _docker_time(stamp: str) -> float:
    """docker's RFC 3339 nano timestamp -> epoch seconds (microsecond precision is plenty)."""
    stamp = stamp.rstrip("Z")
    if "." in stamp:
        head, frac = stamp.split(".", 1)
        stamp = f"{head}.{frac[:6].ljust(6, '0')}"
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


def _tries(value: str) -> list[str]:
    """nginx's list fields: "a, b" per try, " : " between upstream groups; "-" for a try with no value."""
    return [p.strip() for p in value.replace(" : ", ", ").split(",") if p.strip()] if value else []


def _number(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "-") else math.nan
    except ValueError:
        return math.nan


def parse_access_line(text: str) -> dict | None:
    """One JSON access line (without docker's timestamp) -> a PROXY_ACCESS_SCHEMA row, None if it is not one."""
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "time" not in doc or "status" not in doc:
        return None
    statuses = _tries(str(doc.get("upstream_status", "")))
    responses = [_number(x) for x in _tries(str(doc.get("upstream_response_time", "")))]
    connects = [_number(x) for x in _tries(str(doc.get("upstream_connect_time", "")))]
    last_status = _number(statuses[-1]) if statuses else math.nan
    known = [x for x in responses if not math.isnan(x)]
    return {
        "time": float(doc["time"]),
        "request_id": str(doc.get("request_id", "")),
        "remote_addr": str(doc.get("remote_addr", "")),
        "protocol": str(doc.get("protocol", "")),
        "method": str(doc.get("method", "")),
        "uri": str(doc.get("uri", "")),
        "status": int(doc["status"]),
        "upstream_addr": str(doc.get("upstream_addr", "")),
        "instance": str(doc.get("instance", "")),
        "upstream_status": str(doc.get("upstream_status", "")),
        "upstream_status_last": None if math.isnan(last_status) else int(last_status),
        "upstream_tries": len(statuses),
        "upstream_connect_time": connects[-1] if connects else math.nan,
        "upstream_response_time": responses[-1] if responses else math.nan,
        "upstream_response_time_total": sum(known) if known else math.nan,
        "request_time": _number(str(doc.get("request_time", ""))),
        "bytes": int(doc.get("bytes") or 0),
    }


def _write_parquet(rows: list[dict], path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=PROXY_ACCESS_SCHEMA) if rows else PROXY_ACCESS_SCHEMA.empty_table()
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temporary, compression="zstd")
    os.replace(temporary, path)


def save_logs(run_dir: Path, docker_client, since: float, until: float, *,
              scrubber: Scrubber | None = None) -> dict:
    """Write every project container's log of [since, until] to run_dir/logs/<service>.log (secrets -> ***)
    and the proxy's access lines of that window to run_dir/proxy_access.parquet. Returns a small summary.

    Fails closed: without a scrubber and when the deployment's secrets cannot be read, no log line is written,
    only logs/NOT-WRITTEN.txt saying why, and no proxy_access.parquet (summary["not_written"] holds the reason)."""
    if until <= since:
        raise ValueError(f"until ({until}) must be after since ({since})")
    folder = RunFolder(run_dir)
    logs_dir = folder.logs_dir
    logs_dir.mkdir(parents=True, exist_ok=True)
    if scrubber is None:
        try:
            scrubber = load_scrubber()
        except SecretsUnavailable as error:
            reason = f"container logs not written: {error}, so they could not be scrubbed"
            (logs_dir / NOT_WRITTEN).write_text(reason + "\n", encoding="utf-8")
            return {"services": {}, "proxy_requests": 0, "lines_scrubbed": 0, "not_written": reason}
    scrub = scrubber
    wait = until + ACCESS_FLUSH_SECONDS + 0.5 - time.time()
    if wait > 0:  # let nginx flush the last access lines of the window
        time.sleep(min(wait, ACCESS_FLUSH_SECONDS + 0.5))

    by_service: dict[str, list] = {}
    for c in project_containers(docker_client):
        by_service.setdefault(c.labels.get(LABEL_SERVICE, c.name), []).append(c)

    summary: dict = {"services": {}, "proxy_requests": 0, "lines_scrubbed": 0}
    access: list[dict] = []
    for service, containers in sorted(by_service.items()):
        is_proxy = service == PROXY_SERVICE
        count = 0
        path = folder.log_of(service)
        temporary = path.with_name(f".{path.name}.tmp")
        with temporary.open("w", encoding="utf-8") as out:
            for c in sorted(containers, key=lambda c: c.name):
                if len(containers) > 1:
                    out.write(f"# ==== container {c.name}\n")
                docker_until = until + FLUSH_MARGIN if is_proxy else until
                # stream=False: docker-py's log stream reads the raw socket until the engine closes it, which a
                # kept-alive connection does not do (each call would hang for the client timeout, ~60 s)
                text_all = c.logs(stdout=True, stderr=True, timestamps=True, stream=False,
                                  since=float(since), until=float(docker_until))
                for line in _lines([text_all]):
                    stamp, _, text = line.partition(" ")
                    clean = scrub(text)
                    if clean != text:
                        summary["lines_scrubbed"] += 1
                    if is_proxy:
                        row = parse_access_line(clean)
                        if row is not None:
                            if not since <= row["time"] <= until:
                                continue
                            access.append(row)
                        else:
                            try:
                                if _docker_time(stamp) > until:
                                    continue
                            except ValueError:
                                pass
                    out.write(f"{stamp} {clean}\n")
                    count += 1
        os.replace(temporary, path)
        summary["services"][service] = count
    access.sort(key=lambda r: r["time"])
    _write_parquet(access, folder.proxy_access_path)
    summary["proxy_requests"] = len(access)
    return summary


def read_proxy_access(run_dir: Path):
    """The proxy's access rows of a run as a DataFrame."""
    return pq.read_table(RunFolder(run_dir).proxy_access_path, schema=PROXY_ACCESS_SCHEMA).to_pandas()


def reconcile(requests, access, prefix: str = "lab-") -> dict:
    """The client's request history against the proxy's, request by request (the lab's X-Request-Id, which the
    proxy logs; `prefix` picks one run's): how many each saw, by status what only one of them saw, and requests the
    client gave up on (status 0) by what the proxy logged for them: 499 (client closed: neither saw an answer) or
    the answer the client never read. Requests without a lab id (health checks, probes) are not counted."""
    import pandas as pd

    client = requests[requests["request_id"].fillna("").str.startswith(prefix)] if "request_id" in requests else \
        requests.iloc[0:0]
    proxy = access[access["request_id"].fillna("").str.startswith(prefix)]
    mine = client.assign(seen=client.groupby("request_id").cumcount())  # a repeated id (a queued retry) pairs
    theirs = proxy.assign(seen=proxy.groupby("request_id").cumcount())  # in order of occurrence
    both = mine.merge(theirs, on=["request_id", "seen"], how="outer", suffixes=("_client", "_proxy"),
                      indicator=True)

    def by_status(rows: pd.DataFrame, column: str) -> dict[str, int]:
        return {str(int(k)): int(v) for k, v in rows[column].value_counts().sort_index().items()}

    matched = both[both["_merge"] == "both"]
    unanswered = matched["status_client"] == 0
    differs = matched[~unanswered & (matched["status_client"] != matched["status_proxy"])]
    return {
        "client": int(len(client)), "proxy": int(len(proxy)), "matched": int(len(matched)),
        "client_only": by_status(both[both["_merge"] == "left_only"], "status_client"),
        "proxy_only": by_status(both[both["_merge"] == "right_only"], "status_proxy"),
        "unanswered_both": int((unanswered & (matched["status_proxy"] == 499)).sum()),
        # cut by the client (timeout, cancel) after the proxy had its answer: the buyer never saw it (a 201 here
        # is an order the buyer was not told about: a ghost)
        "answer_not_seen": by_status(matched[unanswered & (matched["status_proxy"] != 499)], "status_proxy"),
        # answered on both sides with different statuses: should never happen
        "status_differs": {f"{int(a)}->{int(b)}": int(n) for (a, b), n in
                           differs.groupby(["status_client", "status_proxy"]).size().items()},
    }


__all__ = ["NOT_WRITTEN", "PROXY_ACCESS_SCHEMA", "parse_access_line", "read_proxy_access", "reconcile",
           "save_logs"]
