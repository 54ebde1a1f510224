"""Copy real run folders into a small study fixture for the report's tests (tests/fixtures/real-study/).

Keeps what the analysis reads (run.json, params.yaml, environment.json, audit.json and the attempts, requests,
metrics and faults datasets, each compacted into one part file); leaves out container logs, the customers
list and nginx's access log. Usage:

    python scripts/fixture_from_runs.py OUT_DIR KIND:LABEL:RUN_DIR ...
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq

KEEP_FILES = ("run.json", "params.yaml", "environment.json", "audit.json")
DATASETS = ("attempts.parquet", "requests.parquet", "metrics.parquet", "faults.parquet")
SECRET_WORDS = ("password", "secret", "token")


def compact(source: Path, target: Path) -> None:
    parts = sorted(source.glob("part-*.parquet"))
    if not parts:
        return
    target.mkdir(parents=True)
    pq.write_table(pq.read_table(parts), target / "part-000000.parquet", compression="zstd")


def copy_run(run: Path, out: Path) -> None:
    out.mkdir(parents=True)
    for name in KEEP_FILES:
        if (run / name).exists():
            text = (run / name).read_text()
            for word in SECRET_WORDS:  # the lab never writes secrets here; refuse to copy if that ever changes
                if f'"{word}"' in text.lower() or f"{word}:" in text.lower():
                    raise SystemExit(f"{run / name} mentions {word!r}: not copied into a fixture")
            (out / name).write_text(text)
    for name in DATASETS:
        compact(run / name, out / name)


def main(out_dir: str, *specs: str) -> None:
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    entries = []
    for spec in specs:
        kind, label, run_dir = spec.split(":", 2)
        run = Path(run_dir)
        meta = json.loads((run / "run.json").read_text())
        copy_run(run, out / "runs" / run.name)
        entries.append({"name": run.name, "kind": kind, "journey": meta.get("journey"), "dir": f"runs/{run.name}",
                        "label": label})
    (out / "study.json").write_text(json.dumps({"study_id": out.name, "preset": "fixture", "status": "passed",
                                                "failed": None, "runs": entries}, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:])
