"""The reports of the test fixtures show the same tables and figures as when tests/fixtures/report-golden.json was
recorded (before the house step rearranged the code): prose may be reworded or moved, no table cell or figure
pixel may change. Re-record it (tests/report_snapshot.py's record) only for a change meant to alter a report."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_snapshot import load, missing, outputs, record_notebooks
from study_fixture import build_study

GOLDEN = Path(__file__).parent / "fixtures" / "report-golden.json"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("snapshot")
    study = build_study(root / "study")
    return {name: outputs(notebook) for name, notebook in record_notebooks(study, root).items()}


@pytest.mark.parametrize("report", ["synthetic-study", "real-study", "compare"])
def test_every_table_and_figure_as_recorded(snapshot, report):
    golden = load(GOLDEN)[report]
    gone = missing(golden, snapshot[report])
    assert gone == {"tables": [], "images": []}, f"{report}: {sum(map(len, gone.values()))} item(s) changed"


def test_the_snapshot_sees_tables_and_figures(snapshot):
    """A snapshot that reads nothing would pass the test above: each report has both."""
    for report, shown in snapshot.items():
        assert shown["tables"] and shown["images"], report
