"""The PC portal (一网通办) channel: the 小申 chat widget, its websocket and public KB pages.

Citizens are anonymous here. A citizen is a random id, carried in a signed cookie (HttpOnly,
SameSite=Lax) that the portal pages and the websocket handshake set when it is missing or does
not verify — a forged or altered cookie is ignored and a fresh identity issued, so nobody can
read another citizen's conversation by guessing or editing a cookie.

Embedding on another origin: a third-party page's websocket handshake to us does not carry our
SameSite=Lax cookie (and browsers increasingly block third-party cookies outright), so the
``hello`` frame also hands the widget a signed *token* for the same identity, which the widget
keeps in localStorage and passes back as ``?token=`` on later connections. We accept it only on
the websocket, only from an allowed Origin, and it is signed with a key of its own purpose
(``web-token``), so it cannot be replayed as a cookie. The trade-off, accepted for an anonymous
help-desk identity: script on the embedding page can read the token and so this conversation.
A valid cookie wins over a token.

Messages for a citizen reach every process through the bus (``push``); each process delivers to
the sockets it holds, de-duplicated by sequence number per socket. Transient human-help status
updates (``seq`` 0, see core.dialog.models.QueueStatus) go to the sockets as ``status`` frames.

Pictures and voice messages are uploaded over HTTP and served back to their owner
(``adapters.web.media``); a websocket message then refers to the uploaded ids.
"""

from __future__ import annotations

import re
import secrets
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import Field, field_validator

from core.attachments import AttachmentStore, id_from_url
from core.dialog.models import MAX_TEXT, Attachment, Outbound
from core.kb.richtext import sanitize_html
from core.security import instance_secret, sign, unsign

from ..base import AdapterConfig, ChannelAdapter
from ..chatsocket import SocketRegistry
from . import pages
from .media import Media
from .socket import handler as socket_handler

if TYPE_CHECKING:
    from .socket import Connection

#: the shape of a citizen id we issue ("w" + 24 URL-safe characters)
_UID = re.compile(r"^w[A-Za-z0-9_-]{16,64}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


class WebConfig(AdapterConfig):
    """``channels.web`` settings."""

    cookie_name: str = Field("bangban_web", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    cookie_max_age_days: int = Field(365, ge=1, le=3650)
    #: longest message a citizen may send, in characters
    max_message_length: int = Field(500, ge=1, le=MAX_TEXT)
    #: messages (typed or tapped) per citizen per minute, over all their tabs and processes
    rate_limit_per_minute: int = Field(20, ge=1, le=10_000)
    #: pages of other origins allowed to embed the widget (e.g. https://zwdt.sh.gov.cn); the
    #: service's own origin is always allowed: the request's Host, or ``server.public_url``
    #: (set it behind a reverse proxy that rewrites Host)
    allowed_origins: list[str] = []
    #: messages of the current conversation sent on connect
    history_limit: int = Field(200, ge=1, le=1000)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        out = []
        for origin in v:
            origin = origin.strip().rstrip("/").lower()
            if not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path)")
            out.append(origin)
        return out


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class WebAdapter(SocketRegistry, ChannelAdapter):
    name = "web"
    config_model = WebConfig
    config: WebConfig

    def __init__(self, hub, config: WebConfig) -> None:
        super().__init__(hub, config)
        #: this process's open sockets, by citizen id
        self.connections: dict[str, set[Connection]] = {}
        self.media = Media(self)

    # -- the plugin API -----------------------------------------------------------------------
    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", pages.portal(self)),
            web.get("/widget.js", pages.static_file("widget.js")),
            web.get("/widget.css", pages.static_file("widget.css")),
            web.get("/portal.css", pages.static_file("portal.css")),
            web.get("/kb/{entry_id}", pages.kb_entry(self)),
            web.get("/channels/web/ws", socket_handler(self)),
            *self.media.routes(),
        ]

    @property
    def attachments(self) -> AttachmentStore:
        """Pictures and voice messages: the core's one store (there once the app started)."""
        return self.hub.attachments

    async def shutdown(self) -> None:
        # close sockets as the server begins to stop, so it does not wait on them
        await self.stop()

    async def stop(self) -> None:
        await self.close_all()

    def render(self, out: Outbound) -> dict[str, Any]:
        """The JSON the widget renders. Only bot and agent messages may carry HTML; it is
        sanitised again here (the KB sanitises on write) so no stored value reaches a page raw."""
        data = out.model_dump(mode="json", exclude={"meta", "attachments"})
        data["html"] = sanitize_html(out.html) if out.html and out.sender in ("bot", "agent") \
            else None
        data["attachments"] = [a for a in map(self.render_attachment, out.attachments) if a]
        return data

    @staticmethod
    def render_attachment(att: Attachment) -> dict[str, Any] | None:
        """An attachment as the widget shows it: only our own ``/attachments/{id}`` URLs (which
        the widget resolves against the service's origin, and which check the owner) are
        passed on; anything else an Outbound might carry is dropped rather than linked."""
        if id_from_url(att.url) is None:
            return None
        return att.model_dump(mode="json")

    async def push(self, channel_user: str, outs: list[Outbound]) -> None:
        for conn in list(self.connections.get(channel_user, ())):
            await conn.deliver(outs)

    # -- identity -----------------------------------------------------------------------------
    @cached_property
    def _cookie_secret(self) -> bytes:
        return instance_secret(self.hub.settings, "web-cookie")

    @cached_property
    def _token_secret(self) -> bytes:
        return instance_secret(self.hub.settings, "web-token")

    @staticmethod
    def new_uid() -> str:
        return "w" + secrets.token_urlsafe(18)

    def _verify(self, secret: bytes, value: str | None) -> str | None:
        if not value or len(value) > 200:
            return None
        uid = unsign(secret, value)
        return uid if uid and _UID.match(uid) else None

    def uid_from_cookie(self, request: web.Request) -> str | None:
        return self._verify(self._cookie_secret, request.cookies.get(self.config.cookie_name))

    def uid_from_token(self, token: str | None) -> str | None:
        return self._verify(self._token_secret, token)

    def token_for(self, uid: str) -> str:
        return sign(self._token_secret, uid)

    def ensure_cookie(self, request: web.Request, response: web.StreamResponse) -> str:
        """The citizen of this request; issues a signed cookie when there is no valid one."""
        uid = self.uid_from_cookie(request)
        if uid is None:
            uid = self.new_uid()
            self.set_cookie(request, response, uid)
        return uid

    def set_cookie(self, request: web.Request, response: web.StreamResponse, uid: str) -> None:
        secure = request.secure or self.hub.public_url.startswith("https://")
        response.set_cookie(self.config.cookie_name, sign(self._cookie_secret, uid),
                            max_age=self.config.cookie_max_age_days * 86400, path="/",
                            httponly=True, samesite="Lax", secure=secure or None)

    def origin_allowed(self, request: web.Request) -> bool:
        """Cross-site websocket hijacking guard. Browsers always send Origin on a websocket
        handshake; a client without one is not a browser, which an Origin check cannot stop."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        if origin == "null" or not _ORIGIN.match(origin):
            return False
        if urlsplit(origin).netloc == (request.host or "").lower():
            return True  # same origin (the Host header is the browser's, not the page's)
        return origin in self.config.allowed_origins or origin == _origin_of(self.hub.public_url)

    # -- rate limit ---------------------------------------------------------------------------
    async def allow_message(self, uid: str) -> bool:
        count, _ = await self.count_message(uid)
        return count <= self.config.rate_limit_per_minute
