"""What `lab study` prints while a notebook runs: each line of its cells' output once, and no object reprs.

papermill's own cell logging prints what a subprocess or C library writes twice (ipykernel forwards the kernel's
file descriptors to the notebook and also echoes them to the terminal the kernel inherited) and shows a display's
text/plain, which for Markdown or a figure is only `<IPython.core.display.Markdown object>`. Here the kernel's own
terminal output goes to a log file, the cell outputs reach the console once, line by line, and a display shows its
markdown or its text (a table), never a bare object repr.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args
from traitlets import Any as AnyTrait
from traitlets import Unicode

ENGINE = "pretix-lab-console"
INDENT = "    "
OBJECT_REPR = re.compile(r"^<[\w.]+(?: object)?(?: at 0x[0-9a-fA-F]+)?>$|^<Figure size [^>]*>$")

Echo = Callable[[str], None]


def display_text(data: dict[str, Any]) -> str | None:
    """What a display or a cell's result shows on a console: its markdown, else its plain text unless that is a
    bare object repr (a Markdown, HTML or figure object); None when there is nothing to read."""
    if "text/markdown" in data:
        return "".join(data["text/markdown"])
    plain = "".join(data.get("text/plain", ""))
    if not plain.strip() or OBJECT_REPR.match(plain.strip()):
        return None
    return plain


class ConsoleLines:
    """Cell outputs -> whole console lines: stream chunks are joined until their line ends, and a line rewritten
    with carriage returns (a progress bar) is shown in its last state."""

    def __init__(self, indent: str = INDENT) -> None:
        self.indent = indent
        self.pending: dict[str, str] = {}

    def _lines(self, text: str) -> list[str]:
        return [self.indent + line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]

    def feed(self, output: dict[str, Any]) -> list[str]:
        """The lines an output completes (nothing for an image or an object repr)."""
        kind = output.get("output_type")
        if kind == "stream":
            name = output.get("name", "stdout")
            text = self.pending.pop(name, "") + "".join(output.get("text", ""))
            *done, rest = text.split("\n")
            if rest:
                self.pending[name] = rest
            return [line for line in self._lines("\n".join(done)) if line.strip()] if done else []
        if kind in ("display_data", "execute_result"):
            text = display_text(output.get("data", {}))
            return [line for line in self._lines(text) if line.strip()] if text else []
        if kind == "error":
            return [f"{self.indent}{output.get('ename')}: {output.get('evalue')}"]
        return []

    def flush(self) -> list[str]:
        """What is left of unfinished stream lines (at the end of a cell)."""
        rest, self.pending = "\n".join(self.pending.values()), {}
        return [line for line in self._lines(rest) if line.strip()] if rest else []


class ConsoleClient(PapermillNotebookClient):
    """papermill's client that echoes outputs through ConsoleLines and starts the kernel with its terminal output
    written to `kernel_log` (that copy duplicates what the cells already show)."""

    echo = AnyTrait(None, allow_none=True).tag(config=True)
    kernel_log = Unicode("").tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines = ConsoleLines()
        self._kernel_output: IO[bytes] | None = None

    def process_message(self, *args: Any, **kwargs: Any):
        output = super().process_message(*args, **kwargs)
        if output is not None and self.echo is not None:
            for line in self.lines.feed(output):
                self.echo(line)
        return output

    async def async_execute_cell(self, *args: Any, **kwargs: Any):
        try:
            return await super().async_execute_cell(*args, **kwargs)
        finally:
            if self.echo is not None:
                for line in self.lines.flush():
                    self.echo(line)

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        if self.kernel_log:
            Path(self.kernel_log).parent.mkdir(parents=True, exist_ok=True)
            self._kernel_output = open(self.kernel_log, "ab")  # noqa: SIM115 - closed with the kernel
            kwargs.setdefault("stdout", self._kernel_output)
            kwargs.setdefault("stderr", self._kernel_output)
        await super().async_start_new_kernel(**kwargs)

    async def _async_cleanup_kernel(self) -> None:
        try:
            await super()._async_cleanup_kernel()
        finally:
            if self._kernel_output is not None:
                self._kernel_output.close()
                self._kernel_output = None


def _sync(name: str):
    from nbclient.util import run_sync

    return run_sync(getattr(ConsoleClient, name))


# nbclient binds its sync wrappers to its own coroutines: bind them to the overrides above
ConsoleClient.start_new_kernel = _sync("async_start_new_kernel")  # type: ignore[method-assign]
ConsoleClient._cleanup_kernel = _sync("_async_cleanup_kernel")  # type: ignore[method-assign]
ConsoleClient.execute_cell = _sync("async_execute_cell")  # type: ignore[method-assign]


class ConsoleEngine(NBClientEngine):
    """papermill's nbclient engine with ConsoleClient (papermill hard-codes its client in this one method)."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, **kwargs):
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(safe_kwargs, timeout=execution_timeout if execution_timeout else
                                    kwargs.get("timeout"), startup_timeout=start_timeout, kernel_name=kernel_name,
                                    log=logger, log_output=log_output, stdout_file=stdout_file,
                                    stderr_file=stderr_file)
        return ConsoleClient(nb_man, **final_kwargs).execute()


papermill_engines.register(ENGINE, ConsoleEngine)

__all__ = ["ENGINE", "ConsoleClient", "ConsoleEngine", "ConsoleLines", "display_text"]
