"""The bot on the dev set (tests/data/devset.tsv): citizen-typed questions, full dialog policy."""

from __future__ import annotations

from pathlib import Path

from core.config import BotSettings
from core.dialog.bot import Bot
from core.evaluation import evaluate_dialog, format_report, load_cases
from tests.core.dialog.test_bot import seed_snapshot

DEVSET = Path(__file__).resolve().parents[1] / "data" / "devset.tsv"
TARGET = 0.90


def test_the_bot_gets_at_least_90_percent_of_the_devset_right():
    snap = seed_snapshot()
    report = evaluate_dialog(Bot(lambda: snap, BotSettings()), load_cases(DEVSET))
    assert report.total == 365
    misses = "\n".join(f"  {m['where']}: expected {m['expect']}, got {m['got']}: {m['q']}"
                       for m in report.misses)
    print(format_report(report))
    print(f"misses:\n{misses}")
    assert report.accuracy >= TARGET, (
        f"{report.correct}/{report.total} = {report.accuracy:.1%} < {TARGET:.0%}; "
        f"misses:\n{misses}")
