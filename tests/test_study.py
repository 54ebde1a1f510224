"""The study: parameters refused before anything is deployed (unit), and the quick study end to end (real stack)."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import yaml
from click.testing import CliRunner

from lab.cli import main
from lab.study import params as studies

# --- unit: parameters, presets, budget -------------------------------------------------------------------------------


def test_presets_are_valid_and_fit_their_budgets():
    default, quick = studies.load(preset="default"), studies.load(preset="quick")
    assert default.max_minutes <= 24 and quick.max_minutes <= 6
    assert studies.estimate(default).total <= 24 * 60 and studies.estimate(quick).total <= 6 * 60
    assert default.efficiency.enabled and quick.efficiency.enabled  # every study says who pays for an order
    assert default.capacity_api.repeats >= 3 and quick.capacity_api.repeats >= 2  # a capacity with its interval
    kinds = {(r.kind, r.journey) for r in studies.plan_runs(default)}
    assert kinds == {("capacity", "api"), ("capacity", "shop"), ("spike", "api"), ("spike", "shop"),
                     ("faults", "api")}
    assert {(r.kind, r.journey) for r in studies.plan_runs(quick)} == kinds  # quick exercises every step
    spike = next(r for r in studies.plan_runs(default) if r.name == "spike-api")
    assert spike.load["workload"]["rate"] == pytest.approx(800 / 60, abs=0.01)
    actions = [s["action"] for r in studies.plan_runs(default) if r.kind == "faults"
               for s in r.load["faults"]["faults"]]
    assert "pg-failover" in actions and "kill" in actions


def test_an_optional_fault_missing_from_the_catalogue_is_left_out():
    params = studies.validate({"faults": {"seconds": 60, "steps": [
        {"at": 5, "target": "redis", "action": "no-such-fault", "duration": 5, "optional": True},
        {"at": 20, "target": "pretix-web-1", "action": "kill", "duration": 5}]}})
    steps = next(r for r in studies.plan_runs(params) if r.kind == "faults").load["faults"]["faults"]
    assert [s["action"] for s in steps] == ["kill"] and "optional" not in steps[0]


@pytest.mark.parametrize(("raw", "expected"), [
    ({"capacity_api": {"rates": [0, 4]}}, "capacity_api.rates: every rate must be > 0"),
    ({"spike": {"per_minute": 800}}, "spike.per_minute: unknown parameter; allowed: per_min, api_seconds"),
    ({"stack": {"replication": "maybe"}}, "stack.replication: must be one of 'async', 'sync' (got 'maybe')"),
    ({"preset": "Not OK"}, "preset: String should match pattern"),
    ({"seed": {"customers": {"count": 5, "login_pool": 9}}}, "login_pool=9 exceeds customers.count=5"),
    ({"faults": {"steps": [{"at": 1, "target": "nope", "action": "kill", "duration": 1}]}},
     "faults.steps.0.target: 'nope' is not a target of 'kill'; allowed: proxy, pretix-web-1"),
    ({"faults": {"steps": [{"at": 1, "target": "redis", "action": "zap", "duration": 1}]}},
     "faults.steps.0.action: No fault named 'zap'; known:"),
    ({"faults": {"seconds": 10, "steps": [{"at": 1, "target": "redis", "action": "kill", "duration": 30}]}},
     "faults.steps.0: f1-kill is undone at 31 s, after the load's 10 s"),
    ({"product_mix": {"Camarote": 1}}, "product_mix: unknown product 'Camarote'; the catalogue has: Bilhete Geral"),
    ({"max_minutes": 2}, "max_minutes: the study is estimated"),
    ({"bogus": 1}, "bogus: unknown parameter; allowed: preset, description, max_minutes, stack"),
])
def test_invalid_study_parameters_name_the_field_and_what_is_allowed(raw, expected):
    with pytest.raises(studies.StudyParamsError) as error:
        studies.validate(raw)
    assert str(error.value).startswith("invalid study parameters:")
    assert expected in str(error.value), str(error.value)


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(studies.StudyParamsError) as error:
        studies.validate({"capacity_api": {"rates": [-1]}, "spike": {"api_seconds": -5}, "overload": {"factor": 0}})
    text = str(error.value)
    assert "capacity_api.rates" in text and "spike.api_seconds" in text and "overload.factor" in text


def test_the_cli_refuses_bad_parameters_before_anything_is_deployed(tmp_path, monkeypatch):
    """`lab study bad.yaml` exits 2 with the field named; no study folder, no deployment, no engine call."""
    from lab.stack import deploy, engine

    monkeypatch.setenv("PRETIX_LAB_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("PRETIX_LAB_DATA", str(tmp_path / "data"))
    called = []
    monkeypatch.setattr(deploy, "up", lambda *a, **k: called.append("up"))
    monkeypatch.setattr(engine, "ensure_engine", lambda *a, **k: called.append("engine"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"preset": "bad", "capacity_shop": {"users": [0]}}))
    result = CliRunner().invoke(main, ["study", str(bad)])
    assert result.exit_code == 2, result.output
    assert "capacity_shop.users: every step needs 1 to 200 users" in result.output
    unknown = CliRunner().invoke(main, ["study", "--preset", "huge"])
    assert unknown.exit_code == 2 and "no preset named 'huge'; known: default, " in unknown.output
    assert ", quick" in unknown.output
    assert called == [] and not (tmp_path / "var").exists() and not (tmp_path / "data").exists()


def test_the_check_flag_prints_the_plan_and_its_budget():
    result = CliRunner().invoke(main, ["study", "--preset", "quick", "--check"])
    assert result.exit_code == 0, result.output
    assert "estimated" in result.output and "spike-api" in result.output and "faults-api" in result.output


def test_the_reports_index_lists_studies_and_tolerates_missing_figures(tmp_path, monkeypatch):
    from lab.report import index as reports_index

    monkeypatch.setenv("PRETIX_LAB_DATA", str(tmp_path / "data"))
    for name, headline in [("20261201-1000-quick", {"verdict": "fail", "sustained_per_min": 480.4, "lost": 0}),
                           ("20261201-1100-default", None)]:
        folder = tmp_path / "reports" / name
        folder.mkdir(parents=True)
        (folder / "index.html").write_text("<html></html>")
        if headline:
            (folder / "headline.json").write_text(json.dumps(headline))
    page = reports_index.build(tmp_path / "reports").read_text()
    assert page.index("20261201-1100-default") < page.index("20261201-1000-quick")  # newest first
    assert ">480<" in page and ">fail<" in page and "-</td>" in page  # an old headline: its best run, a dash
    assert "http" not in page.replace('href="20261201', "")  # nothing loaded from elsewhere


def test_the_reports_index_leads_with_the_verdict_and_the_capacity_interval(tmp_path, monkeypatch):
    """Issue 11: the verdict, then 'X/min (95% interval A-B, n runs)' from headline.json's capacity.api, then the
    most any run delivered, then the audit's counts; the old 'sustained' figure is no column of its own."""
    from lab.report import index as reports_index

    monkeypatch.setenv("PRETIX_LAB_DATA", str(tmp_path / "data"))
    headline = {"verdict": "UNDECIDED", "sustained_per_min": 999.0, "most_delivered_per_min": 612.4,
                "capacity": {"api": {"per_min": 480.0, "ci_low": 420.0, "ci_high": 540.0, "repeats": 3}},
                "audit": {"lost": 1, "altered": 2, "duplicate": 3, "oversold": 4, "ghost": 5, "incomplete": 6}}
    folder = tmp_path / "reports" / "20261203-1200-default"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<html></html>")
    (folder / "headline.json").write_text(json.dumps(headline))
    page = reports_index.build(tmp_path / "reports").read_text()
    heads = re.findall(r"<th>([^<]*)</th>", page)
    assert heads[3:6] == ["verdict", "api capacity within SLO", "most delivered /min"]  # after study, preset, status
    assert "sustained /min" not in heads
    cells = ["study"] + re.findall(r"<td[^>]*>([^<]*)</td>", page)  # the first cell holds the links
    assert cells[3:6] == ["UNDECIDED", "480/min (95% interval 420-540, 3 runs)", "612"]
    audit = [cells[heads.index(h)] for h in ("lost", "altered", "duplicate", "oversold", "ghost", "audit incomplete")]
    assert audit == ["1", "2", "3", "4", "5", "6"]


