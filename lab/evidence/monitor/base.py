"""The sampler template and its registry: what every sampler shares, so a new one implements only its stream.

Samplers live in a small registry (papermill-style): the built-ins register exactly like a plugin would
(`samplers.register("name", SamplerClass)`, or the entry point group `pretix_lab.samplers`), and an unknown name
fails with "No sampler named 'x'; known: ...".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.common.registry import Registry
from lab.errors import LabError, UnknownNameError
from lab.stack.containers import project_containers

if TYPE_CHECKING:
    from lab.evidence.monitor.monitor import Monitor

Emit = Callable[..., None]  # emit(metric, value, labels="", t=None)


class UnknownSamplerError(UnknownNameError):
    """No sampler of that name is registered."""


class StreamEnded(LabError, RuntimeError):
    """A sampler's stream ended while the monitor still runs (container stopped, exec ended)."""


@dataclass(eq=False)
class Target:
    """One service as one sampler sees it: its thread, its current stream, its counts."""

    sampler: str
    service: str
    container: str = ""
    thread: threading.Thread | None = None
    closer: Callable[[], None] | None = None  # ends the current stream gently (stdin EOF, close the request)
    aborter: Callable[[], None] | None = None  # cuts it (a blocked read returns)
    cpu_seconds: float = 0.0  # this target's thread CPU (time.thread_time), updated as it goes
    last_sample: float = 0.0  # monotonic
    silent_reported: bool = False
    samples: int = 0
    errors: int = 0


class Sampler:
    """Template method: run() keeps one stream per target going; a subclass implements targets() and stream().

    stream(target, emit) blocks while it samples and returns or raises when its source ends; run() records a
    `sampler_error` row and starts it again (after 1, 2, 4, then every 5 s while it keeps failing) until the
    monitor stops. One instance serves all its targets, each in its own thread: keep per-stream state local.
    """

    name = ""
    max_restart_delay = 5.0

    def __init__(self, monitor: Monitor):
        self.monitor = monitor
        self.client = monitor.client
        self.interval = monitor.interval

    def targets(self) -> list[str]:
        raise NotImplementedError

    def stream(self, target: Target, emit: Emit) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> threading.Event:
        return self.monitor.stopping

    def running_container(self, target: Target):
        found = [c for c in project_containers(self.client, target.service) if c.status == "running"]
        if not found:
            raise StreamEnded(f"service {target.service} has no running container")
        target.container = found[0].name
        return found[0]

    def run(self, target: Target) -> None:
        def emit(metric: str, value: float, labels: str = "", t: float | None = None) -> None:
            self.monitor.emit(time.time() if t is None else t, target.service, target.container, metric,
                              value, labels)
            target.last_sample = time.monotonic()
            target.silent_reported = False
            target.samples += 1
            target.cpu_seconds = time.thread_time()

        delay = 1.0
        while not self.stopping.is_set():
            before = target.samples
            try:
                self.stream(target, emit)
                problem = "stream ended"
            except Exception as error:  # noqa: BLE001 - a sampler never crashes the run
                problem = f"{type(error).__name__}: {error}"
            finally:
                target.closer = target.aborter = None
                target.cpu_seconds = time.thread_time()
            if self.stopping.is_set():
                break
            target.errors += 1
            self.monitor.record_error(target, problem)
            delay = 1.0 if target.samples > before else min(self.max_restart_delay, delay * 2)
            self.stopping.wait(delay)
        target.cpu_seconds = time.thread_time()


def SamplerRegistry() -> Registry[Sampler]:  # noqa: N802 - reads like the class it makes
    """A registry of samplers (the module-level `samplers` is the one the monitor uses)."""
    return Registry("sampler", Sampler, "pretix_lab.samplers", UnknownSamplerError)


samplers = SamplerRegistry()

__all__ = ["Emit", "Sampler", "SamplerRegistry", "StreamEnded", "Target", "UnknownSamplerError", "samplers"]
