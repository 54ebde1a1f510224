"""`lab study`: the notebooks 00..04 in order under papermill, then the published HTML and PDF.

A failed cell stops the study: study.json records {notebook, cell, error}, everything recorded so far is kept,
what can be published is published, and the stack is torn down (`lab down --volumes`). Ctrl-C does the same.
Before the teardown, every file of the study and its report is searched for the deployment's secrets; a secret
found fails the study (study.json's `secret_check` names the files and the kinds, never a value).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import papermill

from lab.common.paths import ROOT, reports_dir
from lab.errors import LabError
from lab.report.kernel import ensure_kernel
from lab.study import params as studies
from lab.study.folder import NOTEBOOKS, StudyFolder
from lab.study.progress import Progress

Log = Callable[[str], None]
ANALYSIS = "04-analysis.ipynb"


class StudyFailed(LabError, RuntimeError):
    def __init__(self, message: str, folder: StudyFolder, failed: dict[str, Any]):
        super().__init__(message)
        self.folder, self.failed = folder, failed


@dataclass
class StudyResult:
    folder: StudyFolder
    html: Path | None
    pdf: Path | None
    seconds: dict[str, float]


NOTEBOOKS_DIR = ROOT / "notebooks"


def notebook_parameters(folder: StudyFolder, name: str, source: Path = NOTEBOOKS_DIR) -> dict[str, Any]:
    """00..03 get study_dir and params_file; 04-analysis gets study_dir when it takes it (else one run_dir)."""
    base = {"study_dir": str(folder.path), "params_file": str(folder.path / "study.yaml")}
    if name != ANALYSIS:
        return base
    from lab.report.publish import analysis_parameters

    accepts = papermill.inspect_notebook(str(source / name))
    params: dict[str, Any] = analysis_parameters(folder.path, source / name)
    if "study_dir" in accepts:
        params["study_dir"] = str(folder.path)
    if "run_dir" in accepts and "study_dir" not in accepts:
        runs = folder.runs()
        chosen = next((r for r in runs if r["kind"] == "spike" and r["journey"] == "api"), runs[0] if runs else None)
        if chosen is not None:
            params["run_dir"] = str(folder.path / chosen["dir"])
    return params


def execute(folder: StudyFolder, name: str, kernel: str, progress: bool = True, source: Path = NOTEBOOKS_DIR,
            log: Log | None = print) -> Path:
    """Run source/<name> with papermill into the study's notebooks/ (the executed copy is kept on failure).
    With `progress`, each line of the cells' output is passed to `log` once (lab.study.console); the kernel's own
    terminal output (a copy of what the cells show, and the kernel's own warnings) is appended to kernel.log."""
    from lab.study import console

    target = folder.notebooks_dir / name
    folder.notebooks_dir.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source / name), str(target), engine_name=console.ENGINE,
                               parameters=notebook_parameters(folder, name, source), kernel_name=kernel, cwd=str(ROOT),
                               progress_bar=False, log_output=False, request_save_on_cell_execute=True,
                               echo=log if progress else None, kernel_log=str(folder.path / "kernel.log"))
    return target


def publish(folder: StudyFolder, notebook: Path, pdf: bool = True, log: Log = print) -> tuple[Path, Path | None]:
    """reports/<study-id>/index.html (+ report.pdf) from an executed notebook; then reports/index.html."""
    from lab.report import index as reports_index
    from lab.report.publish import to_html, to_pdf

    out = reports_dir() / folder.study_id
    out.mkdir(parents=True, exist_ok=True)
    html = to_html(notebook, out / "index.html")
    failed = folder.read().get("failed")
    if failed:  # say so first: the report covers only what was recorded before the failure
        import html as escape
        import re

        banner = (f'<div style="background:#f8d7d7;border:1px solid #c00;padding:8px;margin:8px">'
                  f"<b>This study stopped early.</b> Notebook {escape.escape(str(failed.get('notebook')))} "
                  f"failed in cell {escape.escape(str(failed.get('cell')))}: "
                  f"{escape.escape(str(failed.get('error')))}. Only the {len(folder.runs())} run(s) recorded "
                  f"before it are reported here.</div>")
        text = html.read_text(encoding="utf-8")
        html.write_text(re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + banner, text, count=1), encoding="utf-8")
    printed = to_pdf(html, out / "report.pdf") if pdf else None
    for extra in ("headline.json", "study.json"):
        if (folder.path / extra).exists():
            shutil.copyfile(folder.path / extra, out / extra)
    index = reports_index.build()
    log(f"published {html}" + (f" and {printed}" if printed else "") + f"; all studies: {index}")
    return html, printed


