"""The workspace's websocket, ``/console/workspace/socket``: presence in, workspace events out.

One socket per open workspace or supervisor tab. In: ``{"type": "presence", "status":
"online" | "busy" | "away"}`` (the 上线 / 忙碌 / 离开 buttons) and ``{"type": "ping"}``. Out:
``hello`` once, ``presence`` after each change, and ``event`` with every workspace event
(core.bus.Events: queue, assigned, citizen_message, agent_message, closed, cancelled,
transferred, sla_breach, message_left) the user may see.

Presence is kept alive from here, server-side, every ``HEARTBEAT_S`` while the socket is open:
closing the tab stops the heartbeats and the queue counts the agent offline once the heartbeat
TTL lapses, with nothing for the page to do. The same tick re-reads the session, so a sign-out
or a disabled account ends the socket within one tick, and a change of units applies at once.

Filtering: an event is forwarded only to users who may see its unit (admins: every unit;
agents and supervisors: their own units; a transfer also to the receiving unit). Nothing of
another unit reaches a browser. Each connection has a bounded outbox; a socket that cannot keep
up is closed (the page reconnects and reloads its lists from the API, which is the truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from core.appkeys import HUB, SETTINGS
from core.staff import StaffUser

from .auth import COOKIE, STAFF, _same_origin, login_required, staff_session
from .workspace import DESK_ROLES

log = logging.getLogger(__name__)

PATH = "/console/workspace/socket"
HEARTBEAT_S = 10.0
OUTBOX = 256
#: websocket close codes the page understands (4000–4999 are the application's)
CLOSE_SIGNED_OUT = 4401
CLOSE_TOO_SLOW = 4408


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Presence(_Msg):
    type: Literal["presence"]
    status: Literal["online", "busy", "away"]


class Ping(_Msg):
    type: Literal["ping"]


ClientMessage = TypeAdapter(Annotated[Presence | Ping, Field(discriminator="type")])


def visible(user: StaffUser, event: dict[str, Any]) -> bool:
    """Whether ``user`` may receive ``event`` (the same rule as AgentDesk.check)."""
    if user.has_role("admin"):
        return True
    if not user.has_role("agent", "supervisor"):
        return False
    return any(user.in_unit(event.get(k)) for k in ("unit", "to"))


class Connection:
    def __init__(self, ws: web.WebSocketResponse, user: StaffUser, token: str) -> None:
        self.ws = ws
        self.user = user
        self.token = token
        self.status: str | None = None
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(OUTBOX)

    def offer(self, frame: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("workspace socket of %s too slow; closing it", self.user.username)
            asyncio.ensure_future(self.ws.close(code=CLOSE_TOO_SLOW, message=b"too slow"))


class Sockets:
    """This process's open workspace sockets, fed from the Events topic."""

    def __init__(self) -> None:
        self.connections: set[Connection] = set()

    async def on_event(self, event: dict[str, Any]) -> None:
        for conn in list(self.connections):
            if visible(conn.user, event):
                conn.offer({"type": "event", "event": event})

    async def close_all(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutdown")


SOCKETS = web.AppKey("workspace_sockets", Sockets)


async def _writer(conn: Connection) -> None:
    while True:
        frame = await conn.outbox.get()
        await conn.ws.send_str(json.dumps(frame, ensure_ascii=False))


async def _ticker(request: web.Request, conn: Connection) -> None:
    """Every HEARTBEAT_S: re-check the session, keep the chosen presence alive."""
    desk = request.config_dict[HUB].desk
    # well inside the queue's TTL even where an operator shortened it
    interval = min(HEARTBEAT_S, request.config_dict[SETTINGS].handoff.heartbeat_ttl_s / 3)
    while True:
        await asyncio.sleep(interval)
        session = await request.config_dict[STAFF].get_session(conn.token)
        if session is None:
            await conn.ws.close(code=CLOSE_SIGNED_OUT, message=b"signed out")
            return
        conn.user = session.user
        if conn.status is not None and desk is not None:
            try:
                await desk.heartbeat(conn.user, conn.status)
            except Exception:  # Redis blips: the next tick tries again before the TTL lapses
                log.warning("workspace heartbeat of %s failed", conn.user.username,
                            exc_info=True)


async def _presence(request: web.Request, conn: Connection, status: str) -> None:
    desk = request.config_dict[HUB].desk
    units = await desk.heartbeat(conn.user, status) if desk is not None else []
    if not units:
        conn.offer({"type": "error", "message": "只有所属单位提供线上人工帮办的坐席可以上线接待"})
        return
    conn.status = status
    conn.offer({"type": "presence", "status": status, "units": units})


@login_required(roles=DESK_ROLES)
async def socket(request: web.Request) -> web.StreamResponse:
    # a browser always sends Origin on a websocket; without it, or from another site, refuse
    # (the SameSite=Strict cookie already stays home, this is the second lock)
    if not request.headers.get("Origin") or not _same_origin(request):
        return web.json_response({"error": "bad_origin", "message": "请求来源不被允许。"},
                                 status=403)
    if request.config_dict[HUB].desk is None:
        return web.json_response({"error": "handoff_disabled",
                                  "message": "线上人工帮办未启用，工作台不可用。"}, status=404)
    session = staff_session(request)
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
    await ws.prepare(request)
    conn = Connection(ws, session.user, request.cookies.get(COOKIE, ""))
    sockets = request.config_dict[SOCKETS]
    sockets.connections.add(conn)
    conn.offer({"type": "hello", "heartbeat_s": HEARTBEAT_S,
                "user": {"id": conn.user.id, "display_name": conn.user.display_name,
                         "roles": conn.user.roles, "units": conn.user.units}})
    tasks = [asyncio.create_task(_writer(conn)), asyncio.create_task(_ticker(request, conn))]
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                parsed = ClientMessage.validate_json(msg.data)
            except ValidationError:
                conn.offer({"type": "error", "message": "无法识别的消息"})
                continue
            if isinstance(parsed, Presence):
                await _presence(request, conn, parsed.status)
            else:
                conn.offer({"type": "pong"})
            if any(t.done() for t in tasks):
                break
    finally:
        sockets.connections.discard(conn)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # no sign_out here: another tab of the same agent may still be open; presence lapses
    return ws


async def sockets_ctx(app: web.Application) -> AsyncIterator[None]:
    """Subscribe this process's sockets to workspace events (after the core started)."""
    sockets, events = app[SOCKETS], app[HUB].events
    events.subscribe(sockets.on_event)
    try:
        yield
    finally:
        events.unsubscribe(sockets.on_event)


async def _close_sockets(app: web.Application) -> None:
    # on shutdown, before the server waits for open requests: a socket would hold it up
    await app[SOCKETS].close_all()


def mount(app: web.Application) -> None:
    app[SOCKETS] = Sockets()
    app.cleanup_ctx.append(sockets_ctx)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get(PATH, socket)


__all__ = ["PATH", "SOCKETS", "Sockets", "mount", "visible"]
