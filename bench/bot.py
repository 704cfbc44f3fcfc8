"""小申's cost per message, on the bot's own path, next to the batch APIs used one at a time.

    python bench/bot.py [--sets devset,blind-d] [--repeat 3]

In process, on the shipped seed KB (no storage). For every question of the sets (tests/data/):

- ``Bot.respond`` CPU per question, the whole policy (intent, search, the checks);
- intent: ``SklearnIntentClassifier.classify`` (one message, the fitted model applied directly)
  against the pipeline's ``predict_proba([q])`` (sklearn's batch API, one at a time);
- search: ``KbIndex.search`` (dense, one question) against ``search_many([q])`` (sparse products).

Each phase runs ``--repeat`` times and prints the median CPU time per question. The baseline
rows are what the bot did before session 4; they are the same decisions (tests/core/nlu/). The
analyzer keeps the words of its last 256 texts, so within ``respond`` the search reuses the
intent model's segmentation, as in the service; the sets are larger than that, so each phase
alone segments every question afresh.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.config import BotSettings  # noqa: E402
from core.dialog.bot import Bot, Context  # noqa: E402
from core.evaluation import load_cases  # noqa: E402
from core.kb.importer import check_files  # noqa: E402
from core.knowledge import build_snapshot  # noqa: E402
from core.paths import config_dir  # noqa: E402


def per_question_ms(fn, questions: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        for q in questions:
            fn(q)
        runs.append((time.process_time() - start) * 1000 / len(questions))
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="devset,blind-d")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    questions = [c.question for name in args.sets.split(",")
                 for c in load_cases(REPO / "tests" / "data" / f"{name}.tsv")]
    snap = build_snapshot(check_files([config_dir() / "kb"]).entries)
    bot = Bot(lambda: snap, BotSettings())
    intents, index = snap.intents, snap.index
    for q in questions[:50]:  # warm-up: jieba's dictionary, numpy's first calls
        bot.respond(q, Context())
    rows = [
        ("Bot.respond, whole policy", lambda q: bot.respond(q, Context()), None),
        ("intent: classify", intents.classify, None),
        ("  baseline: pipeline.predict_proba([q])",
         lambda q: intents.pipeline.predict_proba([q]), "intent: classify"),
        ("search: KbIndex.search", lambda q: index.search(q, top=5), None),
        ("  baseline: search_many([q])", lambda q: index.search_many([q], top=5)[0],
         "search: KbIndex.search"),
    ]
    print(f"{len(questions)} questions ({args.sets}), median of {args.repeat} runs, CPU time")
    got: dict[str, float] = {}
    for name, fn, versus in rows:
        ms = got[name] = per_question_ms(fn, questions, args.repeat)
        note = f"   ×{ms / got[versus]:.1f} the single path" if versus else ""
        print(f"  {name:42s} {ms:7.3f} ms/question{note}")


if __name__ == "__main__":
    main()
