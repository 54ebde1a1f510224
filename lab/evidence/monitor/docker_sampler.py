"""Per container CPU, throttling, memory and network counters from docker's stats API (the SDK's public call)."""

from __future__ import annotations

import time

from lab.evidence.monitor.base import Emit, Sampler, StreamEnded, Target, samplers
from lab.evidence.monitor.parsers import docker_stats_rows


@samplers.register("docker")
class DockerSampler(Sampler):
    """CPU (cores used), throttling, memory (usage minus page cache) and network counters of every container.

    One `container.stats(stream=False, one_shot=True)` per tick, CPU from the delta between two ticks. Not the
    SDK's streaming call: it is a bare generator whose blocked read no other thread can cancel, so stop() could
    not end it; a poll ends at the next tick. The engine answers a one-shot request with its next sample (it
    collects on its own one-second cadence), so a shorter interval still gives about one sample a second.
    """

    def targets(self) -> list[str]:
        return list(self.monitor.services)

    def stream(self, target: Target, emit: Emit) -> None:
        c = self.running_container(target)
        previous = None
        next_t = time.monotonic()
        while not self.stopping.is_set():
            stats = c.stats(stream=False, one_shot=True)
            now = time.time()
            if str(stats.get("read", "")).startswith("0001-"):  # what the engine answers for a stopped one
                raise StreamEnded(f"{c.name} is not running")
            for metric, labels, value in docker_stats_rows(stats, previous):
                emit(metric, value, labels, now)
            previous = stats
            next_t += self.interval
            if next_t < time.monotonic():  # a slow answer: start again from now, no burst to catch up
                next_t = time.monotonic()
            self.stopping.wait(next_t - time.monotonic())


__all__ = ["DockerSampler"]
