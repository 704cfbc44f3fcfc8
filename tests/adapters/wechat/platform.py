"""A stand-in for the WeChat platform API (stable_token, temporary media upload and the
customer-service send), served on 127.0.0.1 from a background thread, so RQ workers running on
the test's main thread reach it.

Uploads are checked as the platform documents them: type ``image`` takes PNG, JPEG or GIF, type
``voice`` AMR or MP3 of at most 2 MB (the bytes are sniffed, as the platform does not take a
file name's word for it); an image or voice message must name media uploaded as that type.

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

from core.attachments import sniff
from tests.support import ThreadedServer

#: what each upload type accepts, by sniffed MIME type, and its size limit (2 MB, as the
#: platform documents for voice and, in its upload API's notes, for pictures)
UPLOADS = {"image": ({"image/png", "image/jpeg", "image/gif"}, 2_000_000),
           "voice": ({"audio/amr", "audio/mpeg"}, 2_000_000)}


@dataclass
class Sent:
    app_id: str
    touser: str
    #: a text's content, or "[image <media_id>]" / "[voice <media_id>]"
    content: str


@dataclass
class Media:
    app_id: str
    data: bytes
    mime: str
    filename: str
    kind: str = "image"


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
    #: uploaded temporary media by media_id
    media: dict[str, Media] = field(default_factory=dict)
    uploads: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)  # aiohttp's 1 MiB < 2 MB
        app.router.add_post("/cgi-bin/stable_token", self.stable_token)
        app.router.add_post("/cgi-bin/message/custom/send", self.custom_send)
        app.router.add_post("/cgi-bin/media/upload", self.upload)
        return app

    def _app_of(self, request: web.Request) -> str | None:
        token = request.query.get("access_token", "")
        if token in self.revoked:
            return None
        return next((a for a, t in self.tokens.items() if t == token), None)

    async def upload(self, request: web.Request) -> web.Response:
        """媒体文件上传 (temporary media): multipart with the file in field ``media``; answers
        as the platform documents: {"type": …, "media_id": …, "created_at": …}."""
        app_id = self._app_of(request)
        if app_id is None:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        kind = request.query.get("type", "")
        if kind not in UPLOADS:
            return web.json_response({"errcode": 40004, "errmsg": "invalid media type"})
        form = await request.post()
        part = form.get("media")
        if not isinstance(part, web.FileField):
            return web.json_response({"errcode": 41005, "errmsg": "media data missing"})
        data = part.file.read()
        accepted, limit = UPLOADS[kind]
        if (sniff(data[:64]) or ("", ""))[1] not in accepted:
            return web.json_response({"errcode": 40005, "errmsg": "invalid file type"})
        if limit is not None and len(data) > limit:
            return web.json_response({"errcode": 40006, "errmsg": "invalid media size"})
        self.uploads += 1
        media_id = f"media-{secrets.token_hex(8)}"
        self.media[media_id] = Media(app_id, data, part.content_type, part.filename, kind)
        return web.json_response({"type": kind, "media_id": media_id,
                                  "created_at": 1700000000})

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
        app_id = self._app_of(request)
        if app_id is None:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        data = await request.json()
        failure = self.failures.pop(0) if self.failures else "ok"
        if failure == "http500":
            return web.Response(status=500, text="busy")
        if failure == "hang":
            await asyncio.sleep(self.hang_s)
        elif failure != "ok":
            return web.json_response({"errcode": failure, "errmsg": f"failure {failure}"})
        kind = data["msgtype"]
        if kind in UPLOADS:
            media_id = data[kind]["media_id"]
            if media_id not in self.media or self.media[media_id].kind != kind:
                return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
            self.sent.append(Sent(app_id, data["touser"], f"[{kind} {media_id}]"))
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        assert data["msgtype"] == "text", data
        self.sent.append(Sent(app_id, data["touser"], data["text"]["content"]))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def uploaded(self, content: str) -> Media:
        """The upload an "[image <media_id>]" or "[voice <media_id>]" send showed."""
        kind, _, media_id = content.strip("[]").partition(" ")
        assert self.media[media_id].kind == kind, content
        return self.media[media_id]

    def to(self, openid: str) -> list[str]:
        return [s.content for s in self.sent if s.touser == openid]


class RunningPlatform(ThreadedServer):
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        super().__init__(platform.app(), "the platform stand-in")
