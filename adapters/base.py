"""The channel adapter plugin API.

A channel is one package with one ``ChannelAdapter`` subclass, registered under the entry-point
group ``bangban.adapters``. The core never imports a channel: it discovers the adapters, gives
each its validated config and the ``Hub`` (the core's services), mounts the routes the adapter
declares, starts and stops it with the application, and calls ``push`` when a message for one
of the adapter's citizens is produced outside a request (an agent's reply, a reply finished
after a platform's deadline, a message for another tab).

Two delivery styles are supported:

- request/response channels (WeChat wants the reply in the HTTP response within 5 s) call
  ``hub.handle`` in their route and ``render`` the replies into the response;
- push channels (websocket, platform send APIs) acknowledge the request and deliver through
  ``push``.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from core.dialog.models import Outbound

if TYPE_CHECKING:
    from core.hub import Hub

log = logging.getLogger(__name__)


def clock() -> float:
    """Seconds since the epoch for rate windows (a function, so tests can hold it still)."""
    return time.time()


class AdapterConfig(BaseModel):
    """Base of every adapter's settings (``channels.<name>`` in the config)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


class ChannelAdapter(ABC):
    #: the channel's name: config key, ``Inbound.channel``, URL segment
    name: ClassVar[str]
    #: the adapter's settings model
    config_model: ClassVar[type[AdapterConfig]] = AdapterConfig
    #: whether an answer given later (a 留言 answered the next working day) reaches the citizen
    #: here: not on a shared terminal, whose session ends when the person walks away
    answers_later: ClassVar[bool] = True

    def __init__(self, hub: Hub, config: AdapterConfig) -> None:
        self.hub = hub
        self.config = config
        self.log = logging.getLogger(f"adapters.{self.name}")

    def routes(self) -> list[web.AbstractRouteDef]:
        """HTTP routes of this channel, mounted on the main application."""
        return []

    async def start(self) -> None:
        """Acquire resources (HTTP sessions, background tasks). Called once at app start-up."""

    async def shutdown(self) -> None:
        """Close long-lived connections (websockets, long-polls) as the server begins to stop,
        so it need not wait for them; ``stop`` follows once requests have finished."""

    async def stop(self) -> None:
        """Release resources. Called once at shutdown, in reverse order of start."""

    async def count_message(self, channel_user: str, window_s: int = 60) -> tuple[int, int]:
        """Count one message of the citizen in the current fixed window, in Redis so every
        process shares the count (the per-citizen rate limit every channel must apply).
        Returns (messages in this window so far, seconds until the window ends)."""
        now = int(clock())
        window = now // window_s
        key = f"{self.hub.settings.redis.prefix}{self.name}:rate:{channel_user}:{window}"
        async with self.hub.redis.pipeline(transaction=True) as pipe:
            count, _ = await pipe.incr(key).expire(key, window_s + 1).execute()
        return int(count), (window + 1) * window_s - now

    @abstractmethod
    def render(self, out: Outbound) -> Any:
        """The channel's own form of one outbound message (rich parts degraded as needed)."""

    @abstractmethod
    async def push(self, channel_user: str, outs: list[Outbound]) -> None:
        """Deliver messages produced outside a request to this citizen, if this process can.

        Called in every app process for every message of this channel (fan-out); an adapter
        that holds no connection for ``channel_user`` does nothing. Must not raise for a
        citizen who is simply not connected.
        """
