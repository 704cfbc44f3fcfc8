"""The kiosk page's websocket (``/kiosk/ws``), one per open kiosk page.

Only a registered terminal connects (the registration cookie; 403 otherwise), and only from the
service's own origin. ``?session=`` resumes that terminal's session if it is still alive;
otherwise — first connection, or a session that was wiped — a new session starts, with no
history.

Frames in (JSON text):

- ``{"type": "message", "text": "…", "id"?: "…"}`` — typed text; ``id`` (client-chosen, per
  session) makes a resend after a reconnect idempotent;
- ``{"type": "quick_reply", "payload": "…", "label": "…", "id"?: "…"}`` — a tapped button
  (a matter, a popular question, 已解决, 转人工, a department, a rating …);
- ``{"type": "active"}`` — someone touched the screen (the page sends it at most every few
  seconds): the session's idle time starts again;
- ``{"type": "end"}`` — the page wiped itself (idle timeout, or 结束咨询): end this session and
  start a new one.

Frames out: ``{"type": "hello", "session", "history": [...], "idle_timeout_s",
"idle_warning_s", "max_length", "resumed"}`` — after connecting and for every new session (a
``hello`` with another session id means: show a clean screen); ``{"type": "ended"}`` just
before such a hello when the *server* ended the session; ``{"type": "message", "message"}``;
``{"type": "status", "message"}`` for a transient human-help status (``seq`` 0: shown in the
status line, in place); ``{"type": "typing"}``; ``{"type": "error", "code", "reason"}`` — a
refused frame is answered, never a disconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from core.dialog.models import Inbound, Outbound

from ..chatsocket import (BAD_CHOICE, EMPTY, HEARTBEAT_S, UNSUPPORTED, ChatConnection, Refusal,
                          serve)
from .sessions import SESSION_ID

if TYPE_CHECKING:
    from .adapter import KioskAdapter

log = logging.getLogger(__name__)

#: a frame larger than this closes the socket (1009); the message limit is far below it
MAX_FRAME_BYTES = 16 * 1024

RATE_LIMITED = ("rate_limited", "操作太频繁，请稍等片刻再试")
DUPLICATE = ("duplicate", "这条消息已经收到，请勿重复发送")


class Connection(ChatConnection):
    """One open kiosk page: its terminal, its session (``user``), what it has been sent."""

    MALFORMED = ("malformed", "消息格式不正确，请点击“结束咨询”后重试")
    adapter: KioskAdapter

    def __init__(self, adapter: KioskAdapter, ws: web.WebSocketResponse, device: str,
                 user: str) -> None:
        super().__init__(adapter, ws, user)
        self.device = device
        #: someone has touched this session's screen (until then it holds nothing to protect)
        self.used = False

    async def deliver(self, outs: Iterable[Outbound], *, user: str | None = None) -> None:
        """Send messages in seq order, each once; ``user``: only if still on that session."""
        async with self._lock:
            if user is not None and user != self.user:
                return
            await self._deliver(outs)

    # -- sessions -----------------------------------------------------------------------------
    async def hello(self, *, resumed: bool) -> None:
        history: list[Outbound] = []
        if resumed:
            _, history = await self.hub.history(self.adapter.name, self.user)
            self.used = bool(history)
        cfg = self.adapter.config
        async with self._lock:
            self.conversation, self.sent = None, set()
            for out in history:
                self._fresh(out)
            await self.send({
                "type": "hello", "session": self.adapter.sessions.parse(self.user)[1],
                "resumed": resumed, "history": [self.adapter.render(o) for o in history],
                "idle_timeout_s": cfg.idle_timeout_s, "idle_warning_s": cfg.idle_warning_s,
                "max_length": cfg.max_message_length,
            })

    async def new_session(self, *, ended: bool = False, greet: bool = True) -> str:
        """Move this page to a fresh session; returns the old one (for the caller to end)."""
        old = self.user
        new = await self.adapter.sessions.new(self.device)
        async with self._lock:
            self.adapter.unregister(self)
            self.user, self.used = new, False
            self.conversation, self.sent = None, set()
            self.adapter.register(self)
            if ended:
                await self.send({"type": "ended"})
        if greet:
            await self.hello(resumed=False)
        return old

    async def end(self) -> None:
        """The page wiped itself: the old session is closed, then the page gets a new one
        (frames of the next person wait for the hello, so they land in the new session)."""
        old = await self.new_session(greet=False)
        try:
            if await self.adapter.sessions.claim(old):
                await self.adapter.sessions.retire(old)
        except Exception:  # retire has queued a retry for the sweep; the page goes on
            log.exception("kiosk: closing an ended session failed")
        finally:
            await self.hello(resumed=False)

    # -- frames -------------------------------------------------------------------------------
    async def on_text(self, data: str) -> None:
        frame = self.parse(data)
        if isinstance(frame, tuple):
            return await self.error(frame)
        kind = frame.get("type")
        if kind == "end":
            return await self.end()
        if kind == "active":
            self.used = True
            if not await self.adapter.sessions.touch(self.user):
                await self.new_session(ended=True)
            return
        if kind == "message":
            inbound = self._text(frame)
        elif kind == "quick_reply":
            inbound = self._quick_reply(frame)
        else:
            return await self.error(UNSUPPORTED)
        if isinstance(inbound, tuple):
            return await self.error(inbound)
        self.used = True
        if not await self.adapter.sessions.touch(self.user):
            # ended by the server meanwhile: this message belongs to nobody's screen any more
            await self.new_session(ended=True)
            return
        if not await self.adapter.allow_message(self.user):
            return await self.error(RATE_LIMITED)
        await self._handle(inbound)

    def _text(self, frame: dict) -> Inbound | Refusal:
        text = frame.get("text")
        if not isinstance(text, str):
            return self.MALFORMED
        text = text.strip()
        if not text:
            return EMPTY
        limit = self.adapter.config.max_message_length
        if len(text) > limit:
            return ("too_long", f"问题太长了，请控制在{limit}字以内")
        msg_id = self.client_id(frame)
        if isinstance(msg_id, tuple):
            return msg_id
        return self._inbound(kind="text", text=text, msg_id=msg_id)

    def _quick_reply(self, frame: dict) -> Inbound | Refusal:
        choice = self.choice(frame)
        if choice is None:
            return BAD_CHOICE
        msg_id = self.client_id(frame)
        if isinstance(msg_id, tuple):
            return msg_id
        payload, label = choice
        return self._inbound(kind="quick_reply", text=label, payload=payload, msg_id=msg_id)

    def _inbound(self, **fields: Any) -> Inbound | Refusal:
        return self.inbound(meta={"terminal": self.device}, **fields)

    async def _handle(self, inbound: Inbound) -> None:
        user = self.user
        await self.send({"type": "typing"})
        result = await self.hub.handle(inbound)
        if result.duplicate:
            return await self.error(DUPLICATE)
        # the citizen's own message (with its stored id) and the replies, from the record
        _, outs = await self.hub.history(self.adapter.name, user, after=result.seq - 1)
        await self.deliver(outs, user=user)
        if not await self.adapter.sessions.alive(user):
            # the session ended while we answered: what this message opened is closed too
            await self.adapter.sessions.retire(user)


def _origin_allowed(adapter: KioskAdapter, request: web.Request) -> bool:
    """Cross-site websocket hijacking guard: the kiosk page is only ever served by us."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: the registration cookie is what is checked
    netloc = urlsplit(origin.strip().lower()).netloc
    return bool(netloc) and (netloc == (request.host or "").lower()
                             or netloc == urlsplit(adapter.hub.public_url).netloc.lower())


def handler(adapter: KioskAdapter):
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        if not _origin_allowed(adapter, request):
            raise web.HTTPForbidden(text="origin not allowed")
        device = adapter.devices.device_of(request)
        if device is None:
            raise web.HTTPForbidden(text="terminal not registered")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME_BYTES)
        await ws.prepare(request)
        sid = request.query.get("session", "")
        user = adapter.sessions.user(device, sid) if SESSION_ID.match(sid) else None
        resumed = user is not None and await adapter.sessions.alive(user)
        if not resumed:
            user = await adapter.sessions.new(device)
        conn = Connection(adapter, ws, device, user)
        adapter.register(conn)
        try:
            await serve(conn, lambda: conn.hello(resumed=resumed), conn.on_text, log)
        finally:
            adapter.unregister(conn)
        return ws

    return websocket
