"""The workspace's pictures and voice: an agent's upload for their next message, and any
attachment of a conversation the staff member may read (``/console/api/…``; the rest of the API
is :mod:`console.workspace`, whose plumbing this uses)."""

from __future__ import annotations

import logging

from aiohttp import BodyPartReader, web

from core.attachments import TooLarge, UnsupportedType, check, collect, response_headers
from core.bodies import first_part
from core.errors import Forbidden, NotFound, ValidationFailed

from .workspace import API, HID, api, attachments_of, desk_of, holding, user_of

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.post(f"{API}/handoffs/{HID}/upload")
@api
async def upload(request: web.Request) -> web.StreamResponse:
    """One picture or voice message for the agent's next message (sent by naming its id in
    …/send). The kind is read from the content; each kind has its own size limit."""
    desk, user = desk_of(request), user_of(request)
    h = await desk.get(user, request.match_info["handoff_id"])
    holding(h, user)
    store = attachments_of(request)
    if request.content_length is not None \
            and request.content_length > store.limits.of(None) + 16 * 1024:
        return _too_large(store.limits.of(None), None)
    part = await first_part(request)  # MalformedBody (400) if it cannot be parsed
    if part is None or part.name != "file":
        raise ValidationFailed("请选择要发送的图片或语音", [("upload", "file", "missing")])
    try:
        data = await collect(_chunks(part), store.limits)
        check(data, store.limits)
        meta = await store.save(h.conversation_id, "agent", user.id, data,
                                part.headers.get("Content-Type"), part.filename)
    except TooLarge as exc:
        return _too_large(exc.limit, exc.kind)
    except UnsupportedType:
        return web.json_response({"error": "unsupported_media_type",
                                  "message": UNSUPPORTED}, status=415)
    log.info("workspace: %s uploaded %s (%s, %d bytes)", user.username, meta.id, meta.mime,
             meta.size)
    return web.json_response({"id": meta.id, "attachment": {
        "kind": meta.kind, "url": f"{API}/attachments/{meta.id}", "mime": meta.mime,
        "size": meta.size, "name": meta.name}}, status=201)


#: what the agent is told when the file is neither; WeChat plays only AMR and MP3 as voice
#: (others reach its users as a "[语音]" note), hence the hint
UNSUPPORTED = ("仅支持发送 PNG、JPEG、GIF、WebP 格式的图片，或 MP3、AMR、M4A、WAV、OGG 格式的语音"
               "（微信用户只能直接收听 MP3、AMR）")


def _too_large(limit: int, kind: str | None) -> web.Response:
    size = f"{limit / 1048576:g} MB" if limit >= 1048576 else f"{limit // 1024} KB"
    what = {"image": "图片", "voice": "语音"}.get(kind or "", "文件")
    resp = web.json_response({"error": "too_large", "message": f"{what}过大，请控制在 {size} 以内"},
                             status=413)
    resp.force_close()  # the rest of the body was not read
    return resp


async def _chunks(part: BodyPartReader):
    while chunk := await part.read_chunk(64 * 1024):
        yield chunk


@routes.get(API + "/attachments/{attachment_id:a[0-9a-f]{23,31}}")
@api
async def attachment(request: web.Request) -> web.StreamResponse:
    """A citizen's or an agent's picture / voice, for staff who may read that conversation."""
    desk, user = desk_of(request), user_of(request)
    meta, data = await attachments_of(request).get(request.match_info["attachment_id"])
    segments = await desk.store.for_conversation(meta.conversation_id)
    allowed = False
    for s in segments:
        try:
            desk.check(user, s)
            allowed = True
            break
        except Forbidden:
            continue
    if not allowed:
        # the same answer as for an id that does not exist: nothing about other units leaks
        raise NotFound("文件不存在或无权查看")
    return web.Response(body=data, headers=response_headers(meta))


__all__ = ["routes", "UNSUPPORTED"]
