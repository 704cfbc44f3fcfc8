"""What the chat websockets of the web widget and the kiosk share.

Both are push channels over a websocket of their own: a page connects, is greeted, sends JSON
frames and receives the conversation's stored messages in order, each once, plus transient
human-help status frames. This module holds that common part — ordered, de-duplicated delivery,
frame parsing and the errors said back, the connection loop — so the two sockets differ only in
what is theirs (the widget's uploads and resume, the kiosk's sessions and idle wipe).

An adapter using it mixes in :class:`SocketRegistry` and sets ``self.connections = {}``
(channel user → this process's connections); its ``push`` delivers to them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from core.dialog.models import Inbound, Outbound

HEARTBEAT_S = 30.0
#: a client-chosen message id (scoped to the citizen before it reaches the core)
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}$")

UNSUPPORTED = ("unsupported", "暂不支持此类消息")
EMPTY = ("empty", "请输入您要咨询的问题")
BAD_CHOICE = ("bad_choice", "该选项无效，请直接输入您的问题")
BUSY = ("busy", "系统繁忙，请稍后再试")

Refusal = tuple[str, str]


class ChatConnection:
    """One open chat page: what it has been sent, and a lock keeping its frames in order."""

    #: said for a frame that is not what the page sends (the remedy differs per channel)
    MALFORMED: Refusal = ("malformed", "消息格式不正确，请刷新页面后重试")

    def __init__(self, adapter: Any, ws: web.WebSocketResponse, user: str) -> None:
        self.adapter = adapter
        self.hub = adapter.hub
        self.ws = ws
        #: the channel user this page speaks for
        self.user = user
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

    async def error(self, what: Refusal) -> None:
        await self.send({"type": "error", "code": what[0], "reason": what[1]})

    def _fresh(self, out: Outbound) -> bool | None:
        """True if ``out`` was not yet sent here (and marks it); None if it belongs to an
        older conversation than the one this page shows."""
        conv = out.conversation_id
        if conv != self.conversation:
            if self.conversation is not None and conv < self.conversation:
                return None  # ids are time-ordered: an older conversation is not shown
            self.conversation, self.sent = conv, set()
        if out.seq in self.sent:
            return False
        self.sent.add(out.seq)
        return True

    async def _status(self, out: Outbound) -> None:
        """A transient status update: not part of the record, so not in ``sent``; dropped when
        it is about an older conversation than the one shown, or carries no status."""
        if out.queue is None or (self.conversation is not None
                                 and out.conversation_id < self.conversation):
            return
        await self.send({"type": "status", "message": self.adapter.render(out)})

    async def _deliver(self, outs: Iterable[Outbound], *, replay: bool = False) -> None:
        """Send in seq order, each once (unless replaying); the caller holds the lock."""
        for out in sorted(outs, key=lambda o: (o.conversation_id, o.seq)):
            if out.seq == 0:
                await self._status(out)
                continue
            fresh = self._fresh(out)
            if fresh or (replay and fresh is not None):
                await self.send({"type": "message", "message": self.adapter.render(out)})

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close(code=1001, message=b"server restarting")

    # -- frames -------------------------------------------------------------------------------
    def parse(self, data: str) -> dict | Refusal:
        try:
            frame = json.loads(data)
        except ValueError:
            return self.MALFORMED
        return frame if isinstance(frame, dict) else self.MALFORMED

    def client_id(self, frame: dict) -> str | None | Refusal:
        """The frame's optional id, scoped to this citizen (one cannot collide with another)."""
        cid = frame.get("id")
        if cid is None:
            return None
        if not (isinstance(cid, str) and CLIENT_ID.match(cid)):
            return self.MALFORMED
        return f"{self.user}:{cid}"

    @staticmethod
    def choice(frame: dict) -> tuple[str, str] | None:
        """(payload, label) of a tapped button; None when it is not one (say BAD_CHOICE)."""
        payload, label = frame.get("payload"), frame.get("label")
        if not (isinstance(payload, str) and isinstance(label, str)
                and 0 < len(payload) <= 200 and 0 < len(label.strip()) <= 60):
            return None
        return payload, label.strip()

    def inbound(self, **fields: Any) -> Inbound | Refusal:
        try:
            return Inbound(channel=self.adapter.name, channel_user=self.user, **fields)
        except ValidationError:
            return self.MALFORMED


async def serve(conn: ChatConnection, greet: Callable[[], Awaitable[None]],
                on_text: Callable[[str], Awaitable[None]], log: logging.Logger) -> None:
    """The life of one connection after the upgrade: greet, then answer frames until the page
    goes. A frame that fails (storage down) is answered with BUSY and the socket stays; a
    greeting that fails closes it with 1011, and the page retries with back-off."""
    try:
        await greet()
    except Exception:
        log.exception("could not greet a websocket")
        await conn.ws.close(code=1011, message=b"try again later")
        return
    async for msg in conn.ws:
        if msg.type == WSMsgType.TEXT:
            try:
                await on_text(msg.data)
            except Exception:  # e.g. Redis unreachable: say so, keep the socket
                log.exception("a websocket frame failed")
                await conn.error(BUSY)
        elif msg.type == WSMsgType.BINARY:
            await conn.error(UNSUPPORTED)


class SocketRegistry:
    """Mixin: an adapter's open chat connections in this process, by channel user."""

    connections: dict[str, set[ChatConnection]]

    def register(self, conn: ChatConnection) -> None:
        self.connections.setdefault(conn.user, set()).add(conn)

    def unregister(self, conn: ChatConnection) -> None:
        conns = self.connections.get(conn.user)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.connections[conn.user]

    async def close_all(self) -> None:
        for conns in list(self.connections.values()):
            for conn in list(conns):
                await conn.close()
        self.connections.clear()
