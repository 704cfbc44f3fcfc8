"""The widget's websocket (``/channels/web/ws``).

Frames in (JSON text):

- ``{"type": "message", "text": "…", "id"?: "…", "attachments"?: ["a…"]}`` — typed text (``id``,
  optional, makes a resend after a reconnect idempotent); with ``attachments``, the ids of 1-4
  pictures or voice messages this citizen uploaded (``adapters.web.media``), and the text may
  be empty. The ids are looked up, never trusted: one that is not this citizen's upload is
  refused, and the message carries the stored type, size and URL;
- ``{"type": "quick_reply", "payload": "…", "label": "…"}`` — a tapped button;
- ``{"type": "resume", "after": N, "conversation"?: "c…"}`` — replay, from SQL, every message
  of the current conversation after seq N (all of it when ``conversation`` is not the current
  one).

Frames out: ``{"type": "hello", "token", "conversation_id", "history": [...], "max_length",
"upload": {"max_image_bytes", "max_voice_bytes"}}`` first (``?history=0`` leaves the history out,
for a reconnect that resumes instead), then ``{"type": "message", "message": {...}}``,
``{"type": "status", "message": {...}}`` for a transient human-help status (a message with
``seq`` 0 and ``queue``: not stored, never replayed, shown in place), ``{"type": "typing"}``
while the bot works, and ``{"type": "error", "code", "reason"}`` — a bad frame is answered,
never a disconnect.

A citizen's own message and the replies are sent on the socket that sent it as soon as they
are stored, and arrive again through ``push`` (the bus fans every stored message out to every
process, for the citizen's other tabs): each socket remembers which seqs it has sent and skips
them, so nothing is shown twice and nothing waits for the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from core.attachments import valid_id
from core.dialog.models import Inbound, Outbound
from core.errors import NotFound

from ..chatsocket import (BAD_CHOICE, EMPTY, HEARTBEAT_S, UNSUPPORTED, ChatConnection, Refusal,
                          serve)

if TYPE_CHECKING:
    from .adapter import WebAdapter

log = logging.getLogger(__name__)

#: a frame larger than this closes the socket (1009); the message-length limit is far below it
MAX_FRAME_BYTES = 64 * 1024

RATE_LIMITED = ("rate_limited", "发送太频繁，请稍后再试")
BAD_ATTACHMENT = ("bad_attachment", "图片或语音已失效，请重新选择文件发送")
#: pictures / voice messages one message may carry (the widget sends one at a time)
MAX_ATTACHMENTS = 4


class Connection(ChatConnection):
    """One open widget socket (the citizen is ``user``, the id in the signed cookie)."""

    adapter: WebAdapter

    @property
    def uid(self) -> str:
        return self.user

    async def deliver(self, outs: Iterable[Outbound], *, replay: bool = False) -> None:
        """Send messages in seq order, skipping those sent before (unless replaying)."""
        async with self._lock:
            await self._deliver(outs, replay=replay)

    # -- the conversation ---------------------------------------------------------------------
    async def _history(self, after: int = 0) -> tuple[str | None, list[Outbound]]:
        """The current conversation after ``after``, at most history_limit (the latest)."""
        conv_id, outs = await self.hub.history(self.adapter.name, self.uid, after=after)
        page = outs
        while len(page) >= 200:  # the store pages by 200
            _, page = await self.hub.history(self.adapter.name, self.uid, after=page[-1].seq)
            outs.extend(page)
        return conv_id, outs[-self.adapter.config.history_limit:]

    async def hello(self, query) -> None:
        history: list[Outbound] = []
        conv_id = None
        if query.get("history") != "0":
            conv_id, history = await self._history()
        async with self._lock:
            for out in history:
                self._fresh(out)
            await self.send({
                "type": "hello", "token": self.adapter.token_for(self.uid),
                "conversation_id": conv_id,
                "history": [self.adapter.render(o) for o in history],
                "max_length": self.adapter.config.max_message_length,
                "upload": {"max_image_bytes": self.adapter.attachments.limits.max_image_bytes,
                           "max_voice_bytes": self.adapter.attachments.limits.max_voice_bytes},
            })
        # a reload while waiting for a person shows the wait at once, not at the next change
        handoff = getattr(self.hub, "handoff", None)
        if conv_id and handoff is not None:
            status = await handoff.live_status(conv_id)
            if status is not None:
                async with self._lock:
                    await self.send({"type": "status", "message": self.adapter.render(status)})

    async def on_text(self, data: str) -> None:
        frame = self.parse(data)
        if isinstance(frame, tuple):
            return await self.error(frame)
        kind = frame.get("type")
        if kind == "resume":
            return await self._resume(frame)
        if kind == "message":
            inbound = await self._message(frame)
        elif kind == "quick_reply":
            inbound = self._quick_reply(frame)
        else:
            return await self.error(UNSUPPORTED)
        if isinstance(inbound, tuple):
            return await self.error(inbound)
        if not await self.adapter.allow_message(self.uid):
            return await self.error(RATE_LIMITED)
        await self._handle(inbound)

    async def _message(self, frame: dict) -> Inbound | Refusal:
        ids = frame.get("attachments")
        if ids is None:
            return self._text(frame)
        if not (isinstance(ids, list) and 0 < len(ids) <= MAX_ATTACHMENTS
                and all(valid_id(i) for i in ids) and len(set(ids)) == len(ids)):
            return self.MALFORMED
        try:
            found = await self.adapter.attachments.uploaded_by(ids, self.adapter.name, self.uid)
        except NotFound:
            return BAD_ATTACHMENT
        kind = "voice" if all(a.kind == "voice" for a in found) else "image"
        return self._text(frame, kind=kind, attachments=[a.to_attachment() for a in found])

    def _text(self, frame: dict, **extra: Any) -> Inbound | Refusal:
        text = frame.get("text", "" if extra else None)
        if not isinstance(text, str):
            return self.MALFORMED
        text = text.strip()
        if not text and not extra:
            return EMPTY
        limit = self.adapter.config.max_message_length
        if len(text) > limit:
            return ("too_long", f"消息过长，请控制在{limit}字以内")
        msg_id = self.client_id(frame)
        if isinstance(msg_id, tuple):
            return msg_id
        return self.inbound(**{"kind": "text", **extra}, text=text, msg_id=msg_id)

    def _quick_reply(self, frame: dict) -> Inbound | Refusal:
        choice = self.choice(frame)
        if choice is None:
            return BAD_CHOICE
        payload, label = choice
        return self.inbound(kind="quick_reply", text=label, payload=payload)

    async def _handle(self, inbound: Inbound) -> None:
        await self.send({"type": "typing"})
        result = await self.hub.handle(inbound)
        if result.duplicate:
            return
        # the citizen's own message (with its stored id) and the replies, from the record
        _, outs = await self.hub.history(self.adapter.name, self.uid, after=result.seq - 1)
        await self.deliver(outs)

    async def _resume(self, frame: dict) -> None:
        after, conv = frame.get("after", 0), frame.get("conversation")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0 or (
                conv is not None and not isinstance(conv, str)):
            return await self.error(self.MALFORMED)
        current, outs = await self._history(after)
        if conv is not None and conv != current and after > 0:
            # a new conversation began since: all of it is missing
            _, outs = await self._history(0)
        await self.deliver(outs, replay=True)


def handler(adapter: WebAdapter):
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        if not adapter.origin_allowed(request):
            raise web.HTTPForbidden(text="origin not allowed")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME_BYTES)
        uid = adapter.uid_from_cookie(request)
        if uid is None:
            uid = adapter.uid_from_token(request.query.get("token")) or adapter.new_uid()
            adapter.set_cookie(request, ws, uid)
        await ws.prepare(request)
        conn = Connection(adapter, ws, uid)
        adapter.register(conn)
        try:
            await serve(conn, lambda: conn.hello(request.query), conn.on_text, log)
        finally:
            adapter.unregister(conn)
        return ws

    return websocket
