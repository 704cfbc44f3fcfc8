"""The 随申办 APP channel: a signed JSON API with long-poll and websocket delivery.

The app's backend (or the app itself) calls ``/api/app/v1`` with requests signed by a per-app
HMAC key (``adapters.app.signing``). Users are namespaced by app: the channel user is
``<app_id>:<user>``, so one app can never read another app's conversations.

Delivery: ``POST /messages`` answers with the bot's replies at once. Messages produced later
(an agent's reply, another device of the same user) are read from SQL by sequence number,
either by a long-poll (``GET /messages?after=&wait=``) or over a websocket (``GET /ws``).
Every process gets every stored message from the bus and calls :meth:`AppAdapter.push`, which
only wakes the long-polls and sockets this process holds; they then re-read SQL, so delivery
is in order and nothing is lost if a bus message is. Transient human-help status updates
(``seq`` 0: queue position, expected wait) are not in SQL: push sends them straight to the
user's websockets as ``status`` frames; long-polls see the stored messages that carry the same
status at its turning points.

Pictures and voice messages: ``POST /attachments`` takes the file as the raw body (signed like
any body: the canonical string holds the SHA-256 of exactly those bytes), stores it after
core.attachments has checked its real type and size, and sends it as the user's message in
one step, so no upload is left dangling without a message. ``GET /attachments/{id}`` serves an
attachment of a conversation of one of the calling app's users; messages carry that URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import defaultdict
from typing import Any, ClassVar

from aiohttp import WSCloseCode, WSMsgType, web

from adapters.base import ChannelAdapter
from core.attachments import (
    AttachmentStore, TooLarge, UnsupportedType, collect, id_from_url, response_headers,
)
from core.conversations import HISTORY_PAGE
from core.dialog.models import Attachment, Inbound, Outbound
from core.errors import NotFound

from .guard import ApiError, Guard, parse_json, validate
from .models import (
    AppConfig, PollQuery, Problem, QuickReplyMessage, TextMessage, UploadQuery, WsClientFrame,
)

PREFIX = "/api/app/v1"
ATTACHMENTS = f"{PREFIX}/attachments"


def _api(handler):
    """Turn an ApiError raised by a handler into its JSON response."""
    async def wrapped(self: AppAdapter, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(self, request)
        except ApiError as exc:
            return exc.response()

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _query(request: web.Request, names: tuple[str, ...]) -> dict[str, str]:
    """The query as a dict; 422 for a parameter given twice or not one of ``names``.

    Unknown parameters are refused rather than ignored, so a typo (``afer=3``) is caught at
    once instead of silently returning the whole conversation.
    """
    unknown = sorted({k for k in request.query if k not in names})
    if unknown:
        problems = [Problem(field=f"query.{k[:40]}", reason="unknown parameter") for k in unknown]
        raise ApiError(422, "invalid", f"query.{unknown[0][:40]}: unknown parameter "
                       f"(expected {', '.join(names)})", problems=problems)
    found = {}
    for name in names:
        values = request.query.getall(name, [])
        if len(values) > 1:
            raise ApiError(422, "invalid", f"query.{name}: given more than once",
                           problems=[Problem(field=f"query.{name}", reason="given more than once")])
        if values:
            found[name] = values[0]
    return found


#: the query parameters of GET /messages and of GET /ws
POLL_PARAMS = tuple(PollQuery.model_fields)
WS_PARAMS = tuple(n for n in POLL_PARAMS if n != "wait")
UPLOAD_PARAMS = tuple(UploadQuery.model_fields)


class AppAdapter(ChannelAdapter):
    name: ClassVar[str] = "app"
    config_model: ClassVar[type[AppConfig]] = AppConfig
    config: AppConfig

    def __init__(self, hub, config: AppConfig) -> None:
        super().__init__(hub, config)
        self.guard = Guard(config, hub, hub.settings.redis.prefix, self.count_message)
        #: channel user → events of the long-polls and sockets this process holds for them
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._sockets: set[web.WebSocketResponse] = set()
        #: channel user → their websockets in this process (for transient status frames)
        self._user_sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self._closing = False

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.post(f"{PREFIX}/messages", self.send),
            web.get(f"{PREFIX}/messages", self.poll, allow_head=False),
            web.get(f"{PREFIX}/ws", self.websocket, allow_head=False),
            web.post(ATTACHMENTS, self.upload),
            web.get(ATTACHMENTS + "/{attachment_id:a[0-9a-f]{23,31}}", self.download,
                    allow_head=False),
            web.get("/api/openapi.json", self.openapi, allow_head=False),
        ]

    @property
    def attachments(self) -> AttachmentStore:
        """Pictures and voice messages: the core's one store (there once the app started)."""
        return self.hub.attachments

    # -- delivery ---------------------------------------------------------------------------
    def render(self, out: Outbound) -> dict[str, Any]:
        """The app shows everything (rich HTML, quick replies, cards): the full message, with
        attachment URLs pointing at this API's signed download route."""
        data = out.model_dump(mode="json", exclude={"attachments"})
        data["attachments"] = [a for a in map(self.render_attachment, out.attachments) if a]
        return data

    @staticmethod
    def render_attachment(att: Attachment) -> dict[str, Any] | None:
        """Our own attachments only (``/attachments/{id}`` → ``/api/app/v1/attachments/{id}``);
        a URL of anything else is dropped rather than handed to the app to fetch."""
        attachment_id = id_from_url(att.url)
        if attachment_id is None:
            return None
        return {**att.model_dump(mode="json"), "url": f"{ATTACHMENTS}/{attachment_id}"}

    async def push(self, channel_user: str, outs: list[Outbound]) -> None:
        statuses = [o for o in outs if o.seq == 0]
        for out in statuses:
            if out.queue is not None:
                frame = {"type": "status", "message": self.render(out)}
                for ws in list(self._user_sockets.get(channel_user, ())):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_json(frame)
        if len(statuses) < len(outs):  # stored messages: the waiters re-read SQL
            self._wake(channel_user)

    def _wake(self, channel_user: str) -> None:
        for event in self._waiters.get(channel_user, ()):
            event.set()

    @contextlib.contextmanager
    def _waiting(self, channel_user: str):
        event = asyncio.Event()
        self._waiters[channel_user].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(channel_user)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[channel_user]

    async def _read(self, channel_user: str, after: int, conversation_id: str | None
                    ) -> tuple[str | None, list[Outbound]]:
        """Stored messages after ``after``; from the start if the conversation changed."""
        current, messages = await self.hub.history(self.name, channel_user, after=after)
        if after and conversation_id and current and current != conversation_id:
            current, messages = await self.hub.history(self.name, channel_user, after=0)
        return current, messages

    async def shutdown(self) -> None:
        """The server is stopping: long-polls answer now, websockets are closed (clients
        reconnect to another process and resume from their last sequence number)."""
        self._closing = True
        for events in list(self._waiters.values()):
            for event in list(events):
                event.set()
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def stop(self) -> None:
        await self.shutdown()

    # -- the API ----------------------------------------------------------------------------
    @_api
    async def send(self, request: web.Request) -> web.Response:
        """POST /messages: one text or quick reply; answers with the bot's replies."""
        app_id, body = await self.guard.authenticate(request)
        if request.content_type != "application/json":
            # as documented; a form or a text body would only fail later as "malformed JSON"
            raise ApiError(415, "unsupported_media_type",
                           f"send the message as application/json, not {request.content_type}")
        data = parse_json(body)
        quick = isinstance(data, dict) and ("payload" in data or "label" in data)
        msg = validate(QuickReplyMessage if quick else TextMessage, data)
        channel_user = f"{app_id}:{msg.user}"
        await self._within_rate(app_id, msg.user, msg.msg_id)
        result = await self.hub.handle(self._inbound(app_id, msg.user, msg.model_dump()))
        self._wake(channel_user)
        return web.json_response({
            "conversation_id": result.conversation_id, "seq": result.seq,
            "replies": [self.render(o) for o in result.replies],
            "duplicate": result.duplicate,
        })

    async def _within_rate(self, app_id: str, user: str, msg_id: str | None) -> None:
        """The user's rate limit, except for a retry of a message already taken: an app that
        lost the answer on a bad mobile network and sends again must get it, not a 429 (the
        store is asked only when the limit is hit, so the common path costs nothing more)."""
        try:
            await self.guard.within_rate(f"{app_id}:{user}")
        except ApiError as exc:
            scoped = self._scoped(app_id, user, msg_id)
            if exc.status != 429 or not scoped:
                raise
            conv = await self.hub.conversations.current(self.name, f"{app_id}:{user}",
                                                        create=False)
            if conv is None or await self.hub.conversations.sent_as(conv.id, scoped) is None:
                raise

    @staticmethod
    def _scoped(app_id: str, user: str, msg_id: str | None) -> str | None:
        """The client's message id as the core de-duplicates it (per channel): scoped to the
        app and user, so two users' "1" are two messages."""
        if not msg_id:
            return None
        digest = hashlib.sha256(f"{user}\n{msg_id}".encode()).hexdigest()[:40]
        return f"{app_id}:{digest}"

    def _inbound(self, app_id: str, user: str, msg: dict[str, Any], **extra: Any) -> Inbound:
        msg_id = self._scoped(app_id, user, msg.get("msg_id"))
        if msg.get("payload"):
            return Inbound(channel=self.name, channel_user=f"{app_id}:{user}",
                           kind="quick_reply", text=msg.get("label") or "",
                           payload=msg["payload"], msg_id=msg_id)
        return Inbound(channel=self.name, channel_user=f"{app_id}:{user}", text=msg["text"],
                       msg_id=msg_id, **extra)

    @_api
    async def poll(self, request: web.Request) -> web.Response:
        """GET /messages: messages after ``after``, waiting up to ``wait`` s for one."""
        app_id, _ = await self.guard.authenticate(request)
        q = validate(PollQuery, _query(request, POLL_PARAMS), "query")
        channel_user = f"{app_id}:{q.user}"
        deadline = time.monotonic() + min(q.wait, self.config.long_poll_max_s)
        with self._waiting(channel_user) as event:
            while True:
                event.clear()
                conversation_id, messages = await self._read(channel_user, q.after,
                                                             q.conversation_id)
                remaining = deadline - time.monotonic()
                if messages or remaining <= 0 or self._closing:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        return web.json_response({"conversation_id": conversation_id,
                                  "messages": [self.render(m) for m in messages]})

    @_api
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """GET /ws: every message of the conversation in order; the client sends texts."""
        app_id, _ = await self.guard.authenticate(request, read=False)
        q = validate(PollQuery, _query(request, WS_PARAMS), "query")
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=self.config.max_body_bytes)
        if not ws.can_prepare(request).ok:
            raise ApiError(400, "not_websocket", "this endpoint needs a websocket upgrade")
        await ws.prepare(request)
        channel_user = f"{app_id}:{q.user}"
        self._sockets.add(ws)
        self._user_sockets[channel_user].add(ws)
        with self._waiting(channel_user) as event:
            pump = asyncio.create_task(self._pump(ws, channel_user, event, q.after,
                                                  q.conversation_id))
            try:
                async for frame in ws:
                    if frame.type != WSMsgType.TEXT:
                        continue
                    await self._receive(ws, app_id, q.user, frame.data)
                    event.set()
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
                self._sockets.discard(ws)
                mine = self._user_sockets.get(channel_user)
                if mine is not None:
                    mine.discard(ws)
                    if not mine:
                        del self._user_sockets[channel_user]
        return ws

    async def _pump(self, ws: web.WebSocketResponse, channel_user: str, event: asyncio.Event,
                    after: int, conversation_id: str | None) -> None:
        """Send stored messages in sequence order whenever this user's event is set."""
        try:
            while not (ws.closed or self._closing):
                event.clear()
                # a new conversation is read from its start (see _read)
                current, messages = await self._read(channel_user, after, conversation_id)
                conversation_id = current or conversation_id
                for message in messages:
                    await ws.send_json({"type": "message", "message": self.render(message)})
                    after = message.seq
                if len(messages) < HISTORY_PAGE:  # a full page: more may follow at once
                    await event.wait()
        except (ConnectionError, RuntimeError):  # the socket closed under us
            return
        except Exception:  # e.g. the database is down: let the client reconnect and resume
            self.log.exception("websocket delivery to %s failed", channel_user)
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"delivery failed")

    async def _receive(self, ws: web.WebSocketResponse, app_id: str, user: str,
                       raw: str) -> None:
        try:
            frame = validate(WsClientFrame, parse_json(raw.encode("utf-8", "surrogatepass")))
            if not (frame.text or frame.payload):
                raise ApiError(422, "invalid", "a send frame needs text or payload")
            if frame.payload and not frame.label:
                # as POST /messages requires: the label is what the transcript shows the agent
                raise ApiError(422, "invalid", "label: a quick reply needs its label")
            await self.guard.within_rate(f"{app_id}:{user}")
        except ApiError as exc:
            await ws.send_json({"type": "error", "error": exc.code, "reason": exc.message})
            return
        await self.hub.handle(self._inbound(app_id, user, frame.model_dump()))

    # -- pictures and voice messages ----------------------------------------------------------
    async def _read_upload(self, request: web.Request) -> bytes:
        """The file, refused (413) as soon as it is over the limit of the type it turns out
        to be — before the signature can be checked, as for any body over its limit."""
        limits = self.attachments.limits
        if request.content_length is not None and request.content_length > limits.of(None):
            raise ApiError(413, "too_large", f"the body is larger than the largest attachment "
                           f"allowed ({limits.of(None)} bytes)")
        try:
            return await collect(request.content.iter_chunked(64 * 1024), limits)
        except TooLarge as exc:
            raise ApiError(413, "too_large", str(exc)) from None

    @_api
    async def upload(self, request: web.Request) -> web.Response:
        """POST /attachments: the raw bytes of a picture or voice message, sent as the user's
        message; answers like POST /messages, plus what was stored."""
        app_id, data = await self.guard.authenticate(request, reader=self._read_upload)
        q = validate(UploadQuery, _query(request, UPLOAD_PARAMS), "query")
        channel_user = f"{app_id}:{q.user}"
        await self._within_rate(app_id, q.user, q.msg_id)
        conv = await self.hub.conversations.current(self.name, channel_user)
        scoped = self._scoped(app_id, q.user, q.msg_id)
        earlier = scoped and await self.hub.conversations.sent_as(conv.id, scoped)
        if earlier and (sent := earlier.to_outbound().attachments):
            # a retry of an upload that was taken: no second copy, the first one's answer
            result = await self.hub.handle(self._inbound(
                app_id, q.user, {"msg_id": q.msg_id, "text": ""}, kind=sent[0].kind,
                attachments=sent))
            return web.json_response({
                "conversation_id": result.conversation_id, "seq": result.seq,
                "replies": [self.render(o) for o in result.replies],
                "duplicate": result.duplicate,
                "attachment": self.render_attachment(sent[0]),
            })
        try:
            meta = await self.attachments.save(conv.id, "citizen", channel_user, data,
                                               request.content_type, q.name)
        except TooLarge as exc:
            raise ApiError(413, "too_large", str(exc)) from None
        except UnsupportedType as exc:
            raise ApiError(415, "unsupported_media_type", str(exc)) from None
        self.log.info("app: %s stored (%s, %d bytes)", meta.id, meta.mime, meta.size)
        result = await self.hub.handle(self._inbound(
            app_id, q.user, {"msg_id": q.msg_id, "text": ""}, kind=meta.kind,
            attachments=[meta.to_attachment()]))
        self._wake(channel_user)
        return web.json_response({
            "conversation_id": result.conversation_id, "seq": result.seq,
            "replies": [self.render(o) for o in result.replies],
            "duplicate": result.duplicate,
            "attachment": self.render_attachment(meta.to_attachment()),
        })

    @_api
    async def download(self, request: web.Request) -> web.Response:
        """GET /attachments/{id}: an attachment of a conversation of one of this app's users."""
        app_id, _ = await self.guard.authenticate(request)
        _query(request, ())
        not_found = ApiError(404, "not_found", "no such attachment for this app")
        try:
            meta, data = await self.attachments.get(request.match_info["attachment_id"])
        except NotFound:
            raise not_found from None
        owner = await self.attachments.owner(meta.conversation_id)
        if owner is None or owner[0] != self.name or not owner[1].startswith(f"{app_id}:"):
            raise not_found
        return web.Response(body=data, headers=response_headers(meta))

    async def openapi(self, request: web.Request) -> web.Response:
        """GET /api/openapi.json: the OpenAPI 3.1 description of this API."""
        from .openapi import document

        return web.json_response(document())
