"""The self-service kiosk (自助终端) channel: a full-screen touch page at ``/kiosk``.

A kiosk is a *shared* terminal in a service hall, so the design is driven by one rule: the next
person must never see the last person's conversation.

- **Terminals, not citizens, are authenticated.** Each terminal has a device id and a key
  (``channels.kiosk.devices``). It proves the key once (a registration form, or an HMAC-signed
  bootstrap URL from the terminal's launcher) and gets a signed HttpOnly cookie bound to the
  key: rotating the key in the config revokes the registration (``devices.py``).
- **A person is a session.** ``channel_user`` is ``<device>:<session id>``; sessions live in
  Redis (``sessions.py``). After ``idle_timeout_s`` without a touch the page wipes itself and
  asks for a new session; the server ends the old one: its conversation is closed, its live
  context dropped, and any human-help segment cancelled (waiting) or closed as ``no_reply``
  with the agent told (assigned). A sweep in every process is the backstop when the page could
  not wipe (power cut, crashed browser, lost network).
- **Delivery is a push channel** over the kiosk's own websocket (``socket.py``), in the shape
  of the web widget's: replies go out on the socket that sent the message as soon as they are
  stored, and ``push`` (every process, every kiosk message) delivers to the sockets this
  process holds, skipping seqs already sent; transient human-help statuses (``seq`` 0) update
  the page's status line in place.
- **Answers continue on the phone**: every KB answer carries a server-rendered SVG QR code of
  the entry's public page, and a print-friendly view (``/kiosk/print/{entry_id}``).

We do not reuse ``adapters.web`` (its identity is a long-lived citizen cookie, exactly what a
shared terminal must not have); the pure helpers of the core are shared instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Annotated, Any

from aiohttp import web
from pydantic import Field, StringConstraints, model_validator

from core.dialog.models import MAX_TEXT, Outbound
from core.tasks import cancel_and_wait

from ..base import AdapterConfig, ChannelAdapter
from ..chatsocket import SocketRegistry
from . import pages
from .devices import DEVICE_ID, Devices
from .render import render
from .sessions import Sessions
from .socket import handler as socket_handler

if TYPE_CHECKING:
    from .socket import Connection

log = logging.getLogger(__name__)

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID.pattern)]
#: at least 32 characters: a key is typed once at registration, so it can be long
DeviceKey = Annotated[str, StringConstraints(min_length=32, max_length=256)]


class KioskConfig(AdapterConfig):
    """``channels.kiosk`` settings."""

    #: terminal id → its key (≥ 32 characters; e.g. ``openssl rand -base64 33``). A terminal
    #: not listed here gets 403; changing a key revokes that terminal's registration.
    devices: dict[DeviceId, DeviceKey] = {}
    #: seconds without a touch after which the screen is wiped and the session ends
    idle_timeout_s: int = Field(120, ge=2, le=3600)
    #: the last seconds of that time, when a countdown with 继续使用 is shown
    idle_warning_s: int = Field(20, ge=0, le=600)
    #: the server ends a session this long after idle_timeout_s when the page did not (power
    #: cut, crashed browser): the page normally wipes first, with no server round trip needed
    server_grace_s: int = Field(30, ge=1, le=3600)
    #: how often each process looks for sessions to end
    sweep_interval_s: float = Field(2.0, gt=0, le=60)
    #: the terminal's registration cookie
    cookie_name: str = Field("bangban_kiosk", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    registration_days: int = Field(365, ge=1, le=3650)
    #: bootstrap URLs (``?device=&token=``) are accepted this long around their timestamp
    bootstrap_window_s: int = Field(300, ge=30, le=3600)
    #: longest message, in characters (the box is typed on with the kiosk's IME)
    max_message_length: int = Field(300, ge=1, le=MAX_TEXT)
    #: messages (typed or tapped) per session per minute, over all processes
    rate_limit_per_minute: int = Field(20, ge=1, le=10_000)
    #: FAQ questions offered as buttons per matter
    popular_per_matter: int = Field(4, ge=0, le=12)

    @model_validator(mode="after")
    def _warning_within_timeout(self) -> KioskConfig:
        if self.idle_warning_s >= self.idle_timeout_s:
            raise ValueError(f"idle_warning_s ({self.idle_warning_s}) must be shorter than "
                             f"idle_timeout_s ({self.idle_timeout_s})")
        return self


class KioskAdapter(SocketRegistry, ChannelAdapter):
    name = "kiosk"
    config_model = KioskConfig
    answers_later = False  # the session, and any 留言 with it, ends when the person leaves
    config: KioskConfig

    def __init__(self, hub, config: KioskConfig) -> None:
        super().__init__(hub, config)
        #: this process's open sockets, by channel_user (``<device>:<session>``)
        self.connections: dict[str, set[Connection]] = {}
        self.devices = Devices(self)
        self.sessions = Sessions(self)
        self._sweeper: asyncio.Task | None = None
        self._stopping = False

    # -- the plugin API -----------------------------------------------------------------------
    def routes(self) -> list[web.AbstractRouteDef]:
        return [*pages.routes(self), web.get("/kiosk/ws", socket_handler(self))]

    async def start(self) -> None:
        self._stopping = False
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="kiosk-sweep")
        if self.config.devices and not self.hub.settings.server.public_url:
            # the QR codes and printed sheets carry this address to citizens' phones
            self.log.warning("kiosk: server.public_url is not set, so QR codes and printed "
                             "guides point at %s, which a citizen's phone cannot reach",
                             self.hub.settings.public_url)

    async def shutdown(self) -> None:
        # close sockets as the server begins to stop, so it does not wait on them
        await self.stop()

    async def stop(self) -> None:
        # the flag as well as the cancel: on Python 3.11 a cancel can be lost inside a library's
        # wait_for (e.g. a Redis pool wait), and the loop must still end
        self._stopping = True
        await cancel_and_wait(self._sweeper)
        self._sweeper = None
        await self.close_all()

    def render(self, out: Outbound) -> dict[str, Any]:
        return render(self, out)

    async def push(self, channel_user: str, outs: list[Outbound]) -> None:
        conns = self.connections.get(channel_user)
        if not conns:
            return
        # a session ended elsewhere (sweep, another process) shows nothing more on its screen,
        # not even the "citizen left" notice stored for the agent
        if not await self.sessions.alive(channel_user):
            return
        for conn in list(conns):
            # the page may move to a new session while this waits for its turn
            await conn.deliver(outs, user=channel_user)

    # -- rate limit ---------------------------------------------------------------------------
    async def allow_message(self, channel_user: str) -> bool:
        count, _ = await self.count_message(channel_user)  # per session, i.e. per person
        return count <= self.config.rate_limit_per_minute

    # -- the backstop -------------------------------------------------------------------------
    @property
    def server_idle_s(self) -> float:
        return self.config.idle_timeout_s + self.config.server_grace_s

    async def sweep(self) -> None:
        """End sessions idle past the server's limit (whichever process claims one ends it),
        and move this process's screens off sessions that ended anywhere."""
        await self.sessions.keep_pristine(
            [c.user for conns in self.connections.values() for c in conns if not c.used])
        for user in await self.sessions.expired(time.time() - self.server_idle_s):
            if await self.sessions.claim(user):
                log.info("kiosk: a session idle for over %.0f s ended by the server",
                         self.server_idle_s)
                # the screen is wiped first; its new session starts once the old is closed
                moved = await self._rotate_local(user, greet=False)
                try:
                    await self.sessions.retire(user)
                finally:
                    for conn in moved:
                        await conn.hello(resumed=False)
        await self.sessions.retry_failed()
        users = list(self.connections)
        if users:
            alive = await self.sessions.alive_many(users)
            for user in users:
                if not alive.get(user, True):
                    await self._rotate_local(user)

    async def _rotate_local(self, user: str, *, greet: bool = True) -> list[Connection]:
        moved = list(self.connections.get(user, ()))
        for conn in moved:
            await conn.new_session(ended=True, greet=greet)
        return moved

    async def _sweep_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.sweep_interval_s)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("kiosk sweep failed; retrying", exc_info=True)
