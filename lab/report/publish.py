"""Execute a notebook against a run folder with papermill and publish it as self-contained HTML (and PDF).

The HTML has no code cells and embeds its figures; the PDF is printed from that HTML by headless Chromium
(Debian's package), so what a reader sees on screen and on paper is the same document.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import papermill
from nbconvert import HTMLExporter

from lab.common.paths import ROOT, reports_dir
from lab.errors import LabError
from lab.report.kernel import ensure_kernel

TEMPLATES = Path(__file__).resolve().parent / "templates"


class ReportError(LabError, RuntimeError):
    pass


def execute_notebook(name: str, out_dir: Path, parameters: dict) -> Path:
    """Run notebooks/<name> with papermill; the executed copy is kept even when a cell fails. The kernel's own
    terminal output (its warnings, a copy of the cells' output) goes to kernel.log beside it, not to the console."""
    from lab.study import console

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    try:
        papermill.execute_notebook(str(ROOT / "notebooks" / name), str(target), parameters=parameters,
                                   cwd=str(ROOT), progress_bar=False, kernel_name=ensure_kernel(),
                                   engine_name=console.ENGINE, kernel_log=str(out_dir / "kernel.log"))
    except papermill.PapermillExecutionError as error:
        raise ReportError(f"notebook {name} failed in cell {error.exec_count}: {error.ename}: {error.evalue} "
                          f"(executed copy: {target})") from None
    return target


def to_html(notebook: Path, html: Path) -> Path:
    """Self-contained HTML without code: figures embedded, nothing loaded from a CDN (templates/)."""
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True, exclude_anchor_links=True, template_name="pretix_lab_report",
                            extra_template_basedirs=[str(TEMPLATES)])
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(body, encoding="utf-8")
    return html


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


def to_pdf(html: Path, pdf: Path) -> Path:
    """Print the HTML with headless Chromium (installed from Debian's packages when missing and root)."""
    browser = chromium()
    if browser is None and Path("/etc/debian_version").exists() and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True)
        browser = chromium()
    if browser is None:
        raise ReportError("no Chromium to print the PDF with: apt-get install chromium")
    profile = pdf.parent / ".chromium-profile"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={profile}", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                    html.resolve().as_uri()], capture_output=True, timeout=120, check=False)
    shutil.rmtree(profile, ignore_errors=True)
    if not pdf.exists() or pdf.stat().st_size == 0:
        raise ReportError(f"Chromium did not write {pdf}")
    return pdf


def study_analysis(folder: Path) -> dict:
    """A study's own analysis parameters (targets, SLOs, warm-up) from its study.yaml, empty for a folder without
    one: every renderer of a study (its own report, `lab report`, `lab analyse`) publishes the same numbers."""
    path = Path(folder) / "study.yaml"
    if not path.exists():
        return {}
    from lab.study import params as studies

    return studies.load(path, check_budget=False).analysis.model_dump()


def study_summary(folder: Path, target: float | None = None, utilisation: float | None = None):
    """lab.analysis.summary.summarise with a study's own analysis parameters (targets, SLOs, warm-up, utilisation);
    an explicit target or utilisation wins. A run folder gets the defaults."""
    from lab.analysis.summary import summarise
    from lab.analysis.verdicts import Targets

    own = study_analysis(folder)
    if target is not None:
        own["target_per_min"] = target
    targets = Targets(**{k: float(own[k]) for k in ("target_per_min", "slo_p95_seconds", "slo_p95_shop_seconds",
                                                     "slo_error_rate") if k in own})
    share = utilisation if utilisation is not None else float(own.get("utilisation", 0.7))
    return summarise(folder, targets, utilisation=share, warmup_seconds=float(own.get("warmup_seconds", 0.0)))


def analysis_parameters(folder: Path, notebook: Path) -> dict:
    """The study's analysis parameters that the notebook takes (papermill refuses no unknown name, so filter)."""
    import papermill

    accepts = papermill.inspect_notebook(str(notebook))
    return {k: v for k, v in study_analysis(folder).items() if k in accepts}


def study_verdict(folder: Path) -> str | None:
    """The verdict (PASS, FAIL, UNDECIDED) a study's report published in its headline.json; None for a run folder
    or a study not yet reported."""
    import json

    from lab.analysis.summary import HEADLINE

    path = Path(folder) / HEADLINE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("verdict")


def report_run(run_dir: Path, pdf: bool = True, parameters: dict | None = None) -> Path:
    """reports/<name>/index.html (+ report.pdf) from notebooks/04-analysis.ipynb over one run folder or a study
    folder (its runs under runs/; it also gets headline.json, judged by the study's own analysis parameters).
    The executed notebook is kept in the folder."""
    from lab.analysis.study import NotARunFolder, is_run_dir, run_dirs
    from lab.common.paths import ROOT

    folder = Path(folder_or_fail(run_dir)).resolve()
    key = "run_dir" if is_run_dir(folder) else "study_dir"
    if key == "study_dir" and not run_dirs(folder):  # refused before papermill starts a kernel
        raise NotARunFolder(f"no run folder (with run.json or attempts.parquet) in {folder} or {folder}/runs")
    own = analysis_parameters(folder, ROOT / "notebooks" / "04-analysis.ipynb") if key == "study_dir" else {}
    executed = execute_notebook("04-analysis.ipynb", folder / "notebooks",
                                {key: str(folder), **own, **(parameters or {})})
    out = reports_dir() / folder.name
    html = to_html(executed, out / "index.html")
    if pdf:
        to_pdf(html, out / "report.pdf")
    return html


def report_compare(folders: list[Path], labels: list[str] | None = None, name: str | None = None,
                   pdf: bool = True) -> Path:
    """reports/<name>/index.html (+ report.pdf) from notebooks/05-compare.ipynb over two or more run folders."""
    paths = [Path(folder_or_fail(f)).resolve() for f in folders]
    name = name or "compare-" + "-vs-".join(p.name.split("-", 1)[-1][:24] for p in paths)[:120]
    out = reports_dir() / name
    executed = execute_notebook("05-compare.ipynb", out / "notebooks",
                                {"run_dirs": [str(p) for p in paths], "labels": list(labels or [])})
    html = to_html(executed, out / "index.html")
    if pdf:
        to_pdf(html, out / "report.pdf")
    return html


def folder_or_fail(path: Path) -> Path:
    if not Path(path).is_dir():
        from lab.analysis.study import NotARunFolder

        raise NotARunFolder(f"{path} is not a run or study folder")
    return Path(path)
