"""`lab study`'s console: each line of a notebook's output once, no object repr, one progress line per notebook with
the study's elapsed and estimated remaining time (issue 14, part 6)."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from lab.study import params as studies
from lab.study.console import ConsoleLines, display_text
from lab.study.progress import Progress, notebook_seconds


def test_stream_chunks_become_whole_lines_and_a_progress_bar_its_last_state():
    lines = ConsoleLines(indent="")
    assert lines.feed({"output_type": "stream", "name": "stdout", "text": "one\ntw"}) == ["one"]
    assert lines.feed({"output_type": "stream", "name": "stdout", "text": "o\n"}) == ["two"]
    assert lines.feed({"output_type": "stream", "name": "stderr", "text": "\rbar 10%\rbar 50%"}) == []
    assert lines.feed({"output_type": "stream", "name": "stderr", "text": "\rbar 100%\n"}) == ["bar 100%"]
    assert lines.feed({"output_type": "stream", "name": "stdout", "text": "unfinished"}) == []
    assert lines.flush() == ["unfinished"] and lines.flush() == []


@pytest.mark.parametrize(("data", "shown"), [
    ({"text/plain": "<IPython.core.display.Markdown object>", "text/markdown": "**Verdict: FAIL**"},
     "**Verdict: FAIL**"),
    ({"text/plain": "<IPython.core.display.HTML object>", "text/html": "<style></style>"}, None),
    ({"text/plain": "<Figure size 600x400 with 1 Axes>", "image/png": "..."}, None),
    ({"text/plain": "<pandas.io.formats.style.Styler at 0x7f3a2c1d0e50>", "text/html": "<table/>"}, None),
    ({"text/plain": "   a\n0  1", "text/html": "<table/>"}, "   a\n0  1"),
])
def test_a_display_shows_its_markdown_or_text_never_an_object_repr(data, shown):
    assert display_text(data) == shown


def test_a_notebook_prints_each_line_once_without_reprs(tmp_path, monkeypatch):
    """Through papermill and the real kernel: print, a subprocess (fd-level output, the one ipykernel echoed to the
    terminal as well), stderr, Markdown, a table and a figure."""
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # else the kernel leaves fd-level output alone, as `lab study`'s does not
    from lab.study.folder import StudyFolder
    from lab.study.runner import ensure_kernel, execute

    code = ("import subprocess, sys\nimport matplotlib.pyplot as plt\nimport pandas as pd\n"
            "from IPython.display import Markdown, display\n"
            "print('from print')\nsubprocess.run(['echo', 'from a subprocess'])\n"
            "import time\ntime.sleep(1)  # the kernel forwards fd output from a thread\n"
            "print('to stderr', file=sys.stderr)\n"
            "display(Markdown('**from markdown**'))\ndisplay(pd.DataFrame({'column': [7]}))\n"
            "fig = plt.figure()\ndisplay(fig)")
    nb = new_notebook(cells=[new_code_cell('study_dir = ""\nparams_file = ""', metadata={"tags": ["parameters"]}),
                             new_code_cell(code)],
                      metadata={"kernelspec": {"name": "pretix-lab", "language": "python", "display_name": "lab"}})
    source = tmp_path / "src"
    source.mkdir()
    nbformat.write(nb, source / "x.ipynb")
    folder = StudyFolder.create(studies.load(preset="quick", check_budget=False), tmp_path / "runs")
    printed: list[str] = []
    target = execute(folder, "x.ipynb", ensure_kernel(), progress=True, source=source, log=printed.append)
    text = [line.strip() for line in printed]
    for line in ("from print", "from a subprocess", "to stderr", "**from markdown**"):
        assert text.count(line) == 1, (line, printed)
    assert any("column" in line for line in text)
    assert not [line for line in text if line.startswith("<") and line.endswith(">")], printed
    assert len(text) == len(set(text)), printed
    assert "from a subprocess" in (folder.path / "kernel.log").read_text()  # the kernel's own copy
    assert target.exists()


def test_one_progress_line_per_notebook_with_elapsed_and_remaining_time():
    budget = studies.Budget({"deploy": 60, "seed": 30, "load": 300, "overload": 120, "faults": 180, "report": 30,
                             "teardown": 15})
    notebooks = ["00-deploy.ipynb", "01-seed.ipynb", "02-load.ipynb", "03-faults.ipynb", "04-analysis.ipynb"]
    assert notebook_seconds(budget, notebooks)["02-load.ipynb"] == 420  # its overload runs are its own
    now = [1000.0]
    progress = Progress(budget, notebooks, clock=lambda: now[0])
    assert progress.line(0) == "[1/5] 00-deploy: 0.0 min elapsed, about 12.2 min left (estimate 12.2 min)"
    now[0] += 150  # deploy and seed took longer than estimated: what is left is the later notebooks' estimate
    assert progress.line(2) == "[3/5] 02-load: 2.5 min elapsed, about 10.8 min left (estimate 12.2 min)"
    now[0] += 600
    assert progress.line(4) == "[5/5] 04-analysis: 12.5 min elapsed, about 0.8 min left (estimate 12.2 min)"


def test_the_study_prints_one_progress_line_per_notebook(tmp_path, monkeypatch):
    """run_study over two tiny notebooks: each gets exactly one progress line, in order, and nothing else of the
    runner's between them but the cells' own lines."""
    from lab.study.runner import run_study

    monkeypatch.setenv("PRETIX_LAB_REPORTS", str(tmp_path / "reports"))
    source = tmp_path / "notebooks"
    source.mkdir()
    for name, code in {"a.ipynb": "print('in a')", "b.ipynb": "print('in b')"}.items():
        nb = new_notebook(cells=[new_code_cell('study_dir = ""\nparams_file = ""', metadata={"tags": ["parameters"]}),
                                 new_code_cell(code)],
                          metadata={"kernelspec": {"name": "pretix-lab", "language": "python", "display_name": "lab"}})
        nbformat.write(nb, source / name)
    printed: list[str] = []
    run_study(studies.load(preset="quick"), log=printed.append, keep_stack=True, pdf=False, root=tmp_path / "runs",
              notebooks=["a.ipynb", "b.ipynb"], source=source)
    progress = [line for line in printed if line.startswith("[")]
    assert [line.split(":")[0] for line in progress] == ["[1/2] a", "[2/2] b"]
    assert all("elapsed, about" in line and "left" in line for line in progress)
    between = printed[printed.index(progress[0]) + 1:printed.index(progress[1])]
    assert [line.strip() for line in between] == ["in a"]
