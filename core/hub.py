"""The Hub: the core's services as one object, handed to every channel adapter.

Adapters get the hub at construction (when routes are mounted) and use it at request time,
after the application's resources have started. It is also where messages produced outside a
request reach adapters: the bus calls ``Hub.dispatch``, which calls the channel's ``push``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import redis
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings
from .dialog.models import Inbound, Outbound

if TYPE_CHECKING:
    from adapters.base import ChannelAdapter

    from .attachments import AttachmentStore
    from .bus import Bus, Events
    from .handoff import AgentDesk, HandoffService
    from .notify import Notifier
    from .conversations import ConversationStore
    from .dialog.service import DialogService, HandleResult
    from .kb.store import KbStore
    from .knowledge import Knowledge

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.adapters: dict[str, ChannelAdapter] = {}
        # set when the application's resources start (core.app)
        self.engine: AsyncEngine
        self.redis: aioredis.Redis
        self.kb: KbStore
        self.conversations: ConversationStore
        self.knowledge: Knowledge
        self.dialog: DialogService
        self.bus: Bus
        self.events: Events
        self.notifier: Notifier
        #: synchronous Redis client for enqueueing RQ jobs (RQ is not asyncio)
        self.rq: redis.Redis
        #: pictures and voice messages of every channel and the workspace
        self.attachments: AttachmentStore
        #: human help; None when handoff.enabled is false
        self.handoff: HandoffService | None = None
        self.desk: AgentDesk | None = None

    @property
    def public_url(self) -> str:
        return self.settings.public_url.rstrip("/")

    async def handle(self, inbound: Inbound) -> HandleResult:
        """Run one citizen action through the core; returns the replies to show."""
        return await self.dialog.handle(inbound)

    async def history(self, channel: str, channel_user: str, *, after: int = 0
                      ) -> tuple[str | None, list[Outbound]]:
        return await self.dialog.history(channel, channel_user, after=after)

    async def dispatch(self, channel: str, channel_user: str, outs: list[Outbound]) -> None:
        adapter = self.adapters.get(channel)
        if adapter is not None:
            await adapter.push(channel_user, outs)
