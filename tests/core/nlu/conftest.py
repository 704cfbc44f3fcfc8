"""The bot on the seed KB, for the tests that ask it questions (one per module)."""

from __future__ import annotations

import pytest

from core.config import BotSettings
from core.dialog.bot import Bot
from tests.core.dialog.test_bot import seed_snapshot


@pytest.fixture(scope="module")
def bot() -> Bot:
    snap = seed_snapshot()
    return Bot(lambda: snap, BotSettings())
