"""The questions the widget's welcome offers to tap are ones 小申 answers: offering a question
it cannot answer ("社保卡丢了怎么补办" got three unrelated choices) is a bad first impression."""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.config import BotSettings
from core.dialog.bot import Bot, Context
from tests.core.dialog.test_bot import seed_snapshot

WIDGET = Path(__file__).resolve().parents[3] / "adapters" / "web" / "static" / "widget.js"


def examples() -> list[str]:
    found = re.search(r"var EXAMPLES = (\[.*?\]);", WIDGET.read_text(encoding="utf-8"))
    assert found, "widget.js no longer has its EXAMPLES list"
    return json.loads(found.group(1))


def test_every_welcome_example_is_answered_or_reaches_a_person():
    snap = seed_snapshot()
    bot = Bot(lambda: snap, BotSettings())
    offered = examples()
    assert len(offered) >= 3
    for question in offered:
        reply = bot.respond(question, Context())
        assert reply.action in ("answer", "handoff"), (question, reply.action, reply.text)
