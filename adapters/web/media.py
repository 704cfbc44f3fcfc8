"""Pictures and voice messages in the widget: upload and download.

``POST /channels/web/upload`` (multipart/form-data, one part named ``file``) stores one
attachment in the citizen's current conversation and answers ``201 {"id", "attachment"}``; the
widget then sends a ``message`` frame naming the id on its websocket (``adapters.web.socket``),
which is what puts the picture into the conversation. ``GET /attachments/{id}`` serves an
attachment to the citizen whose conversation it belongs to (theirs, or an agent's picture to
them); anyone else gets the same 404 as for an id that does not exist.

Identity is the widget's: the signed cookie, or — for pages of other origins, where a
SameSite=Lax cookie does not travel — its signed token in the ``X-Bangban-Token`` header, from
an allowed ``Origin`` only (the same rule as the websocket). Cross-origin callers get CORS
headers for exactly their origin and no credentials mode: the token is the credential. A
cross-site form cannot upload in a citizen's name: it sends no SameSite=Lax cookie, cannot set
the header, and its Origin is refused.

Type and size are decided by core.attachments from the bytes as they arrive (413 with the
limit, 415 with what is accepted), reasons in Chinese for the citizen.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import unquote

from aiohttp import BodyPartReader, hdrs, web

from core.attachments import TooLarge, UnsupportedType, collect, response_headers
from core.bodies import first_part
from core.errors import MalformedBody, NotFound

if TYPE_CHECKING:
    from .adapter import WebAdapter

log = logging.getLogger(__name__)

UPLOAD_PATH = "/channels/web/upload"
DOWNLOAD_PATH = "/attachments/{attachment_id:a[0-9a-f]{23,31}}"
TOKEN_HEADER = "X-Bangban-Token"
#: multipart framing around the file (boundaries, part headers) allowed over the size limit
_OVERHEAD = 16 * 1024
_CHUNK = 64 * 1024

UNSUPPORTED = "仅支持发送 PNG、JPEG、GIF、WebP 格式的图片，或 AMR、MP3、M4A、OGG、WAV、WebM 格式的语音"


def _mb(limit: int) -> str:
    mb = limit / (1024 * 1024)
    return f"{mb:g} MB" if mb >= 1 else f"{limit // 1024} KB"


def too_large_reason(exc: TooLarge) -> str:
    what = {"image": "图片", "voice": "语音"}.get(exc.kind or "", "文件")
    return f"{what}过大，请控制在 {_mb(exc.limit)} 以内"


def _refuse(status: int, code: str, reason: str, cors: dict[str, str]) -> web.Response:
    resp = web.json_response({"error": code, "message": reason}, status=status, headers=cors)
    if status == 413:
        resp.force_close()  # the rest of the body is not read: don't reuse the connection
    return resp


class Media:
    def __init__(self, adapter: WebAdapter) -> None:
        self.adapter = adapter

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.post(UPLOAD_PATH, self.upload),
            web.options(UPLOAD_PATH, self.preflight),
            web.get(DOWNLOAD_PATH, self.download, allow_head=False),
            web.options(DOWNLOAD_PATH, self.preflight),
        ]

    # -- who is asking --------------------------------------------------------------------------
    def _cors(self, request: web.Request) -> dict[str, str] | None:
        """CORS headers for this request's origin; None if the origin is not allowed."""
        if not self.adapter.origin_allowed(request):
            return None
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return {}
        return {"Access-Control-Allow-Origin": origin.strip(), "Vary": "Origin"}

    def _uid(self, request: web.Request) -> str | None:
        return self.adapter.uid_from_cookie(request) or self.adapter.uid_from_token(
            request.headers.get(TOKEN_HEADER))

    async def preflight(self, request: web.Request) -> web.Response:
        cors = self._cors(request)
        if cors is None or not cors:
            raise web.HTTPForbidden(text="origin not allowed")
        return web.Response(status=204, headers={
            **cors, "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": TOKEN_HEADER, "Access-Control-Max-Age": "600"})

    # -- upload ---------------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.Response:
        cors = self._cors(request)
        if cors is None:
            return _refuse(403, "origin_not_allowed", "该页面不能发送文件", {})
        uid = self._uid(request)
        if uid is None:
            return _refuse(401, "no_identity", "会话已失效，请刷新页面后重试", cors)
        store = self.adapter.attachments
        limit = store.limits.of(None)
        if request.content_length is not None and request.content_length > limit + _OVERHEAD:
            return _refuse(413, "too_large", f"文件过大，图片请控制在 "
                           f"{_mb(store.limits.max_image_bytes)} 以内，语音请控制在 "
                           f"{_mb(store.limits.max_voice_bytes)} 以内", cors)
        if not await self.adapter.allow_message(uid):
            return _refuse(429, "rate_limited", "发送太频繁，请稍后再试", cors)
        try:
            part = await first_part(request)
        except MalformedBody as exc:  # answered here, with the CORS headers an embedder needs
            return _refuse(400, "malformed", str(exc), cors)
        if part is None or part.name != "file":
            return _refuse(400, "malformed", "请通过“发送图片或语音”按钮选择文件", cors)
        try:
            data = await collect(_chunks(part), store.limits)
            conv = await self.adapter.hub.conversations.current(self.adapter.name, uid)
            # browsers send the name as UTF-8; some HTTP clients percent-encode it
            name = unquote(part.filename) if part.filename else None
            meta = await store.save(conv.id, "citizen", uid, data,
                                    part.headers.get(hdrs.CONTENT_TYPE), name)
        except TooLarge as exc:
            return _refuse(413, "too_large", too_large_reason(exc), cors)
        except UnsupportedType:
            return _refuse(415, "unsupported_media_type", UNSUPPORTED, cors)
        log.info("web: %s stored (%s, %d bytes)", meta.id, meta.mime, meta.size)
        return web.json_response(
            {"id": meta.id, "attachment": self.adapter.render_attachment(meta.to_attachment())},
            status=201, headers=cors)

    # -- download -------------------------------------------------------------------------------
    async def download(self, request: web.Request) -> web.Response:
        cors = self._cors(request)
        if cors is None:
            raise web.HTTPForbidden(text="origin not allowed")
        uid = self._uid(request)
        try:
            if uid is None:
                raise NotFound("no identity")
            meta, data = await self.adapter.attachments.get_for(
                request.match_info["attachment_id"], self.adapter.name, uid)
        except NotFound:
            return web.json_response({"error": "not_found", "message": "文件不存在或已失效"},
                                     status=404, headers=cors)
        headers = {**response_headers(meta), **cors}
        if request.headers.get(hdrs.IF_NONE_MATCH) == headers["ETag"]:
            return web.Response(status=304, headers={
                k: v for k, v in headers.items() if k in ("ETag", "Cache-Control", "Vary",
                                                          "Access-Control-Allow-Origin")})
        return web.Response(body=data, headers=headers)


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(_CHUNK):
        yield chunk
