"""Service segments of human help in SQL (table ``handoffs``): the record the queue is rebuilt from.

Every state change is one conditional UPDATE (``WHERE state = <expected>``), so two processes
acting on the same segment (two sweeps, an agent's close racing the citizen's cancel) cannot
both win: the loser sees ``False`` and does nothing further.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..conversations import new_id
from ..db.schema import conversations, handoffs
from ..errors import NotFound

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: segments that are still someone's work
OPEN_STATES = ("waiting", "message", "assigned")
RESOLUTIONS = ("resolved", "unresolved", "dispatched", "transferred", "no_reply", "cancelled",
               "overflowed")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Handoff:
    id: str
    conversation_id: str
    channel: str
    channel_user: str
    unit: str
    matter: str | None
    reason: str
    state: str
    agent: str | None
    agent_name: str | None
    requested_at: datetime
    assigned_at: datetime | None
    first_response_at: datetime | None
    closed_at: datetime | None
    resolution: str | None
    sla_breached: bool
    previous_id: str | None
    note: str | None
    day: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @classmethod
    def from_row(cls, row: Any) -> Handoff:
        data = {k: row[k] for k in cls.__slots__}
        data["sla_breached"] = bool(data["sla_breached"])
        data["meta"] = dict(data["meta"] or {})
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """JSON-ready (the workspace's view of a segment)."""
        out = {k: getattr(self, k) for k in self.__slots__}
        for k in ("requested_at", "assigned_at", "first_response_at", "closed_at"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


class HandoffStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def open(self, *, conversation_id: str, channel: str, channel_user: str, unit: str,
                   matter: str | None, reason: str, state: str, previous_id: str | None = None,
                   note: str | None = None, meta: dict[str, Any] | None = None,
                   requested_at: datetime | None = None) -> Handoff:
        """A new segment, and the conversation's status to match (queued / message)."""
        now = requested_at or utcnow()
        if state == "message":
            # answered next working day: figures keep it out of first-response times even
            # after an agent claims it and the state becomes 'assigned'
            meta = {**(meta or {}), "left_message": True}
        row = {"id": new_id("h"), "conversation_id": conversation_id, "channel": channel,
               "channel_user": channel_user, "unit": unit, "matter": matter, "reason": reason,
               "state": state, "agent": None, "agent_name": None, "requested_at": now,
               "assigned_at": None, "first_response_at": None, "closed_at": None,
               "resolution": None, "sla_breached": False, "previous_id": previous_id,
               "note": note, "day": now.astimezone(SHANGHAI).date().isoformat(),
               "meta": meta or {}}
        async with self.engine.begin() as conn:
            await conn.execute(insert(handoffs).values(**row))
            await conn.execute(update(conversations)
                               .where(conversations.c.id == conversation_id)
                               .values(status="message" if state == "message" else "queued",
                                       unit=unit))
        return Handoff(**row)

    async def get(self, handoff_id: str) -> Handoff:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(handoffs).where(handoffs.c.id == handoff_id))
                   ).mappings().first()
        if row is None:
            raise NotFound(f"no human-help service {handoff_id!r}")
        return Handoff.from_row(row)

    async def current(self, conversation_id: str) -> Handoff | None:
        """The conversation's open segment (at most one is open at a time)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(handoffs).where(handoffs.c.conversation_id == conversation_id,
                                       handoffs.c.state.in_(OPEN_STATES))
                .order_by(handoffs.c.requested_at.desc()).limit(1))).mappings().first()
        return Handoff.from_row(row) if row else None

    async def latest(self, conversation_id: str) -> Handoff | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(handoffs).where(handoffs.c.conversation_id == conversation_id)
                .order_by(handoffs.c.requested_at.desc(), handoffs.c.id.desc()).limit(1))
            ).mappings().first()
        return Handoff.from_row(row) if row else None

    async def assign(self, handoff_id: str, agent: str, agent_name: str, *,
                     from_states: tuple[str, ...] = ("waiting",),
                     at: datetime | None = None) -> bool:
        at = at or utcnow()
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(handoffs).where(handoffs.c.id == handoff_id,
                                       handoffs.c.state.in_(from_states))
                .values(state="assigned", agent=agent, agent_name=agent_name, assigned_at=at)
                .returning(handoffs.c.conversation_id))
            conv = res.scalar()
            if conv is None:
                return False
            await conn.execute(update(conversations).where(conversations.c.id == conv)
                               .values(status="agent"))
        return True

    async def assign_waiting(self, conversation_id: str, agent: str, agent_name: str, *,
                             at: datetime | None = None) -> str | None:
        """Assign the conversation's waiting segment in one statement (the hot path of
        assignment); returns the segment's id, None when it is no longer waiting."""
        at = at or utcnow()
        async with self.engine.begin() as conn:
            hid = (await conn.execute(
                update(handoffs).where(handoffs.c.conversation_id == conversation_id,
                                       handoffs.c.state == "waiting")
                .values(state="assigned", agent=agent, agent_name=agent_name, assigned_at=at)
                .returning(handoffs.c.id))).scalar()
            if hid is not None:
                await conn.execute(update(conversations)
                                   .where(conversations.c.id == conversation_id)
                                   .values(status="agent"))
        return hid

    async def first_response(self, handoff_id: str, at: datetime | None = None) -> bool:
        """Record the agent's first reply; True only the first time."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(handoffs).where(handoffs.c.id == handoff_id,
                                       handoffs.c.first_response_at.is_(None))
                .values(first_response_at=at or utcnow()))
        return res.rowcount == 1

    async def finish(self, handoff_id: str, state: str, resolution: str, *,
                     note: str | None = None, from_states: tuple[str, ...] = OPEN_STATES,
                     conversation_status: str | None = "bot",
                     at: datetime | None = None) -> Handoff | None:
        """End a segment (closed / cancelled / transferred / overflowed). Returns the ended
        segment, or None when it was no longer in ``from_states`` (someone else ended it)."""
        at = at or utcnow()
        values: dict[str, Any] = {"state": state, "resolution": resolution, "closed_at": at}
        if note is not None:
            values["note"] = note[:2000]
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(handoffs).where(handoffs.c.id == handoff_id,
                                       handoffs.c.state.in_(from_states))
                .values(**values).returning(handoffs.c.conversation_id))
            conv = res.scalar()
            if conv is None:
                return None
            if conversation_status is not None:
                await conn.execute(update(conversations).where(conversations.c.id == conv)
                                   .values(status=conversation_status))
            row = (await conn.execute(select(handoffs).where(handoffs.c.id == handoff_id))
                   ).mappings().one()
        return Handoff.from_row(row)

    async def mark_breached(self, handoff_id: str) -> bool:
        """True the first time only, so one breach alerts supervisors once."""
        async with self.engine.begin() as conn:
            res = await conn.execute(update(handoffs).where(
                handoffs.c.id == handoff_id, handoffs.c.sla_breached.is_(False))
                .values(sla_breached=True))
        return res.rowcount == 1

    async def in_states(self, states: tuple[str, ...], *, units: list[str] | None = None,
                        agent: str | None = None, limit: int = 1000) -> list[Handoff]:
        q = select(handoffs).where(handoffs.c.state.in_(states))
        if units is not None:
            q = q.where(handoffs.c.unit.in_(units))
        if agent is not None:
            q = q.where(handoffs.c.agent == agent)
        q = q.order_by(handoffs.c.requested_at, handoffs.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [Handoff.from_row(r) for r in (await conn.execute(q)).mappings().all()]

    async def for_conversation(self, conversation_id: str) -> list[Handoff]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(handoffs).where(handoffs.c.conversation_id == conversation_id)
                .order_by(handoffs.c.requested_at, handoffs.c.id))).mappings().all()
        return [Handoff.from_row(r) for r in rows]

    async def breached_open(self, units: list[str] | None = None) -> list[Handoff]:
        q = select(handoffs).where(handoffs.c.sla_breached.is_(True),
                                   handoffs.c.state.in_(OPEN_STATES))
        if units is not None:
            q = q.where(handoffs.c.unit.in_(units))
        async with self.engine.connect() as conn:
            return [Handoff.from_row(r) for r in (await conn.execute(q)).mappings().all()]

    async def unanswered(self, units: list[str], requested_before: datetime) -> list[Handoff]:
        """Segments of these units an agent holds without having replied yet, requested
        before the given time and not yet marked breached: what the sweep times against the
        SLA from the request (the waiting line's own clock is in Redis). Every process asks
        every second, so the units are named: the (unit, state) index answers it without
        reading the table's history."""
        q = (select(handoffs).where(handoffs.c.unit.in_(units), handoffs.c.state == "assigned",
                                    handoffs.c.first_response_at.is_(None),
                                    handoffs.c.sla_breached.is_(False),
                                    handoffs.c.requested_at < requested_before)
             .order_by(handoffs.c.requested_at).limit(1000))
        async with self.engine.connect() as conn:
            return [Handoff.from_row(r) for r in (await conn.execute(q)).mappings().all()]

    async def count_open(self, unit: str) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(handoffs).where(
                handoffs.c.unit == unit, handoffs.c.state.in_(OPEN_STATES)))).scalar_one()
