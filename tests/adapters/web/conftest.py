"""Fixtures of the web channel's tests: the real app with the seed KB, on the test DB and Redis.

Every test loads the seed into its own fresh database and runs the real service around it;
core.knowledge reuses the bot's snapshot for identical KB content, so that stays fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.web import WebAdapter
from core.config import Settings
from tests.support import messages, recv  # noqa: F401  (the tests import them from here)

def web_settings(settings: Settings, **web: Any) -> Settings:
    return settings.model_copy(update={"channels": {"web": web}})


@pytest.fixture
def make_client(aiohttp_client, settings, redis, seeded
                ) -> Callable[..., Awaitable[TestClient]]:
    """A running app with only the web channel; keyword arguments are ``channels.web``."""
    from core.app import create_app

    async def make(**web: Any) -> TestClient:
        app = create_app(web_settings(settings, **web), adapters={"web": WebAdapter})
        return await aiohttp_client(app)

    return make


# -- websocket helpers ------------------------------------------------------------------------

async def silent(ws, wait: float = 0.6) -> None:
    """Nothing more arrives (no duplicate delivered through the bus)."""
    try:
        frame = await ws.receive(timeout=wait)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected frame: {frame.data!r}")


async def error_frame(ws, timeout: float = 10) -> dict:
    while True:
        frame = await recv(ws, timeout)
        if frame["type"] != "typing":
            assert frame["type"] == "error", frame
            return frame
