"""Wall-clock timers wrapped around methods of the running code, for the benchmarks' ``--steps``.

Shared by ``serve_steps.py`` (bench/http.py) and ``handoff.py``. Nothing in the repository
changes: methods are wrapped on their classes at run time, and a step whose method no longer
exists is skipped, so the benchmarks keep working while the code moves. A synchronous method
runs on the event loop, so its thread CPU time is recorded too (``<label> [CPU]``): that time
blocks every other request of the process.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import time
from collections.abc import Callable

#: label → [calls, total seconds]
Stats = dict[str, list[float]]


def record(stats: Stats, label: str, seconds: float) -> None:
    entry = stats.setdefault(label, [0, 0.0])
    entry[0] += 1
    entry[1] += seconds


def wrap(stats: Stats, module: str, cls_name: str, name: str, label: str, *,
         active: Callable[[], bool] = lambda: True) -> None:
    """Time ``module.cls_name.name`` into ``stats`` under ``label`` whenever ``active()``."""
    try:
        cls = getattr(importlib.import_module(module), cls_name)
        func = getattr(cls, name)
    except (ImportError, AttributeError):
        return
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def timed(*args, **kwargs):
            if not active():
                return await func(*args, **kwargs)
            start = time.perf_counter()
            try:
                return await func(*args, **kwargs)
            finally:
                record(stats, label, time.perf_counter() - start)
    else:
        @functools.wraps(func)
        def timed(*args, **kwargs):
            if not active():
                return func(*args, **kwargs)
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                record(stats, label, time.perf_counter() - start)
                record(stats, label + " [CPU]", time.thread_time() - cpu)
    setattr(cls, name, timed)
