"""Fixtures of the web channel's tests: the real app with the seed KB, on the test DB and Redis.

Building the bot's knowledge snapshot from the whole seed takes ~10 s (training the intent
model), so one snapshot per distinct KB content is built once per session and reused; every
test still loads the seed into its own fresh database and runs the real service around it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

import core.knowledge as knowledge
from adapters.web import WebAdapter
from core.config import Settings
from core.kb.seed import load_seed_if_empty
from core.kb.store import KbStore

_SNAPSHOTS: dict[str, knowledge.Snapshot] = {}
_build_snapshot = knowledge.build_snapshot


def _cached_build(entries, fingerprint: tuple = ()) -> knowledge.Snapshot:
    key = hashlib.sha256("\n".join(sorted(e.model_dump_json() for e in entries)).encode())
    digest = key.hexdigest()
    if digest not in _SNAPSHOTS:
        _SNAPSHOTS[digest] = _build_snapshot(entries, fingerprint)
    return dataclasses.replace(_SNAPSHOTS[digest], fingerprint=fingerprint)


@pytest.fixture
def fast_knowledge(monkeypatch):
    monkeypatch.setattr(knowledge, "build_snapshot", _cached_build)


@pytest.fixture
async def seeded(engine, settings) -> int:
    return await load_seed_if_empty(KbStore(engine), settings.kb_seed_dir)


def web_settings(settings: Settings, **web: Any) -> Settings:
    return settings.model_copy(update={"channels": {"web": web}})


@pytest.fixture
def make_client(aiohttp_client, settings, redis, seeded, fast_knowledge
                ) -> Callable[..., Awaitable[TestClient]]:
    """A running app with only the web channel; keyword arguments are ``channels.web``."""
    from core.app import create_app

    async def make(**web: Any) -> TestClient:
        app = create_app(web_settings(settings, **web), adapters={"web": WebAdapter})
        return await aiohttp_client(app)

    return make


# -- websocket helpers ------------------------------------------------------------------------


async def recv(ws, timeout: float = 15) -> dict:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, f"expected a text frame, got {msg.type}: {msg.data!r}"
    return json.loads(msg.data)


async def messages(ws, count: int, timeout: float = 15) -> list[dict]:
    """The next ``count`` message frames' messages (typing frames skipped, errors fail)."""
    out = []
    while len(out) < count:
        frame = await recv(ws, timeout)
        assert frame["type"] != "error", frame
        if frame["type"] == "message":
            out.append(frame["message"])
    return out


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
