"""`bangban serve` with wall-clock timers around the steps of one APP message (bench/http.py --steps).

A diagnostic: wraps a few methods of the running code (nothing in the repository changes) and,
on each SIGUSR1, writes ``{step: [calls, total seconds]}`` since the previous one as JSON to the
path in ``BENCH_STEPS_FILE`` (bench/http.py signals before and after each level). A step whose
method no longer exists is skipped, so this keeps working while the code moves. The bot's
``respond`` is synchronous and runs on the event loop: its CPU time is recorded too, since that
time blocks every other request of the process.

    python bench/serve_steps.py serve --config … --data-dir …   (the arguments of `bangban`)
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import signal
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# bench/ (this script's directory, first on sys.path) holds http.py, which would shadow the
# standard library's http package
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

STATS: dict[str, list[float]] = {}

STEPS = [  # (module, class, method, label)
    ("adapters.app.adapter", "AppAdapter", "send", "APP send, total"),
    ("adapters.app.guard", "Guard", "authenticate", "signature + nonce (Redis)"),
    ("adapters.app.guard", "Guard", "within_rate", "rate limit (Redis)"),
    ("core.dialog.service", "DialogService", "handle", "dialog handle, total"),
    ("core.dialog.bot", "Bot", "respond", "bot respond (on the loop)"),
    ("core.conversations", "ConversationStore", "current", "SQL current conversation"),
    ("core.conversations", "ConversationStore", "append", "SQL append messages"),
    ("core.conversations", "ConversationStore", "set_matter", "SQL set matter"),
    ("core.conversations", "ConversationStore", "record_unanswered", "SQL record unanswered"),
    ("core.dialog.service", "DialogService", "load_context", "Redis load context"),
    ("core.dialog.service", "DialogService", "save_context", "Redis save context"),
    ("core.bus", "Bus", "publish", "Redis bus publish"),
]


def _record(label: str, seconds: float) -> None:
    entry = STATS.setdefault(label, [0, 0.0])
    entry[0] += 1
    entry[1] += seconds


def _wrap(module: str, cls_name: str, name: str, label: str) -> None:
    try:
        cls = getattr(importlib.import_module(module), cls_name)
        func = getattr(cls, name)
    except (ImportError, AttributeError):
        return
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await func(*args, **kwargs)
            finally:
                _record(label, time.perf_counter() - start)
    else:
        @functools.wraps(func)
        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                _record(label, time.perf_counter() - start)
                _record(label + " [CPU]", time.thread_time() - cpu)
    setattr(cls, name, timed)


def _dump(*_args) -> None:
    path = os.environ.get("BENCH_STEPS_FILE")
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(STATS, indent=1), encoding="utf-8")
        tmp.replace(path)  # the reader never sees a half-written file
    STATS.clear()


def main() -> None:
    for step in STEPS:
        _wrap(*step)
    signal.signal(signal.SIGUSR1, _dump)
    from core.cli import main as bangban

    sys.argv = ["bangban", *sys.argv[1:]]
    bangban()


if __name__ == "__main__":
    main()