def _publish_what_we_can(folder: StudyFolder, failed_notebook: str, kernel: str, pdf: bool, log: Log,
                         source: Path = NOTEBOOKS_DIR):
    """After a failure: the analysis over the runs recorded so far if there are any, else the failed notebook."""
    candidates = []
    if failed_notebook != ANALYSIS and folder.runs():
        try:
            log(f"publishing what was recorded: {ANALYSIS} over {len(folder.runs())} run(s)")
            candidates.append(execute(folder, ANALYSIS, kernel, progress=False, source=source, log=log))
        except Exception as error:  # noqa: BLE001 - the failed notebook below is the fallback
            log(f"  the analysis of the partial study failed too: {error}")
    candidates.append(folder.notebooks_dir / failed_notebook)
    for notebook in candidates:
        if notebook.exists():
            try:
                return publish(folder, notebook, pdf=pdf, log=log)
            except Exception as error:  # noqa: BLE001 - keep going: teardown must still happen
                log(f"  publishing {notebook.name} failed: {error}")
    return None, None


def check_secrets(folder: StudyFolder, log: Log, values: dict[str, list[str]] | None = None) -> list[dict[str, str]]:
    """Every file of the study (its runs, notebooks, records) and of its published report searched for every secret
    of the deployment and every derived buyer password (lab.evidence.secretscan), before the teardown removes them.
    Recorded in study.json as `secret_check` and printed: file names and the secret's kind, never its value.
    Returns the findings; a check that could not be made (unreadable secrets) is one finding of kind 'unchecked'."""
    from lab.evidence.secretscan import check_places, describe_check

    record = check_places([folder.path, reports_dir() / folder.study_id, reports_dir() / "index.html"], values)
    for finding in record["findings"]:
        path = Path(finding["file"])
        if finding["kind"] != "unchecked" and path.is_relative_to(folder.path):
            finding["file"] = str(path.relative_to(folder.path))
    folder.update(secret_check=record)
    for line in describe_check(record):
        log(line)
    return record["findings"]


def _copy_record(folder: StudyFolder) -> None:
    """The published report's copy of study.json, brought up to date after the secret check."""
    out = reports_dir() / folder.study_id
    if out.is_dir():
        shutil.copyfile(folder.path / "study.json", out / "study.json")


def teardown(log: Log) -> None:
    """`lab down --volumes`; a second Ctrl-C does not cut it short (it would leave half a stack behind)."""
    import signal
    import threading

    from lab.stack import deploy

    log("tearing the stack down (lab down --volumes)")
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        left = deploy.down(volumes=True, log=log)
        if left:
            log("  left behind: " + ", ".join(left))
    except Exception as error:  # noqa: BLE001 - report, the study's own error matters more
        log(f"  teardown failed: {error}")
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _refuse_foreign_deployment(log: Log) -> None:
    """A deployment this checkout cannot open would make 00-deploy fail and the failure's teardown remove it, with
    its data: refuse before the study folder exists or anything is touched."""
    from lab.stack import deploy
    from lab.stack.engine import ensure_engine

    why = deploy.foreign_deployment(ensure_engine(log=log))
    if why:
        raise deploy.DeployError(f"the study cannot deploy: {why}")


