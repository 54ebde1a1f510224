"""reports/index.html: every published study with its headline figures (missing figures shown as a dash)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from lab.common.paths import data_dir, reports_dir

COLUMNS = [  # (headline.json key, heading, format)
    ("verdict", "verdict", "{}"),
    ("target_per_min", "target /min", "{:.0f}"),
    ("sustained_per_min", "sustained /min", "{:.0f}"),
    ("peak_per_min", "peak /min", "{:.0f}"),
    ("p95_api_s", "p95 api s", "{:.2f}"),
    ("p95_shop_s", "p95 shop s", "{:.2f}"),
    ("error_rate", "errors", "{:.2%}"),
    ("lost", "lost", "{}"),
    ("duplicate", "duplicate", "{}"),
    ("oversold", "oversold", "{}"),
    ("faults", "faults", "{}"),
]


def _json(*candidates: Path) -> dict[str, Any]:
    for path in candidates:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            return doc
    return {}


def _cell(value: Any, fmt: str) -> str:
    if value is None or value == "":
        return "-"
    try:
        return html.escape(fmt.format(value))
    except (ValueError, TypeError):
        return html.escape(str(value))


def studies(root: Path | None = None) -> list[dict[str, Any]]:
    """One row per folder of reports/ that holds an index.html, newest first."""
    root = root or reports_dir()
    rows = []
    for folder in sorted((p for p in root.glob("*/") if (p / "index.html").exists()), reverse=True):
        study_dir = data_dir() / "runs" / folder.name
        headline = _json(folder / "headline.json", study_dir / "headline.json")
        record = _json(folder / "study.json", study_dir / "study.json")
        rows.append({"id": folder.name, "headline": headline, "record": record,
                     "pdf": (folder / "report.pdf").exists()})
    return rows


def build(root: Path | None = None) -> Path:
    """Write reports/index.html (self-contained: no script, no external resource)."""
    root = root or reports_dir()
    root.mkdir(parents=True, exist_ok=True)
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in COLUMNS)
    body = []
    for row in studies(root):
        h, rec = row["headline"], row["record"]
        link = f'<a href="{html.escape(row["id"])}/index.html">{html.escape(row["id"])}</a>'
        pdf = f' (<a href="{html.escape(row["id"])}/report.pdf">PDF</a>)' if row["pdf"] else ""
        status = rec.get("status") or "-"
        failed = rec.get("failed") or {}
        if failed:
            status += f": {failed.get('notebook')} cell {failed.get('cell')}"
        verdict_class = {"pass": "pass", "fail": "fail"}.get(str(h.get("verdict")).lower(), "")
        cells = "".join(f'<td class="{verdict_class if key == "verdict" else ""}">{_cell(h.get(key), fmt)}</td>'
                        for key, _, fmt in COLUMNS)
        body.append(f"<tr><td>{link}{pdf}</td><td>{html.escape(str(rec.get('preset') or '-'))}</td>"
                    f"<td>{html.escape(status)}</td>{cells}</tr>")
    rows = "\n".join(body) or f'<tr><td colspan="{len(COLUMNS) + 3}">No study published yet: run `lab study`.</td></tr>'
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pretix-lab studies</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }} td:first-child {{ text-align: left; }}
.pass {{ background: #d9f2d9; }} .fail {{ background: #f8d7d7; }}
</style></head><body>
<h1>pretix-lab studies</h1>
<p>Each study's report (HTML and PDF) with its headline figures: did the deployment sustain the seed's purchases per
minute within the SLOs, and were orders lost, duplicated or oversold.</p>
<table><thead><tr><th>study</th><th>preset</th><th>status</th>{head}</tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
    out = root / "index.html"
    out.write_text(page, encoding="utf-8")
    return out
