"""Human help assembled from real parts (SQL, Redis, the seed KB's bot) with a clock we drive.

The clock starts on a working Monday at 10:00 Beijing time, inside every unit's hours, so the
tests do not depend on when they run; tests that need a closed unit move it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from argon2 import PasswordHasher

from core.bus import Bus, Events
from core.config import BotSettings
from core.conversations import ConversationStore
from core.dialog.bot import Bot
from core.dialog.models import Inbound, Outbound
from core.dialog.service import DialogService
from core.handoff import AgentDesk, HandoffService, HandoffStore
from core.hours import load_units
from core.notify import Notifier
from core.queue import Queue
from core.ratings import RatingStore
from core.staff import StaffStore, StaffUser
from tests.core.dialog.test_bot import seed_snapshot

#: Monday 2026-11-30 10:00 in Shanghai (a working day)
MONDAY_10 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC).timestamp()
#: Saturday 2026-11-28 10:00 in Shanghai (not a working day)
SATURDAY_10 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC).timestamp()
PASSWORD = "correct horse battery 42"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Desk:
    """Everything a test drives: the citizen's side, the agent's side, and what was published."""

    dialog: DialogService
    service: HandoffService
    desk: AgentDesk
    staff: StaffStore
    clock: Clock
    ratings: RatingStore
    events: list[dict[str, Any]] = field(default_factory=list)
    pushed: list[tuple[str, Outbound]] = field(default_factory=list)

    async def say(self, user: str, text: str = "", **fields: Any) -> list[Outbound]:
        result = await self.dialog.handle(Inbound(channel="web", channel_user=user, text=text,
                                                  **fields))
        return result.replies

    async def agent(self, username: str, units: list[str], roles: tuple[str, ...] = ("agent",),
                    name: str | None = None) -> StaffUser:
        return await self.staff.add_user(f"{username}{secrets.token_hex(2)}", PASSWORD,
                                         roles=roles, units=units, display_name=name or username)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_10)


@pytest.fixture
async def hd(engine, redis, clock) -> Desk:
    prefix = f"bbtest{secrets.token_hex(3)}:"
    snap = seed_snapshot()
    conversations = ConversationStore(engine)
    bus = Bus(redis, prefix)
    events = Events(redis, prefix)
    units = load_units()
    queue = Queue(redis, prefix, units=units, clock=clock)
    service = HandoffService(store=HandoffStore(engine), queue=queue, units=units,
                             notifier=Notifier(conversations, bus), events=events,
                             prefix=prefix, clock=clock)
    ratings = RatingStore(engine)
    dialog = DialogService(conversations, Bot(lambda: snap, BotSettings()), redis, bus,
                           prefix=prefix, human=service, ratings=ratings)
    # cheap hashing: these tests are about human help, not password storage
    staff = StaffStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))

    async def names(agent: str) -> str:
        async with engine.connect() as conn:
            from sqlalchemy import select

            from core.db.schema import staff_users
            return (await conn.execute(select(staff_users.c.display_name)
                                       .where(staff_users.c.id == agent))).scalar() or "?"

    service.agent_names = names
    desk = AgentDesk(service, conversations, contexts=dialog)
    d = Desk(dialog, service, desk, staff, clock, ratings)

    async def on_event(e: dict[str, Any]) -> None:
        d.events.append(e)

    async def on_push(channel: str, user: str, outs: list[Outbound]) -> None:
        d.pushed.extend((user, o) for o in outs)

    # capture what is published, as the workspace and the channels would receive it
    orig_events, orig_bus = events.publish, bus.publish

    async def publish_event(e: dict[str, Any]) -> None:
        await on_event(e)
        await orig_events(e)

    async def publish_out(channel: str, user: str, outs: list[Outbound]) -> None:
        await on_push(channel, user, outs)
        await orig_bus(channel, user, outs)

    events.publish = publish_event  # type: ignore[method-assign]
    bus.publish = publish_out  # type: ignore[method-assign]
    await service.ensure_queue()
    return d


def citizen() -> str:
    return f"citizen-{secrets.token_hex(4)}"