def run_study(params: studies.StudyParams, *, log: Log = print, keep_stack: bool = False, pdf: bool = True,
              progress: bool = True, root: Path | None = None, notebooks: list[str] | None = None,
              source: Path = NOTEBOOKS_DIR) -> StudyResult:
    """Create the study folder and run notebooks 00..04 (or `notebooks` from `source`), then publish.
    Raises StudyFailed (after publishing what it can and the teardown) naming the notebook and cell."""
    sequence = notebooks or NOTEBOOKS
    if NOTEBOOKS[0] in sequence:
        _refuse_foreign_deployment(log)
    kernel = ensure_kernel()
    folder = StudyFolder.create(params, root)
    budget = studies.estimate(params)
    log(f"study {folder.study_id}: {budget.describe()}")
    log(f"study folder: {folder.path}")
    seconds: dict[str, float] = {}
    clock = Progress(_without_teardown(budget) if keep_stack else budget, list(sequence))
    began = time.monotonic()
    current = sequence[0]
    try:
        for index, name in enumerate(sequence):
            current = name
            log(clock.line(index))  # one line per notebook: the study's elapsed and estimated remaining time
            start = time.monotonic()
            execute(folder, name, kernel, progress, source, log)
            seconds[name] = round(time.monotonic() - start, 1)
        folder.finish("passed")
        start = time.monotonic()
        html, printed = publish(folder, folder.notebooks_dir / sequence[-1], pdf=pdf, log=log)
        seconds["publish"] = round(time.monotonic() - start, 1)
    except papermill.PapermillExecutionError as error:
        failed = {"notebook": current, "cell": error.cell_index, "error": f"{error.ename}: {error.evalue}"}
        _fail(folder, failed, kernel, pdf, keep_stack, log, source)
        raise StudyFailed(f"notebook {current} failed in cell {error.cell_index} of its executed copy (execution "
                          f"count {error.exec_count}): {error.ename}: {error.evalue}", folder, failed) from None
    except (KeyboardInterrupt, Exception) as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        failed = {"notebook": current, "cell": None,
                  "error": "interrupted (Ctrl-C)" if interrupted else f"{type(error).__name__}: {error}"}
        _fail(folder, failed, kernel, pdf and not interrupted, keep_stack, log, source)
        if interrupted:
            raise
        raise StudyFailed(f"notebook {current} could not run: {failed['error']}", folder, failed) from error
    seconds["total"] = round(time.monotonic() - began, 1)
    log(f"study {folder.study_id} passed in {seconds['total'] / 60:.1f} min: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total"))
    try:
        findings = check_secrets(folder, log)
    except Exception as error:  # noqa: BLE001 - a check that did not run cannot pass the study
        findings = [{"file": str(folder.path), "kind": "unchecked", "why": f"{type(error).__name__}: {error}"}]
    if findings:
        failed = {"notebook": None, "cell": None, "error": _leak_message(findings)}
        folder.finish("failed", failed)
    _copy_record(folder)
    if not keep_stack:
        teardown(log)
    if findings:
        raise StudyFailed(failed["error"], folder, failed)
    return StudyResult(folder, html, printed, seconds)


def _without_teardown(budget: studies.Budget) -> studies.Budget:
    """The estimate of a study that keeps its stack: no teardown at the end."""
    return studies.Budget({k: v for k, v in budget.phases.items() if k != "teardown"})


def _leak_message(findings: list[dict[str, str]]) -> str:
    kinds = sorted({f["kind"] for f in findings})
    return (f"secrets found in {len({f['file'] for f in findings})} file(s) of the study or its report "
            f"(kinds: {', '.join(kinds)}); see secret_check in study.json")


def _undo_faults_left(log: Log) -> None:
    """The notebook kernel that ran the faults has been stopped: replay what it left in the fault journal, first
    (publishing takes a while, and a kept stack must not stay paused or cut off)."""
    from lab.faults.journal import FaultJournal
    from lab.faults.signals import undo_left
    from lab.stack.engine import ensure_engine

    try:
        if FaultJournal().entries() != ([], []):
            undo_left(ensure_engine(log=log), log)
    except Exception as error:  # noqa: BLE001 - said; `lab faults undo` tries again
        log(f"  undoing the faults left in the journal failed: {error}; `lab faults undo` tries again")


def _fail(folder: StudyFolder, failed: dict[str, Any], kernel: str, pdf: bool, keep_stack: bool, log: Log,
          source: Path = NOTEBOOKS_DIR) -> None:
    log(f"study failed in {failed['notebook']} cell {failed['cell']}: {failed['error']}")
    _undo_faults_left(log)
    folder.finish("failed", failed)
    try:
        _publish_what_we_can(folder, failed["notebook"], kernel, pdf, log, source)
    except KeyboardInterrupt:
        log("publishing interrupted")
    try:
        check_secrets(folder, log)
        _copy_record(folder)
    except Exception as error:  # noqa: BLE001 - the study's own failure is what is raised; say this one too
        log(f"  the secret check failed: {type(error).__name__}: {error}")
    if not keep_stack:
        teardown(log)


__all__ = ["StudyFailed", "StudyResult", "check_secrets", "notebook_parameters", "publish", "run_study", "teardown"]
