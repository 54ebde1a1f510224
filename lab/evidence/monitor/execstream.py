"""One long-lived `docker exec` of a bash script, read line by line; stopped by closing its stdin.

Uses the docker SDK's public API (exec_create, exec_start(socket=True), exec_inspect) and its documented socket
frame reader; the socket timeout makes a silent (e.g. paused) container end the stream instead of hanging it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

from docker.utils.socket import frames_iter

from lab.evidence.monitor.base import StreamEnded

CLOCK_TICKS = float(os.sysconf("SC_CLK_TCK"))


class ExecStream:
    """One long-lived `docker exec` of a bash script: its stdout as lines, its end at stdin EOF (close()).

    The script's in-container CPU, when it reports it (`#CPU <clock ticks>` lines), is kept in cpu_seconds.
    """

    def __init__(self, client, container, script: str, args: list[str], env: dict[str, str] | None = None,
                 read_timeout: float = 20.0):
        api = client.api
        self.api = api
        self.container = container.name
        self.exec_id = api.exec_create(container.id, ["bash", "-c", script, "lab-monitor", *args],
                                       stdin=True, stdout=True, stderr=True, environment=env or {})["Id"]
        self.sock = api.exec_start(self.exec_id, socket=True)
        self._raw = getattr(self.sock, "_sock", self.sock)
        self._raw.settimeout(read_timeout)  # a silent (e.g. paused) container ends the stream, never hangs it
        self.stderr_tail: list[str] = []
        self.cpu_seconds = 0.0

    def lines(self) -> Iterator[str]:
        pending = b""
        try:
            for stream_id, data in frames_iter(self.sock, tty=False):
                if stream_id == 2:
                    self.stderr_tail = (self.stderr_tail + data.decode(errors="replace").splitlines())[-5:]
                    continue
                pending += data
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace").rstrip("\r")
                    if line.startswith("#CPU "):
                        try:
                            self.cpu_seconds = float(line[5:]) / CLOCK_TICKS
                        except ValueError:
                            pass
                        continue
                    yield line
        except TimeoutError:
            raise StreamEnded("no output for a while (container paused or hung?)") from None
        except OSError:
            if self._raw.fileno() == -1:  # aborted by stop()
                return
            raise
        if pending:
            yield pending.decode(errors="replace")

    def close(self) -> None:
        """Half-close: the script sees EOF on stdin and ends (and ends what it started)."""
        try:
            self._raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def abort(self) -> None:
        for step in (lambda: self._raw.shutdown(socket.SHUT_RDWR), self._raw.close):
            try:
                step()
            except OSError:
                pass

    def running(self) -> bool:
        try:
            return bool(self.api.exec_inspect(self.exec_id).get("Running"))
        except Exception:  # noqa: BLE001 - container gone: nothing of it runs
            return False



def feed_lines(ex: ExecStream, reader, stopping) -> None:
    """Feed every line of the exec to `reader` until it ends; an end the monitor did not ask for (`stopping` not set)
    is StreamEnded, with what the exec last wrote to stderr."""
    try:
        for line in ex.lines():
            reader.feed(line)
    finally:
        ex.close()
    if not stopping.is_set():
        detail = "; ".join(ex.stderr_tail)
        raise StreamEnded(f"exec ended{': ' + detail if detail else ''}")


__all__ = ["CLOCK_TICKS", "ExecStream", "feed_lines"]
