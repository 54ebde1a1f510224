"""A tiny HTTP/1.1 server on 127.0.0.1 answering every GET with `pong`: a target for the generator's own bench
and tests that needs no stack.

It is a bare asyncio protocol (no framework, keep-alive, no parsing beyond the blank line that ends a request),
so it costs far less per request than the httpx client it answers and the generator is what a bench measures.
It serves in its own process (a bench: its CPU is apart from the generator's) or in a thread (a test). It lives at
most `lifetime` seconds, and only ever binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from multiprocessing.connection import Connection
from pathlib import Path

HOST = "127.0.0.1"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\npong"
END = b"\r\n\r\n"
MAX_BUFFER = 65536  # bytes of an unfinished request before the connection is closed


class _Pong(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        complete = self.buffer.count(END)
        if complete:
            self.buffer = self.buffer[self.buffer.rfind(END) + len(END):]
            self.transport.write(RESPONSE * complete)
        elif len(self.buffer) > MAX_BUFFER:
            self.transport.close()


async def _serve(lifetime: float, told: Connection | None, ready: threading.Event | None,
                 port_box: list[int], stop: threading.Event | None) -> None:
    server = await asyncio.get_running_loop().create_server(_Pong, HOST, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    port_box.append(port)
    if told is not None:
        told.send(port)
        told.close()
    if ready is not None:
        ready.set()
    async with server:
        waited = 0.0
        while waited < lifetime and not (stop is not None and stop.is_set()):
            await asyncio.sleep(0.1)
            waited += 0.1


def _process_main(lifetime: float, told: Connection) -> None:
    asyncio.run(_serve(lifetime, told, None, [], None))


class PingServer:
    """`with PingServer() as server: server.base_url` -> http://127.0.0.1:<port>; stopped on exit."""

    def __init__(self, lifetime: float = 900.0, *, thread: bool = False):
        self.lifetime, self.thread = lifetime, thread
        self.port = 0
        self._process: multiprocessing.process.BaseProcess | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def cpu_seconds(self) -> float | None:
        """CPU seconds the server process has used so far (None in a thread: it is the caller's)."""
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> PingServer:
        if self.thread:
            ready, box = threading.Event(), []
            self._thread = threading.Thread(target=lambda: asyncio.run(_serve(self.lifetime, None, ready, box,
                                                                              self._stop)),
                                            name="ping-server", daemon=True)
            self._thread.start()
            if not ready.wait(10):
                raise RuntimeError("the ping server did not start within 10 s")
            self.port = box[0]
            return self
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self._process = context.Process(target=_process_main, args=(self.lifetime, theirs), daemon=True,
                                        name="ping-server")
        self._process.start()
        theirs.close()
        if not ours.poll(30):
            self.__exit__()
            raise RuntimeError("the ping server did not start within 30 s")
        self.port = ours.recv()
        ours.close()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._process is not None:
            self._process.terminate()
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)


__all__ = ["PingServer"]
