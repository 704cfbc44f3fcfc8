"""Building human help from the settings (called by core.app's core context)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from ..banned import BannedPhrases
from ..db.schema import staff_users
from ..hours import load_units
from ..queue import Queue
from .desk import AgentDesk
from .service import HandoffService
from .store import HandoffStore

if TYPE_CHECKING:
    from ..config import Settings
    from ..hub import Hub


def build(hub: Hub, settings: Settings) -> tuple[HandoffService, AgentDesk]:
    units = load_units(settings.handoff.units_file)
    queue = Queue(hub.redis, settings.redis.prefix, units=units,
                  heartbeat_ttl_s=settings.handoff.heartbeat_ttl_s)
    service = HandoffService(store=HandoffStore(hub.engine), queue=queue, units=units,
                             notifier=hub.notifier, events=hub.events,
                             prefix=settings.redis.prefix,
                             sweep_interval_s=settings.handoff.sweep_interval_s,
                             release_after_s=settings.handoff.release_after_s)
    names: dict[str, tuple[float, str]] = {}

    async def agent_name(agent: str) -> str:
        # display names change rarely; a minute's cache keeps assignment off the database
        cached = names.get(agent)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        async with hub.engine.connect() as conn:
            name = (await conn.execute(select(staff_users.c.display_name)
                                       .where(staff_users.c.id == agent))).scalar()
        names[agent] = (time.monotonic() + 60, name or "工作人员")
        return names[agent][1]

    service.agent_names = agent_name
    service.answers_later = lambda channel: getattr(hub.adapters.get(channel),
                                                     "answers_later", True)
    # a bad banned-phrase file stops start-up with the file and field named (ConfigError)
    desk = AgentDesk(service, hub.conversations, contexts=None,
                     banned=BannedPhrases.load(settings.handoff.banned_phrases_file))
    return service, desk
