"""04-analysis over a study folder and 05-compare over two runs, executed by papermill and published as HTML:
every figure renders, no code or error shows, and the numbers published are the ones the functions compute."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from study_fixture import build_study

from lab.analysis.compare import compare_sentences, compare_table, load_compared
from lab.analysis.summary import summarise
from lab.report.publish import execute_notebook, to_html


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("r") / "study")


def _images(text: str) -> int:
    return len(re.findall(r'<img[^>]+src="data:image/png;base64,', text))


def test_study_report_publishes_every_section_with_computed_numbers(study, tmp_path):
    notebook = execute_notebook("04-analysis.ipynb", tmp_path, {"study_dir": str(study), "plan_per_min": 1200.0})
    text = to_html(notebook, tmp_path / "index.html").read_text()
    # capacity; traffic, resources, gauges of the faults run; per-fault latency; CPU per purchase
    assert _images(text) == 7  # and the capacity figure again on the first page
    assert "Traceback" not in text and "from lab.analysis" not in text and "summarise(" not in text
    expected = summarise(study, extra_targets=[1200.0])
    assert "Verdict: FAIL" in text
    for verdict in expected.verdicts:
        assert verdict.measured.replace("<", "&lt;") in text or verdict.measured in text, verdict
    for sentence in expected.meaning():
        assert sentence.split(":")[0] in text
    for section in ("Environment", "Capacity", "Timelines", "Faults", "Capacity planning", "What it means"):
        assert f">{section}" in text
    assert "Traffic control" not in text  # no run of kind overload
    assert "Synthetic CPU 9000" in text and "kill pretix-web-1" in text
    assert "Cores per module at 1200 purchases/min" in text
    headline = json.loads((study / "headline.json").read_text())
    want = expected.headline()
    for key in ("passed", "runs", "throughput_per_min", "throughput_run", "p95_seconds", "cores_for_target",
                "lost", "duplicate", "oversold", "faults"):
        assert headline[key] == want[key], key


def test_compare_notebook_over_two_runs(study, tmp_path):
    runs = [str(study / "runs" / "capacity-4-api"), str(study / "runs" / "faults-api")]
    notebook = execute_notebook("05-compare.ipynb", tmp_path, {"run_dirs": runs})
    text = to_html(notebook, tmp_path / "compare.html").read_text()
    assert _images(text) == 2 and "Traceback" not in text and "compare_table(" not in text
    expected = compare_table(load_compared(runs))
    for sentence in compare_sentences(expected):
        assert sentence.split(":")[0] in text
    assert "load.workload.duration" in text and "f1-kill" in text


def test_traffic_control_section_only_with_overload_runs(study, tmp_path):
    import shutil

    overload = tmp_path / "overload-study"
    shutil.copytree(study / "runs" / "capacity-8-api", overload / "runs" / "capacity-8-api")
    (overload / "study.json").write_text(json.dumps({"runs": [{"run_id": "capacity-8-api", "kind": "overload"}]}))
    notebook = execute_notebook("04-analysis.ipynb", tmp_path, {"study_dir": str(overload)})
    text = to_html(notebook, tmp_path / "index.html").read_text()
    assert "Traffic control under overload" in text and "Traceback" not in text


REAL = Path(__file__).parent / "fixtures" / "real-study"  # runs recorded on this lab (scripts/fixture_from_runs.py)


def test_real_runs_analyse_consistently():
    """A study recorded on the real stack: api capacity steps at 2, 4 and 8/s, a kill of pretix-web-1, web-shop
    closed runs with 2 and 4 buyers (a fifth of them log in) and 4 buyers who all log in, an api run under
    synchronous replication."""
    s = summarise(REAL)
    assert list(s.table["kind"]) == ["capacity"] * 3 + ["faults", "closed", "closed", "login", "load"]
    assert s.table["attempts"].tolist()[:4] == [40, 80, 160, 200]  # the offered load, attempt for attempt
    steps = s.steps.sort_values(["journey", "load"])
    api = steps[steps["journey"] == "api"]
    assert api["load"].tolist() == pytest.approx([120, 240, 480])
    assert (api["throughput_per_min"] <= api["load"] * 1.02).all()  # never more than was offered
    assert steps[steps["journey"] == "shop"]["users"].tolist() == [2, 4]
    assert s.table["lost"].sum() == s.table["duplicate"].sum() == s.table["oversold"].sum() == 0
    fault = s.faults.iloc[0]
    assert fault["action"] == "kill" and fault["target"] == "pretix-web-1" and 9 < fault["fault_seconds"] < 13
    assert bool(fault["recovery_recovered"]) and fault["failed_requests"] > 0  # retried: no attempt failed
    costs = s.journey_costs
    assert costs.loc["api"].idxmax() == "pretix-web" and costs.loc["shop"].idxmax() == "pretix-web"
    assert costs.loc["shop"].sum() > 5 * costs.loc["api"].sum()  # the web shop costs far more than an api order
    assert s.fit_methods["api"].startswith("fitted over") and s.login_source == "measured"
    assert s.login_cost.idxmax() == "pretix-web" and s.login_cost["pretix-web"] > 0.05  # an Argon2 hash


def test_study_report_on_real_runs(tmp_path):
    import shutil

    study = tmp_path / "real-study"
    shutil.copytree(REAL, study)
    notebook = execute_notebook("04-analysis.ipynb", tmp_path, {"study_dir": str(study)})
    text = to_html(notebook, tmp_path / "index.html").read_text()
    # capacity; 3 timelines for each of faults, login and sync runs; per-fault latency; CPU per purchase
    assert _images(text) == 13 and "Traceback" not in text  # the capacity figure twice: first page and its section
    expected = summarise(study)
    for verdict in expected.verdicts:
        assert verdict.measured in text, verdict
    assert "AMD EPYC" in text or "not recorded" in text
    assert json.loads((study / "headline.json").read_text())["sustained_per_min"] == pytest.approx(
        expected.headline()["sustained_per_min"])


def test_compare_sync_and_async_replication_on_real_runs(tmp_path):
    names = ("capacity-api-4-api", "sync-api-4-api")
    runs = sorted(str(p) for p in (REAL / "runs").iterdir() if p.name.endswith(names))
    notebook = execute_notebook("05-compare.ipynb", tmp_path, {"run_dirs": runs})
    text = to_html(notebook, tmp_path / "compare.html").read_text()
    table = compare_table(load_compared(runs))
    assert list(table["label"]) == ["async replication", "sync replication"]  # what differs names them
    assert "stack.replication" in text and "sync replication against async replication" in text
    assert _images(text) == 2


# --- the first page and the appendix (issue 14, part 7) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def real_report(tmp_path_factory):
    """04-analysis over a copy of the real-study fixture, published as HTML: (html path, the summary)."""
    import shutil

    root = tmp_path_factory.mktemp("real-report")
    study = root / "real-study"
    shutil.copytree(REAL, study)
    notebook = execute_notebook("04-analysis.ipynb", root, {"study_dir": str(study), "write_headline": False})
    return to_html(notebook, root / "index.html"), summarise(study)


def _first_detail_section(text: str) -> int:
    return min(text.index(f">{section}") for section in ("Summary", "Runs", "Environment"))


def test_the_report_opens_with_the_verdict_its_meaning_and_one_figure(real_report):
    from lab.report.first_page import on_sale_sentences

    html, summary = real_report
    text = html.read_text()
    sentences = on_sale_sentences(summary)
    assert 3 <= len(sentences) <= 5
    verdict = text.index(f"Verdict: {summary.verdict}")
    said = [text.index(s.replace("'", "&#39;") if s.replace("'", "&#39;") in text else s) for s in sentences]
    first_image = text.index("<img ")
    detail = _first_detail_section(text)
    assert verdict < min(said) and max(said) < first_image < detail, (verdict, said, first_image, detail)
    assert _images(text[:detail]) == 1  # one figure on the first page
    assert "<table" not in text[:detail]  # and no table
    assert text.index("break-after: page") < detail  # printed, the detail starts on the next page


def test_the_appendix_holds_the_wide_tables_and_the_body_none(real_report):
    from report_snapshot import _tables

    from lab.report.appendix import WIDE_COLUMNS

    html, _ = real_report
    text = html.read_text()
    appendix = text.index("Appendix: wide tables")
    body, tail = _tables(text[:appendix]), _tables(text[appendix:])

    def width(table: str) -> int:
        return max(len(row.split("|")) for row in table.split("\n"))

    assert body and all(width(t) < WIDE_COLUMNS for t in body), [t.split("\n")[0] for t in body if width(t) >= 8]
    heads = [t.split("\n")[0] for t in tail]
    assert all(width(t) >= WIDE_COLUMNS for t in tail)
    for wide in ("run|kind|journey|load|attempts", "run|fault|action|target", "journey|purchases/min"):
        assert any(h.startswith(wide) for h in heads), (wide, heads)
    assert "Runs: Table A1 in the appendix" in text[:appendix]  # the body says where it went


LAYOUT_PROBE = """<script>
  window.addEventListener('load', () => {
    const page = document.documentElement.clientWidth;
    const wide = [...document.querySelectorAll('table')]
      .filter(t => t.getBoundingClientRect().right > page + 1 || t.scrollWidth > t.clientWidth + 1)
      .map(t => (t.querySelector('th, td') || t).textContent.trim().slice(0, 40));
    const out = document.createElement('pre'); out.id = 'lab-layout';
    out.textContent = JSON.stringify({page, tables: document.querySelectorAll('table').length, wide});
    document.body.appendChild(out);
  });
