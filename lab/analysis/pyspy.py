"""Reading py-spy's raw (collapsed-stack) output: where a profiled process spent its samples.

Pure, so what `lab bench efficiency --profile` prints can be checked without a profiler: each line of the raw
format is `frame;frame;...;frame COUNT`, outermost frame first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

PLUMBING = ("process ", "thread ")  # py-spy's own root frames (--subprocesses, --threads), not code
REQUEST = "WSGIHandler.__call__ (django/core/handlers/wsgi.py)"  # on the stack while a worker serves a request
TASK = "(celery/app/trace.py)"  # celery's task tracer: on the stack while a pool process runs a task
# what each profiled program's samples are kept to, and how the bench names them
WITHIN = {"gunicorn": REQUEST, "celery": TASK}
DOING = {"gunicorn": "gunicorn workers serving a request", "celery": "celery processes running a task"}
EVERY = 0.97  # a frame on the stack of this share of the request samples is the request path itself: left out
# the way in to a view (middleware, Django's handler, DRF's dispatch): on nearly every request's stack, so they say
# nothing about what an order costs and are left out of the inclusive list
REQUEST_PATH = ("Middleware.__call__ (", "(django/core/handlers/", "(django/views/decorators/",
                "(django/utils/deprecation.py)", "(rest_framework/views.py)", "(rest_framework/viewsets.py)")


@dataclass(frozen=True)
class Frame:
    frame: str
    share: float  # of all samples
    samples: int


@dataclass(frozen=True)
class Profile:
    samples: int
    inclusive: list[Frame]  # samples with the frame anywhere on the stack
    own: list[Frame]  # samples with the frame on top (where the CPU was)
    all_samples: int = 0  # every sample of the profiled processes, also those outside `within` (idle loops, a
    # celery consumer fetching messages): what the program cost in all, not only while it served an order


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """(frames, count) per line; frames outermost first, py-spy's process/thread frames left out."""
    out = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f and not f.startswith(PLUMBING)]
        if frames:
            out.append((frames, int(count)))
    return out


def profile(text: str, top: int = 12, prefixes: tuple[str, ...] = ("pretix/", "django/"),
            within: str | None = REQUEST) -> Profile:
    """The top frames by inclusive and by own samples, as shares of the samples taken while a request was served
    (`within` part of a frame on the stack; a gunicorn master and idle workers waiting for work say nothing about an
    order's cost; `within` TASK: while a celery pool process ran a task).
    Inclusive frames are kept to code under `prefixes`, less the way in to the view (REQUEST_PATH) and anything on
    nearly every request's stack."""
    parsed = parse_raw(text)
    stacks = [(f, n) for f, n in parsed if within is None or any(within in frame for frame in f)]
    total = sum(count for _, count in stacks)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count

    def where(frame: str) -> str:
        return frame.rpartition("(")[2]

    def frames_of(counter: Counter[str], keep) -> list[Frame]:
        chosen = [(f, n) for f, n in counter.most_common() if keep(f)][:top]
        return [Frame(f, n / total if total else 0.0, n) for f, n in chosen]

    def telling(frame: str) -> bool:
        return (where(frame).startswith(prefixes) and inclusive[frame] < EVERY * total
                and not any(part in frame for part in REQUEST_PATH))

    return Profile(total, frames_of(inclusive, telling), frames_of(own, lambda f: True),
                   sum(count for _, count in parsed))


def lines(name: str, p: Profile, doing: str = DOING["gunicorn"]) -> list[str]:
    """What the bench prints for one profiled side and program."""
    out = [f"{name}: {p.samples} samples of {doing} and holding the GIL (py-spy); top "
           "frames, share of those samples (inclusive: on the stack; own: on top):"]
    out += [f"  {f.share:6.1%}  {f.frame}" for f in p.inclusive]
    out.append("  own:")
    out += [f"  {f.share:6.1%}  {f.frame}" for f in p.own]
    return out


__all__ = ["DOING", "Frame", "Profile", "REQUEST", "TASK", "WITHIN", "lines", "parse_raw", "profile"]
