"""`bangban serve` with wall-clock timers around the steps of one APP message (bench/http.py --steps).

A diagnostic: wraps a few methods of the running code (bench/steptimer.py) and, on each SIGUSR1, writes ``{step: [calls, total seconds]}`` since the previous one as JSON to the
path in ``BENCH_STEPS_FILE`` (bench/http.py signals before and after each level). A step whose
method no longer exists is skipped, so this keeps working while the code moves. The bot's
``respond`` is synchronous and runs on the event loop: its CPU time is recorded too, since that
time blocks every other request of the process.

    python bench/serve_steps.py serve --config … --data-dir …   (the arguments of `bangban`)
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# bench/ (this script's directory, first on sys.path) holds http.py, which would shadow the
# standard library's http package
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bench.steptimer import wrap  # noqa: E402

STATS: dict[str, list[float]] = {}

STEPS = [  # (module, class, method, label)
    ("adapters.app.adapter", "AppAdapter", "send", "APP send, total"),
    ("adapters.app.guard", "Guard", "authenticate", "signature + nonce (Redis)"),
    ("adapters.app.guard", "Guard", "within_rate", "rate limit (Redis)"),
    ("core.dialog.service", "DialogService", "handle", "dialog handle, total"),
    ("core.dialog.bot", "Bot", "respond", "bot respond (on the loop)"),
    ("core.conversations", "ConversationStore", "current", "SQL current conversation"),
    ("core.conversations", "ConversationStore", "append", "SQL append messages"),
    ("core.conversations", "ConversationStore", "record_unanswered", "SQL record unanswered"),
    ("core.dialog.service", "DialogService", "load_context", "Redis load context"),
    ("core.dialog.service", "DialogService", "save_context", "Redis save context"),
    ("core.bus", "Bus", "publish", "Redis bus publish"),
]


def _dump(*_args) -> None:
    path = os.environ.get("BENCH_STEPS_FILE")
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(STATS, indent=1), encoding="utf-8")
        tmp.replace(path)  # the reader never sees a half-written file
    STATS.clear()


def main() -> None:
    for step in STEPS:
        wrap(STATS, *step)
    signal.signal(signal.SIGUSR1, _dump)
    from core.cli import main as bangban

    sys.argv = ["bangban", *sys.argv[1:]]
    bangban()


if __name__ == "__main__":
    main()
