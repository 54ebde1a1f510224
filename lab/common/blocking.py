"""Run the lab's blocking calls from a notebook: they use asyncio.run, which a Jupyter kernel refuses (its cell
already runs inside an event loop), so there they go to a worker thread with no loop of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def run_blocking(fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs) here when no event loop runs in this thread, else in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-blocking") as pool:
        return pool.submit(fn, *args, **kwargs).result()