</script>"""


def _tables_wider_than_the_page(html: Path, tmp_path: Path) -> dict:
    """Lay the report out in headless Chromium at the printed page's width (A4 less its 12 mm margins, in CSS px),
    with the print rules applied, and list the tables whose right edge runs past it."""
    import subprocess

    from lab.report.publish import chromium

    probe = tmp_path / "layout.html"
    probe.write_text(re.sub("<head>", "<head>" + LAYOUT_PROBE, html.read_text().replace("@media print", "@media all"),
                            count=1))
    profile = tmp_path / "profile"
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", f"--user-data-dir={profile}", "--hide-scrollbars",
                          "--window-size=703,1000", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="lab-layout">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_no_table_runs_wider_than_the_printed_page(real_report, tmp_path):
    from lab.report.publish import chromium

    if chromium() is None:
        pytest.skip("no Chromium (the PDF printer) on this machine")
    html, _ = real_report
    seen = _tables_wider_than_the_page(html, tmp_path)
    assert seen["page"] <= 710 and seen["tables"] >= 10, seen
    assert seen["wide"] == [], seen
    # the probe can fail: the same report without the appendix's fitting rules has tables past the page
    from lab.report.appendix import APPENDIX_STYLE

    unfitted = tmp_path / "unfitted.html"
    unfitted.write_text(html.read_text().replace(APPENDIX_STYLE, "").replace(APPENDIX_STYLE.replace("&", "&amp;"), ""))
    assert APPENDIX_STYLE not in unfitted.read_text()
    assert _tables_wider_than_the_page(unfitted, tmp_path)["wide"], "the probe sees no overflow at all"
