"""CPU accounting for benchmarks: the generator's own CPU seconds, and each container's from its cgroup.

Reading cgroup counters costs microseconds, unlike `docker stats`, so measuring does not disturb the
measured.
"""

from __future__ import annotations

import resource
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def process_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def container_seconds(container_id: str) -> float | None:
    """Total CPU seconds a container has used (cgroup v1 cpuacct or v2 cpu.stat); None if not found."""
    v1 = CGROUP / "cpuacct" / "docker" / container_id / "cpuacct.usage"
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for v2 in (CGROUP / "system.slice" / f"docker-{container_id}.scope" / "cpu.stat",
               CGROUP / "docker" / container_id / "cpu.stat"):
        if v2.exists():
            for line in v2.read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
    return None


def stack_seconds(docker_client) -> dict[str, float]:
    """CPU seconds per service of the project (running containers), keyed by service name."""
    from lab.stack.containers import LABEL_SERVICE, project_containers

    out: dict[str, float] = {}
    for c in project_containers(docker_client):
        if c.status == "running":
            used = container_seconds(c.id)
            if used is not None:
                service = c.labels.get(LABEL_SERVICE, c.name)
                out[service] = out.get(service, 0.0) + used
    return out


def throttled_periods(container_id: str) -> int | None:
    """Periods in which the container's CPU quota throttled it (cgroup v1 or v2 cpu.stat nr_throttled); None if
    not found. A quota that throttles adds waiting, and on a busy machine, work to what is measured."""
    for stat in (CGROUP / "cpu" / "docker" / container_id / "cpu.stat",
                 CGROUP / "system.slice" / f"docker-{container_id}.scope" / "cpu.stat",
                 CGROUP / "docker" / container_id / "cpu.stat"):
        if stat.exists():
            for line in stat.read_text().splitlines():
                if line.startswith("nr_throttled"):
                    return int(line.split()[1])
    return None


def stack_throttled(docker_client) -> dict[str, int]:
    """Throttled periods per service of the project (running containers), keyed by service name."""
    from lab.stack.containers import LABEL_SERVICE, project_containers

    out: dict[str, int] = {}
    for c in project_containers(docker_client):
        if c.status == "running":
            n = throttled_periods(c.id)
            if n is not None:
                service = c.labels.get(LABEL_SERVICE, c.name)
                out[service] = out.get(service, 0) + n
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


PROC_STAT = Path("/proc/stat")
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (idle and iowait are not busy)


def parse_proc_stat(text: str, ticks_per_second: float = 100.0) -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole host since boot, from /proc/stat's first ("cpu") line.

    The host total, not a cgroup's: the idle cores a bench reports are what is really left on the machine.
    """
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(v) for v in parts[1:]]
            busy = sum(values[i] for i in BUSY_FIELDS if i < len(values))
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return busy / ticks_per_second, idle / ticks_per_second
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def host_busy_seconds() -> float:
    """Busy CPU seconds of the whole host since boot (every core, every process, ours and others')."""
    import os

    return parse_proc_stat(PROC_STAT.read_text(), float(os.sysconf("SC_CLK_TCK")))[0]
