"""What a report shows, reduced to what must not change when the code is rearranged: each table's cells (read
back from the executed notebook's HTML output) and each figure's PNG digest. Prose may move and grow; the
tables and figures of the test fixtures may not (tests/test_report_snapshot.py)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import nbformat


def outputs(notebook: Path) -> dict[str, list[str]]:
    """Tables as CSV text of their cells and figures as sha256 of their PNG, in the order shown."""
    tables: list[str] = []
    images: list[str] = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                images.append(hashlib.sha256(base64.b64decode(data["image/png"])).hexdigest())
            elif "text/html" in data and "<table" in data["text/html"]:
                tables.extend(_tables(data["text/html"]))
    return {"tables": tables, "images": images}


class _Cells(HTMLParser):
    """Rows of cell texts per <table>; styling, ids and attributes do not count."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def _tables(html: str) -> list[str]:
    parser = _Cells()
    parser.feed(html)
    return ["\n".join("|".join(row) for row in table) for table in parser.tables]


def missing(golden: dict[str, list[str]], now: dict[str, list[str]]) -> dict[str, list[str]]:
    """What the golden snapshot shows that the new one does not (as multisets: repeats count)."""
    return {kind: list((Counter(golden[kind]) - Counter(now[kind])).elements()) for kind in golden}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def record_notebooks(study: Path, out: Path) -> dict[str, Path]:
    """Execute the reports the snapshot covers: 04-analysis over a synthetic study (built by tests/study_fixture.py
    into `study`) and over the real-study fixture, and 05-compare over two of the synthetic runs."""
    from lab.report.publish import execute_notebook

    real = Path(__file__).parent / "fixtures" / "real-study"
    runs = [str(study / "runs" / "capacity-4-api"), str(study / "runs" / "faults-api")]
    return {
        "synthetic-study": execute_notebook("04-analysis.ipynb", out / "synthetic", {
            "study_dir": str(study), "plan_per_min": 1200.0, "write_headline": False}),
        "real-study": execute_notebook("04-analysis.ipynb", out / "real", {
            "study_dir": str(real), "write_headline": False}),
        "compare": execute_notebook("05-compare.ipynb", out / "compare", {"run_dirs": runs}),
    }


if __name__ == "__main__":  # record: python tests/report_snapshot.py tests/fixtures/report-golden.json
    import sys
    import tempfile

    from study_fixture import build_study

    with tempfile.TemporaryDirectory() as tmp:
        built = build_study(Path(tmp) / "study")
        shown = {name: outputs(nb) for name, nb in record_notebooks(built, Path(tmp)).items()}
    Path(sys.argv[1]).write_text(json.dumps(shown, indent=1))
