"""Fixtures of the kiosk channel's tests: the real app with the seed KB, on the test DB and
Redis, and a registered terminal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.kiosk import KioskAdapter
from adapters.kiosk.devices import bootstrap_token
from core.config import Settings
from tests.support import messages, recv  # noqa: F401  (the tests import them from here)

DEVICE = "hall-1"
KEY = "k" * 20 + "-lobby-terminal-key-0001"
OTHER = "hall-2"
OTHER_KEY = "o" * 40


def kiosk_settings(settings: Settings, **kiosk: Any) -> Settings:
    kiosk.setdefault("devices", {DEVICE: KEY, OTHER: OTHER_KEY})
    return settings.model_copy(update={"channels": {"kiosk": kiosk}})


@pytest.fixture
def make_client(aiohttp_client, settings, redis, seeded
                ) -> Callable[..., Awaitable[TestClient]]:
    """A running app with only the kiosk channel; keyword arguments are ``channels.kiosk``."""
    from core.app import create_app

    async def make(**kiosk: Any) -> TestClient:
        app = create_app(kiosk_settings(settings, **kiosk), adapters={"kiosk": KioskAdapter})
        return await aiohttp_client(app)

    return make


async def register(client: TestClient, device: str = DEVICE, key: str = KEY) -> None:
    """The terminal proves its key with a bootstrap URL; the client keeps the cookie."""
    resp = await client.get("/kiosk", params={"device": device,
                                              "token": bootstrap_token(key, device)},
                            allow_redirects=False)
    assert resp.status == 303, await resp.text()


async def connect(client: TestClient, **params: str):
    ws = await client.ws_connect("/kiosk/ws", params=params or None)
    hello = await recv(ws)
    assert hello["type"] == "hello", hello
    return ws, hello


# -- websocket helpers ------------------------------------------------------------------------

async def frame_of(ws, kind: str, timeout: float = 15) -> dict:
    while True:
        frame = await recv(ws, timeout)
        if frame["type"] == kind:
            return frame
        assert frame["type"] in ("typing", "message", "status"), frame


async def silent(ws, wait: float = 0.6) -> None:
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
