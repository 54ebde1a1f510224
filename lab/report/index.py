"""reports/index.html: every published study with its headline figures (missing figures shown as a dash)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from lab.common.paths import data_dir, reports_dir

COLUMNS = [  # (heading, what it shows, format): the verdict and the capacity with its interval lead (issue 11)
    ("verdict", lambda h: h.get("verdict"), "{}"),
    ("api capacity within SLO", lambda h: _capacity(h, "api"), "{}"),
    ("most delivered /min", lambda h: h.get("most_delivered_per_min", h.get("sustained_per_min")), "{:.0f}"),
    ("target /min", lambda h: h.get("target_per_min"), "{:.0f}"),
    *[(heading, (lambda h, rule=rule: _audit(h, rule)), "{}") for rule, heading in (
        ("lost", "lost"), ("altered", "altered"), ("duplicate", "duplicate"), ("oversold", "oversold"),
        ("ghost", "ghost"), ("incomplete", "audit incomplete"))],
    ("p95 api s", lambda h: h.get("p95_api_s"), "{:.2f}"),
    ("p95 shop s", lambda h: h.get("p95_shop_s"), "{:.2f}"),
    ("faults", lambda h: h.get("faults"), "{}"),
]


def _capacity(headline: dict[str, Any], journey: str) -> str | None:
    """headline.json's capacity.<journey> as 'X/min (95% interval A-B, n runs)'; None when not measured."""
    from lab.analysis.capacity import describe_interval

    estimate = (headline.get("capacity") or {}).get(journey)
    if not isinstance(estimate, dict) or not estimate.get("repeats") or estimate.get("per_min") is None:
        return None
    return describe_interval(estimate)


def _audit(headline: dict[str, Any], rule: str) -> Any:
    """headline.json's audit.<rule>; a headline written before the audit block carried lost/duplicate/oversold
    at its top level."""
    audit = headline.get("audit")
    return audit.get(rule) if isinstance(audit, dict) else headline.get(rule)


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
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in COLUMNS)
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
        cells = "".join(f'<td class="{verdict_class if heading == "verdict" else ""}">{_cell(value(h), fmt)}</td>'
                        for heading, value, fmt in COLUMNS)
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
<p>Each study's report (HTML and PDF) with its headline figures: the verdict against the seed's purchases per minute,
the api capacity within the SLOs with its 95% interval over the repeated ramps, the most any run delivered (SLOs
aside), and the audit's counts of orders lost, altered, duplicated, oversold, ghost, and runs whose audit is
incomplete.</p>
<table><thead><tr><th>study</th><th>preset</th><th>status</th>{head}</tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
    out = root / "index.html"
    out.write_text(page, encoding="utf-8")
    return out
