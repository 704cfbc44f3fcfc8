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

import asyncio
import json
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from core.dialog.models import Inbound, Outbound

from .sessions import SESSION_ID

if TYPE_CHECKING:
    from .adapter import KioskAdapter

log = logging.getLogger(__name__)

#: a frame larger than this closes the socket (1009); the message limit is far below it
MAX_FRAME_BYTES = 16 * 1024
HEARTBEAT_S = 30.0
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}$")

MALFORMED = ("malformed", "消息格式不正确，请点击“结束咨询”后重试")
UNSUPPORTED = ("unsupported", "暂不支持此类消息")
EMPTY = ("empty", "请输入您要咨询的问题")
BAD_CHOICE = ("bad_choice", "该选项无效，请直接输入您的问题")
RATE_LIMITED = ("rate_limited", "操作太频繁，请稍等片刻再试")
DUPLICATE = ("duplicate", "这条消息已经收到，请勿重复发送")
BUSY = ("busy", "系统繁忙，请稍后再试")


class Connection:
    """One open kiosk page: its session, what it has been sent, a lock keeping frames in
    order."""

    def __init__(self, adapter: KioskAdapter, ws: web.WebSocketResponse, device: str,
                 user: str) -> None:
        self.adapter = adapter
        self.hub = adapter.hub
        self.ws = ws
        self.device = device
        self.user = user
        #: someone has touched this session's screen (until then it holds nothing to protect)
        self.used = False
        self.conversation: str | None = None
        self.sent: set[int] = set()
        self._lock = asyncio.Lock()

    # -- sending ------------------------------------------------------------------------------
    async def send(self, frame: dict[str, Any]) -> bool:
        if self.ws.closed:
            return False
        try:
            await self.ws.send_str(json.dumps(frame, ensure_ascii=False))
        except (ConnectionError, RuntimeError):  # the peer went away mid-send
            return False
        return True

    async def error(self, what: tuple[str, str]) -> None:
        await self.send({"type": "error", "code": what[0], "reason": what[1]})

    def _fresh(self, out: Outbound) -> bool | None:
        conv = out.conversation_id
        if conv != self.conversation:
            if self.conversation is not None and conv < self.conversation:
                return None  # ids are time-ordered: an older conversation is not shown
            self.conversation, self.sent = conv, set()
        if out.seq in self.sent:
            return False
        self.sent.add(out.seq)
        return True

    async def deliver(self, outs: Iterable[Outbound], *, user: str | None = None) -> None:
        """Send messages in seq order, each once; ``user``: only if still on that session."""
        async with self._lock:
            if user is not None and user != self.user:
                return
            for out in sorted(outs, key=lambda o: (o.conversation_id, o.seq)):
                if out.seq == 0:
                    if out.queue is not None and not (
                            self.conversation and out.conversation_id < self.conversation):
                        await self.send({"type": "status", "message": self.adapter.render(out)})
                    continue
                if self._fresh(out):
                    await self.send({"type": "message", "message": self.adapter.render(out)})

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close(code=1001, message=b"server restarting")

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
        try:
            frame = json.loads(data)
        except ValueError:
            return await self.error(MALFORMED)
        if not isinstance(frame, dict):
            return await self.error(MALFORMED)
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

    def _client_id(self, frame: dict) -> str | None | tuple[str, str]:
        client_id = frame.get("id")
        if client_id is None:
            return None
        if not (isinstance(client_id, str) and _CLIENT_ID.match(client_id)):
            return MALFORMED
        return f"{self.user}:{client_id}"  # scoped: one session cannot collide with another

    def _text(self, frame: dict) -> Inbound | tuple[str, str]:
        text = frame.get("text")
        if not isinstance(text, str):
            return MALFORMED
        text = text.strip()
        if not text:
            return EMPTY
        limit = self.adapter.config.max_message_length
        if len(text) > limit:
            return ("too_long", f"问题太长了，请控制在{limit}字以内")
        msg_id = self._client_id(frame)
        if isinstance(msg_id, tuple):
            return msg_id
        return self._inbound(kind="text", text=text, msg_id=msg_id)

    def _quick_reply(self, frame: dict) -> Inbound | tuple[str, str]:
        payload, label = frame.get("payload"), frame.get("label")
        if not (isinstance(payload, str) and isinstance(label, str)
                and 0 < len(payload) <= 200 and 0 < len(label.strip()) <= 60):
            return BAD_CHOICE
        msg_id = self._client_id(frame)
        if isinstance(msg_id, tuple):
            return msg_id
        return self._inbound(kind="quick_reply", text=label.strip(), payload=payload,
                             msg_id=msg_id)

    def _inbound(self, **fields: Any) -> Inbound | tuple[str, str]:
        try:
            return Inbound(channel=self.adapter.name, channel_user=self.user,
                           meta={"terminal": self.device}, **fields)
        except ValidationError:
            return MALFORMED

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
            try:
                await conn.hello(resumed=resumed)
            except Exception:  # storage down: the page retries with back-off
                log.exception("kiosk: could not greet a websocket")
                await ws.close(code=1011, message=b"try again later")
                return ws
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        await conn.on_text(msg.data)
                    except Exception:  # e.g. Redis unreachable: say so, keep the socket
                        log.exception("kiosk: a frame failed")
                        await conn.error(BUSY)
                elif msg.type == WSMsgType.BINARY:
                    await conn.error(UNSUPPORTED)
        finally:
            adapter.unregister(conn)
        return ws

    return websocket
