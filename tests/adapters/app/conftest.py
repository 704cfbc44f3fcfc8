"""A real app (database, Redis, bus) with only the APP channel, and a signing test client.

Every test gets its own fresh database, Redis and running service; core.knowledge reuses the
bot's snapshot for identical KB content, so app starts stay fast.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from yarl import URL

from adapters.app import AppAdapter
from adapters.app.signing import sign_request
from core.app import create_app
from core.config import Settings

APP_A, KEY_A = "gov-app", "k" * 16 + "A-0123456789abcdef"
APP_B, KEY_B = "partner-app", "z" * 16 + "B-0123456789abcdef"
KEYS = {APP_A: KEY_A, APP_B: KEY_B}
MESSAGES = "/api/app/v1/messages"

def with_app_channel(settings: Settings, **extra: Any) -> Settings:
    channel = {"enabled": True, "apps": dict(KEYS), **extra}
    return settings.model_copy(update={"channels": {**settings.channels, "app": channel}})


class Signed:
    """Sends requests signed as one app (or deliberately wrong, for the refusal tests)."""

    def __init__(self, client, app_id: str = APP_A, key: str | None = None) -> None:
        self.client = client
        self.app_id = app_id
        self.key = key or KEYS.get(app_id, "x" * 32)

    def headers(self, method: str, path: str, body: bytes = b"", **kw: Any) -> dict[str, str]:
        return sign_request(self.app_id, self.key, method, path, body, **kw)

    async def post(self, data: Any, *, path: str = MESSAGES, **kw: Any):
        body = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
        headers = {**self.headers("POST", path, body, **kw), "Content-Type": "application/json"}
        return await self.client.post(URL(path, encoded=True), data=body, headers=headers)

    async def get(self, path: str, **kw: Any):
        # encoded=True: send the target as signed (yarl would otherwise normalise %3A to ":")
        return await self.client.get(URL(path, encoded=True),
                                     headers=self.headers("GET", path, **kw))

    async def send(self, user: str, text: str) -> dict:
        resp = await self.post({"user": user, "text": text})
        body = await resp.json()
        assert resp.status == 200, body
        return body

    async def poll(self, user: str, after: int = 0, wait: float = 0, **query: str) -> dict:
        extra = "".join(f"&{k}={v}" for k, v in query.items())
        resp = await self.get(f"{MESSAGES}?user={user}&after={after}&wait={wait}{extra}")
        body = await resp.json()
        assert resp.status == 200, body
        return body


@pytest.fixture
def app_settings(settings) -> Settings:
    return with_app_channel(settings)


@pytest.fixture
async def app_client(aiohttp_client, app_settings, engine, redis):
    """The application with the APP channel only (not every installed adapter)."""
    return await aiohttp_client(create_app(app_settings, adapters={"app": AppAdapter}))


@pytest.fixture
def api(app_client) -> Signed:
    return Signed(app_client)


@pytest.fixture
async def seeded_api(seeded, aiohttp_client, app_settings, engine, redis) -> Signed:
    """``api`` on an app started after the seed KB was loaded."""
    return Signed(await aiohttp_client(create_app(app_settings, adapters={"app": AppAdapter})))
