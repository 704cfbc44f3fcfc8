"""A stand-in for the WeChat platform API (stable_token and the customer-service send), served on
127.0.0.1 from a background thread, so RQ workers running on the test's main thread reach it.

It records every accepted send, counts token fetches, and can be told to answer the next sends
with an errcode, an HTTP error, or not at all (to make the sender's timeout happen after the
request was sent).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support import ThreadedServer


@dataclass
class Sent:
    app_id: str
    touser: str
    content: str


@dataclass
class Platform:
    secrets_by_app: dict[str, str]
    sent: list[Sent] = field(default_factory=list)
    token_fetches: int = 0
    #: what the next sends get, in order: "ok", an int errcode, "http500" or "hang" (the send
    #: is accepted but the answer comes too late)
    failures: list[Any] = field(default_factory=list)
    #: seconds a "hang" holds the answer back
    hang_s: float = 3.0
    tokens: dict[str, str] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/cgi-bin/stable_token", self.stable_token)
        app.router.add_post("/cgi-bin/message/custom/send", self.custom_send)
        return app

    async def stable_token(self, request: web.Request) -> web.Response:
        data = await request.json()
        app_id = data.get("appid")
        if data.get("grant_type") != "client_credential" or \
                self.secrets_by_app.get(app_id) != data.get("secret"):
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        self.token_fetches += 1
        token = self.tokens.get(app_id)
        if token is None or data.get("force_refresh") or token in self.revoked:
            token = self.tokens[app_id] = f"tok-{app_id}-{secrets.token_hex(4)}"
        return web.json_response({"access_token": token, "expires_in": 7200})

    def revoke(self, app_id: str) -> None:
        """The token in use stops working (as when another system force-refreshes it)."""
        self.revoked.add(self.tokens[app_id])

    async def custom_send(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        app_id = next((a for a, t in self.tokens.items() if t == token), None)
        if app_id is None or token in self.revoked:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        data = await request.json()
        failure = self.failures.pop(0) if self.failures else "ok"
        if failure == "http500":
            return web.Response(status=500, text="busy")
        if failure == "hang":
            await asyncio.sleep(self.hang_s)
        elif failure != "ok":
            return web.json_response({"errcode": failure, "errmsg": f"failure {failure}"})
        assert data["msgtype"] == "text", data
        self.sent.append(Sent(app_id, data["touser"], data["text"]["content"]))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def to(self, openid: str) -> list[str]:
        return [s.content for s in self.sent if s.touser == openid]


class RunningPlatform(ThreadedServer):
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        super().__init__(platform.app(), "the platform stand-in")