def test_a_failed_cell_stops_the_study_and_is_recorded_with_its_notebook_and_cell(tmp_path, monkeypatch):
    """Through papermill and the real kernel: the second notebook fails in its third cell; the study stops there
    (the third notebook never runs), study.json names notebook and cell, the executed copy is kept and published."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from lab.study.runner import StudyFailed, run_study

    monkeypatch.setenv("PRETIX_LAB_REPORTS", str(tmp_path / "reports"))
    source = tmp_path / "notebooks"
    source.mkdir()
    cells = {"a.ipynb": ["x = 1"], "b.ipynb": ["print('before')", "raise ValueError('the seed broke')"],
             "c.ipynb": ["open('never', 'w')"]}
    for name, code in cells.items():
        nb = new_notebook(cells=[new_code_cell('study_dir = ""\nparams_file = ""', metadata={"tags": ["parameters"]}),
                                 *map(new_code_cell, code)],
                          metadata={"kernelspec": {"name": "pretix-lab", "language": "python", "display_name": "lab"}})
        nbformat.write(nb, source / name)
    with pytest.raises(StudyFailed) as error:
        run_study(studies.load(preset="quick"), keep_stack=True, pdf=False, progress=False, root=tmp_path / "runs",
                  notebooks=list(cells), source=source)
    message = str(error.value)
    assert "notebook b.ipynb failed in cell 3" in message and "ValueError: the seed broke" in message, message
    record = json.loads((error.value.folder.path / "study.json").read_text())
    assert record["status"] == "failed" and record["finished"]
    # cell 0: parameters, 1: papermill's injected parameters, 2: print, 3: the raise
    assert record["failed"] == {"notebook": "b.ipynb", "cell": 3, "error": "ValueError: the seed broke"}
    executed = error.value.folder.notebooks_dir
    assert sorted(p.name for p in executed.iterdir()) == ["a.ipynb", "b.ipynb"]
    page = (tmp_path / "reports" / error.value.folder.study_id / "index.html").read_text()  # what it could publish
    assert "This study stopped early." in page and "b.ipynb failed in cell 3" in page


def _notebook(path, *cells: str) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell('study_dir = ""\nparams_file = ""', metadata={"tags": ["parameters"]}),
                             *map(new_code_cell, cells)],
                      metadata={"kernelspec": {"name": "pretix-lab", "language": "python", "display_name": "lab"}})
    nbformat.write(nb, path)


def test_a_secret_written_into_a_run_folder_fails_the_study_naming_file_and_kind(tmp_path, monkeypatch, capsys):
    """Through papermill: a notebook writes the deployment's redis password into a run's Parquet (its source and
    output never show it); the check at the end finds it, study.json names the file and the kind, the study fails,
    and nothing printed or recorded holds the value."""
    from lab.stack.secrets import load_or_create
    from lab.study.runner import StudyFailed, run_study

    monkeypatch.setenv("PRETIX_LAB_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("PRETIX_LAB_REPORTS", str(tmp_path / "reports"))
    password = load_or_create(tmp_path / "var" / "deploy").redis_password
    source = tmp_path / "notebooks"
    source.mkdir()
    _notebook(source / "leak.ipynb",
              "import json, os, pandas as pd\n"
              "secret = json.load(open(os.environ['PRETIX_LAB_VAR'] + '/deploy/secrets.json'))['redis_password']\n"
              "os.makedirs(study_dir + '/runs/r1', exist_ok=True)\n"
              "pd.DataFrame({'error': ['auth ' + secret]}).to_parquet(study_dir + '/runs/r1/requests.parquet')")
    with pytest.raises(StudyFailed, match=r"secrets found in 1 file\(s\).*kinds: redis_password"):
        run_study(studies.load(preset="quick"), keep_stack=True, pdf=False, progress=False, root=tmp_path / "runs",
                  notebooks=["leak.ipynb"], source=source, log=print)
    [folder] = (tmp_path / "runs").iterdir()
    record = json.loads((folder / "study.json").read_text())
    assert record["status"] == "failed" and "redis_password" in record["failed"]["error"]
    assert record["secret_check"]["findings"] == [{"file": "runs/r1/requests.parquet", "kind": "redis_password"}]
    assert "redis_password" in record["secret_check"]["kinds"] and record["secret_check"]["files"] >= 3
    printed = capsys.readouterr().out
    assert "SECRET FOUND: runs/r1/requests.parquet: redis_password" in printed
    published = tmp_path / "reports" / folder.name
    assert json.loads((published / "study.json").read_text())["secret_check"] == record["secret_check"]
    for text in (printed, (folder / "study.json").read_text(), (published / "index.html").read_text()):
        assert password not in text


def test_a_clean_study_passes_the_secret_check(tmp_path, monkeypatch):
    from lab.stack.secrets import load_or_create
    from lab.study.runner import run_study

    monkeypatch.setenv("PRETIX_LAB_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("PRETIX_LAB_REPORTS", str(tmp_path / "reports"))
    load_or_create(tmp_path / "var" / "deploy")
    source = tmp_path / "notebooks"
    source.mkdir()
    _notebook(source / "clean.ipynb", "print('nothing secret')")
    result = run_study(studies.load(preset="quick"), keep_stack=True, pdf=False, progress=False,
                       root=tmp_path / "runs", notebooks=["clean.ipynb"], source=source, log=lambda _m: None)
    record = result.folder.read()
    assert record["status"] == "passed" and record["secret_check"]["findings"] == []
    assert "buyer_secret" in record["secret_check"]["kinds"] and record["secret_check"]["files"] >= 3


def test_lab_lab_serves_the_notebooks_on_localhost_with_the_lab_kernel(tmp_path):
    """`lab lab` starts JupyterLab bound to 127.0.0.1, default kernel pretix-lab (the venv's Python), on notebooks/."""
    import os
    import socket
    import sys

    import httpx

    from lab.common.paths import ROOT

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen([sys.executable, "-m", "lab.cli", "lab", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = server.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/lab\?token=\S+)", first).group(1)
        token = url.split("token=")[1]
        deadline = time.monotonic() + 60
        while True:
            try:
                specs = httpx.get(f"http://127.0.0.1:{port}/api/kernelspecs", params={"token": token}, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "JupyterLab did not answer"
                time.sleep(0.5)
        assert specs.status_code == 200 and specs.json()["default"] == "pretix-lab"
        spec = specs.json()["kernelspecs"]["pretix-lab"]["spec"]
        assert spec["argv"][0] == sys.executable
        listing = httpx.get(f"http://127.0.0.1:{port}/api/contents", params={"token": token}, timeout=5).json()
        assert {"00-deploy.ipynb", "02-load.ipynb", "04-analysis.ipynb"} <= {c["name"] for c in listing["content"]}
        assert httpx.get(f"http://127.0.0.1:{port}/api/contents", timeout=5).status_code == 403  # token needed
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- the quick study end to end, through papermill, on the real stack ----------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


PROBE = """<script>
  window.__labErrors = [];
  window.addEventListener('error', e => window.__labErrors.push(
      String(e.message || (e.target && e.target.src) || e).slice(0, 200)), true);
  const __labLog = console.error;
  console.error = (...a) => { window.__labErrors.push(a.join(' ').slice(0, 200)); __labLog(...a); };
  window.addEventListener('load', () => {
    const imgs = [...document.images];
    const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
    const out = document.createElement('pre'); out.id = 'lab-probe';
    out.textContent = JSON.stringify({images: imgs.length, broken, errors: window.__labErrors});
    document.body.appendChild(out);
  });
</script>"""


@pytest.fixture(scope="module")
def quick_study(stack, tmp_path_factory):
    """`lab study --preset quick` in-process (same code path as the CLI), stack kept for the secrets check."""
    import os

    from lab.evidence.secretscan import known_secrets
    from lab.study.runner import run_study

    reports = tmp_path_factory.mktemp("reports")
    os.environ["PRETIX_LAB_REPORTS"] = str(reports)
    began = time.monotonic()
    try:
        result = run_study(studies.load(preset="quick"), keep_stack=True, root=tmp_path_factory.mktemp("runs"))
    finally:
        del os.environ["PRETIX_LAB_REPORTS"]
    print(f"quick study: {time.monotonic() - began:.0f} s wall; {result.seconds}")
    return result, known_secrets(), reports


@pytest.mark.stack
def test_the_quick_study_records_every_step_and_publishes_html_and_pdf(quick_study):
    result, _, reports = quick_study
    record = json.loads((result.folder.path / "study.json").read_text())
    assert record["status"] == "passed" and record["failed"] is None, record
    kinds = {(r["kind"], r["journey"]) for r in record["runs"]}
    assert {("capacity", "api"), ("capacity", "shop"), ("spike", "api"), ("spike", "shop"),
            ("faults", "api")} <= kinds
    for run in record["runs"]:
        assert (result.folder.path / run["dir"] / "run.json").exists(), run
    executed = sorted(p.name for p in result.folder.notebooks_dir.glob("*.ipynb"))
    assert executed == ["00-deploy.ipynb", "01-seed.ipynb", "02-load.ipynb", "03-faults.ipynb", "04-analysis.ipynb"]
    assert result.html == reports / result.folder.study_id / "index.html" and result.html.exists()
    assert result.pdf is not None and result.pdf.read_bytes().startswith(b"%PDF")
    assert result.folder.study_id in (reports / "index.html").read_text()
    comparison = json.loads((result.folder.path / "efficiency.json").read_text())  # pretix alone, same run
    assert "error" not in comparison, comparison
    assert {s["side"] for s in comparison["steps"]} == {"stack", "alone"}
    assert all(s["purchased"] > 0 for s in comparison["steps"]), comparison["steps"]
    assert "pretix's own cost" in result.html.read_text()


@pytest.mark.stack
def test_the_report_shows_every_figure_in_headless_chromium(quick_study, tmp_path):
    """Every <img> decoded (naturalWidth > 0), no console error, nothing fetched from elsewhere."""
    from lab.report.publish import chromium

    result, _, _ = quick_study
    html = result.html.read_text()
    sources = re.findall(r'<img[^>]+src="([^"]{0,40})', html)
    assert sources and all(s.startswith("data:image/") for s in sources), sources
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', html)  # self-contained: no CDN
    probe = tmp_path / "probe.html"  # the report plus a first script that writes what the browser saw into the DOM
    probe.write_text(re.sub("<head>", "<head>" + PROBE, html, count=1))
    profile = tmp_path / "profile"
    profile.mkdir()
    dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                          "--v=0", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="lab-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    seen = json.loads(found.group(1).replace("&quot;", '"'))
    print("chromium saw:", seen)
    assert seen["images"] == len(sources) and seen["broken"] == 0 and seen["errors"] == [], seen
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln]  # Chromium's own log of the console
    assert not console, console


@pytest.mark.stack
def test_the_pdf_has_pages_and_text(quick_study, tmp_path):
    result, _, _ = quick_study
    text = subprocess.run(["pdftotext", "-layout", str(result.pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    pages = subprocess.run(["pdfinfo", str(result.pdf)], capture_output=True, text=True, check=True).stdout
    count = int(re.search(r"Pages:\s+(\d+)", pages).group(1))
    print(f"PDF: {count} pages, {len(text.split())} words")
    assert count >= 2 and len(text.split()) > 100


@pytest.mark.stack
def test_lab_report_on_the_study_publishes_the_numbers_of_the_study_own_report(quick_study, tmp_path, monkeypatch):
    """One warm-up rule and one set of targets, read from study.yaml by every renderer of a study."""
    from lab.report.publish import report_run

    result, _, _ = quick_study
    headline = result.folder.path / "headline.json"
    own = json.loads(headline.read_text())
    monkeypatch.setenv("PRETIX_LAB_REPORTS", str(tmp_path))
    report_run(result.folder.path, pdf=False)
    again = json.loads(headline.read_text())
    headline.write_text(json.dumps(own, indent=2))  # the study's own record stays as it published it
    for doc in (own, again):
        doc.pop("generated")
    assert again == own
    assert studies.load(result.folder.path / "study.yaml", check_budget=False).analysis.warmup_seconds == 1


@pytest.mark.stack
def test_no_secret_in_any_file_of_the_study_its_runs_or_its_reports(quick_study):
    """Every file of the study folder (its run folders, notebooks, records) and of the published reports, HTML
    and PDF, searched for every secret of the deployment and every derived buyer password."""
    from lab.evidence.secretscan import files_under, find_secrets

    result, secrets, reports = quick_study
    assert len(secrets["buyer_password"]) >= 1 and len(secrets["redis_password"]) == 1, sorted(secrets)
    flat = [v for values in secrets.values() for v in values]
    assert len(flat) >= 9 and all(len(s) >= 16 for s in flat)  # the secrets files, the token, the buyers were read
    runs = [result.folder.path / r["dir"] for r in result.folder.runs()]
    assert runs and all(any(p.suffix == ".parquet" for p in files_under(run)) for run in runs)
    assert any(p.suffix == ".pdf" for p in files_under(reports)) and any(p.suffix == ".html" for p in
                                                                          files_under(reports))
    leaks = find_secrets(result.folder.path, secrets) + find_secrets(reports, secrets)
    assert not leaks, [(str(path), kind) for path, kind in leaks]
    check = result.folder.read()["secret_check"]  # the study's own check, made before its teardown
    assert check["findings"] == [] and check["files"] > len(runs)
    assert "buyer_password" in check["kinds"]


def test_without_a_step_within_the_slo_the_overload_is_sized_by_the_best_step_that_kept_up():
    from lab.study.params import kept_up_from

    rows = [{"offered": 4, "achieved": 3.9, "p95": 0.3, "errors": 0.0},
            {"offered": 8, "achieved": 7.8, "p95": 1.3, "errors": 0.0},
            {"offered": 12, "achieved": 7.1, "p95": 20.0, "errors": 0.0}]
    assert kept_up_from(rows, 0.01) == 7.8  # 12/s achieved 7.1: it no longer kept up
    assert kept_up_from([{**r, "errors": 0.5} for r in rows], 0.01) is None
