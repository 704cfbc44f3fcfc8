"""The live queue of 线上人工帮办 (online human help) in Redis.

What lives here: per unit, the FIFO of conversations waiting for a person; per agent, presence
(online / busy / away, kept alive by heartbeats), the cap on simultaneous conversations and the
conversations held now; per conversation, the first-response SLA clock. Assignment is one Lua
script (core.queue_lua.ASSIGN), so concurrent assigners in several processes can neither hand one
conversation out twice nor push an agent past the cap.

What does not: the record. SQL is the system of record for conversations and handoffs; this is a
fast, rebuildable view of it. After Redis loses its data, :meth:`Queue.rebuild` restores a unit's
line (and what agents held) from SQL rows, idempotently, keeping every original enqueue time.

Presence rules: only ``online`` agents get new work. ``busy`` (the agent pressed 忙碌) and
``away`` keep the conversations they hold but get nothing new. An agent whose heartbeat is older
than ``heartbeat_ttl_s`` counts as ``offline``, whatever status it last sent: a closed browser tab
must not keep attracting citizens. Heartbeat expiry is checked against the queue's clock (not a
Redis key TTL), so the same rule holds in every process and tests drive it without sleeping.

Every call takes an optional ``now`` (seconds since the epoch); the default is the injected clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from . import queue_lua
from .hours import SHANGHAI, Unit, UnitDefaults

Presence = Literal["online", "busy", "away"]
Status = Literal["online", "busy", "away", "offline"]
PRESENCES: tuple[Presence, ...] = ("online", "busy", "away")
_DEFAULTS = UnitDefaults()
_ZONE = ZoneInfo(SHANGHAI)


def _s(v: Any) -> str | None:
    # the app's client returns bytes (no decode_responses); accept both
    return v.decode() if isinstance(v, bytes) else v


def _f(v: Any) -> float | None:
    text = _s(v)
    return float(text) if text else None  # '' is what a script returns for "none"


@dataclass(frozen=True)
class Joined:
    """Where a citizen stands on joining a line."""
    position: int  # 1-based
    wait_s: float  # expected, as Queue.expected_wait_s says


@dataclass(frozen=True)
class Assignment:
    conversation: str
    agent: str
    unit: str
    enqueued_at: float
    assigned_at: float


@dataclass(frozen=True)
class Waiting:
    conversation: str
    unit: str
    position: int  # 1 = next to be assigned
    enqueued_at: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentState:
    agent: str
    status: Status
    load: int
    cap: int
    conversations: tuple[str, ...]
    alive_until: float | None

    @property
    def free(self) -> int:
        """How many more conversations assignment may give this agent right now."""
        return max(self.cap - self.load, 0) if self.status == "online" else 0


@dataclass(frozen=True)
class Overdue:
    conversation: str
    unit: str
    state: Literal["waiting", "assigned"]
    agent: str | None
    due: float
    late_s: float


@dataclass(frozen=True)
class AssignedEntry:
    """A conversation an agent held, as SQL remembers it, for :meth:`Queue.rebuild`."""

    conversation: str
    enqueued_at: float
    agent: str
    assigned_at: float
    first_response_at: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Queue:
    """The queue of one deployment: every unit, agent and waiting conversation under ``prefix``.

    ``units`` (from core.hours.load_units) supplies each unit's default agent cap and first-response
    SLA; without it the units.yaml defaults apply to every unit (5 and 60 s). When given, a unit
    missing from it is refused, since nobody would ever serve that line.
    """

    #: weight of the newest sample in the expected-wait moving average (~the last 5 count)
    ALPHA = 0.3
    #: one sample never counts for more than this (a lunch break is not the service rate)
    MAX_INTERVAL_S = 600.0
    #: per position, before any assignment was seen, and the floor after: a citizen who is waiting
    #: must not be told 0 s just because earlier citizens found a free agent at once
    PRIOR_INTERVAL_S = 30.0
    MIN_INTERVAL_S = 10.0

    def __init__(self, redis: aioredis.Redis, prefix: str = "bangban:", *,
                 units: Mapping[str, Unit] | None = None,
                 clock: Callable[[], float] = time.time, heartbeat_ttl_s: float = 30.0) -> None:
        self.redis = redis
        self.p = f"{prefix}queue:"
        self.units = units
        self.clock = clock
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self._enqueue = redis.register_script(queue_lua.ENQUEUE)
        self._restore = redis.register_script(queue_lua.RESTORE_ASSIGNED)
        self._assign = redis.register_script(queue_lua.ASSIGN)
        self._remove = redis.register_script(queue_lua.REMOVE)
        self._transfer = redis.register_script(queue_lua.TRANSFER)

    # -- keys and config -----------------------------------------------------------------------

    def _k(self, kind: str, name: str) -> str:
        return f"{self.p}{kind}:{name}"

    def _unit(self, unit: str) -> Unit | None:
        if self.units is None:
            return None
        if unit not in self.units:
            raise ValueError(f"unknown unit {unit!r}: not in config/units.yaml")
        return self.units[unit]

    def cap_for(self, unit: str) -> int:
        u = self._unit(unit)
        return u.agent_cap if u else _DEFAULTS.agent_cap

    def sla_for(self, unit: str) -> int:
        u = self._unit(unit)
        return u.first_response_sla_s if u else _DEFAULTS.first_response_sla_s

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    # -- citizens ------------------------------------------------------------------------------

    async def enqueue(self, unit: str, conversation: str, meta: Mapping[str, Any] | None = None,
                      *, now: float | None = None) -> Joined | None:
        """Put a conversation at the back of the unit's line and say where it stands. None if
        it is already queued or held (anywhere): a retried request must not queue the citizen
        twice."""
        now = self._now(now)
        r = await self._enqueue(**self._enqueue_call(unit, conversation, now, now, meta))
        if not r:
            return None
        position, avg = int(r[0]), _f(r[1])
        return Joined(position, position * self._per_position(avg))

    def _enqueue_call(self, unit: str, conversation: str, enqueued_at: float, since: float,
                      meta: Mapping[str, Any] | None) -> dict[str, list]:
        # ``since`` starts the SLA clock: arrival for a new request, arrival too for a rebuild
        return {"keys": [self._k("conv", conversation), self._k("wait", unit),
                         self._k("sla", unit), self._k("stats", unit)],
                "args": [self.p, conversation, unit, repr(float(enqueued_at)), repr(float(since)),
                         json.dumps(dict(meta or {}), ensure_ascii=False),
                         repr(float(since) + self.sla_for(unit))]}

    async def cancel(self, conversation: str) -> str | None:
        """The citizen left: drop the conversation from the queue, freeing its agent if it had
        one. Returns the state it was in ("waiting" / "assigned"), None if it was not queued."""
        return _s(await self._remove(keys=[self._k("conv", conversation)],
                                     args=[self.p, conversation, ""]))

    async def position(self, conversation: str) -> int | None:
        """1-based place in the unit's line; None when not waiting (assigned, or gone)."""
        unit = _s(await self.redis.hget(self._k("conv", conversation), "unit"))
        if unit is None:
            return None
        rank = await self.redis.zrank(self._k("wait", unit), conversation)
        return None if rank is None else rank + 1

    async def expected_wait_s(self, unit: str, position: int) -> float:
        """Seconds the citizen at ``position`` may still wait: position × the unit's moving
        average of time per assignment (see ASSIGN in core.queue_lua), floored at
        MIN_INTERVAL_S; PRIOR_INTERVAL_S per position until the unit has assigned anyone.
        An estimate to show, not a promise: it follows the unit's recent pace."""
        return max(position, 0) * await self.wait_per_position(unit)

    async def wait_per_position(self, unit: str) -> float:
        """The seconds :meth:`expected_wait_s` counts per place in the unit's line."""
        return self._per_position(_f(await self.redis.hget(self._k("stats", unit),
                                                          "avg_interval")))

    def _per_position(self, avg: float | None) -> float:
        return self.PRIOR_INTERVAL_S if avg is None else max(avg, self.MIN_INTERVAL_S)

    async def census(self, units: Sequence[str], *, now: float | None = None
                     ) -> list[tuple[int, int]]:
        """(waiting, past their first-response deadline) of each unit, in one round trip:
        what a sweep looks at first, so idle units cost it nothing more."""
        now = self._now(now)
        pipe = self.redis.pipeline(transaction=False)
        for unit in units:
            pipe.zcard(self._k("wait", unit))
            pipe.zcount(self._k("sla", unit), "-inf", f"({now!r}")
        res = await pipe.execute()
        return [(int(res[2 * i]), int(res[2 * i + 1])) for i in range(len(units))]

    # -- agents --------------------------------------------------------------------------------

    async def heartbeat(self, agent: str, units: Iterable[str], status: Presence = "online", *,
                        cap: int | None = None, now: float | None = None) -> None:
        """Keep the agent present for ``heartbeat_ttl_s`` more seconds with ``status``, serving
        ``units``. ``cap`` overrides the units' default cap (left as it was when None)."""
        if status not in PRESENCES:
            raise ValueError(f"unknown agent status {status!r}; expected one of {PRESENCES}")
        now = self._now(now)
        fields: dict[str, str] = {"status": status,
                                  "alive_until": repr(now + self.heartbeat_ttl_s)}
        if cap is not None:
            if cap < 1:
                raise ValueError("an agent's cap must be at least 1")
            fields["cap"] = str(cap)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._k("agent", agent), mapping=fields)
        for unit in units:
            self._unit(unit)
            pipe.sadd(self._k("agents", unit), agent)
        await pipe.execute()

    async def sign_out(self, agent: str) -> None:
        """Offline at once (no waiting for the heartbeat to lapse); held conversations stay held
        until released or transferred, because that decision belongs to the workspace."""
        await self.redis.hset(self._k("agent", agent), mapping={"status": "away",
                                                                "alive_until": "0"})

    async def clear_cap(self, agent: str) -> None:
        """Back to the unit's default cap."""
        await self.redis.hdel(self._k("agent", agent), "cap")

    async def leave_unit(self, agent: str, unit: str) -> None:
        await self.redis.srem(self._k("agents", unit), agent)

    async def assign(self, unit: str, *, now: float | None = None) -> Assignment | None:
        """Give the unit's oldest waiting conversation to its least-loaded online agent under
        their cap, atomically; None when the line is empty or nobody can take one now."""
        now = self._now(now)
        day = datetime.fromtimestamp(now, _ZONE).date().isoformat()
        res = await self._assign(
            keys=[self._k("wait", unit), self._k("agents", unit), self._k("sla", unit),
                  self._k("stats", unit)],
            args=[self.p, repr(now), self.cap_for(unit), self.sla_for(unit), day, self.ALPHA,
                  self.MAX_INTERVAL_S])
        if not res:
            return None
        conv, agent, enqueued = (_s(x) for x in res)
        return Assignment(conv, agent, unit, float(enqueued), now)

    async def release(self, agent: str, conversation: str) -> bool:
        """The agent closed the conversation: it leaves the queue and frees a place under the
        cap. False when the agent does not hold it (already released, or someone else's)."""
        return bool(await self._remove(keys=[self._k("conv", conversation)],
                                       args=[self.p, conversation, agent]))

    async def transfer(self, conversation: str, to_unit: str, *,
                       now: float | None = None) -> str | None:
        """Move the conversation to ``to_unit``'s line at its original enqueue time, freeing its
        agent; the new unit's SLA clock starts now. Returns the unit it came from (None when the
        conversation is not in the queue)."""
        now = self._now(now)
        due = now + self.sla_for(to_unit)
        return _s(await self._transfer(keys=[self._k("conv", conversation)],
                                       args=[self.p, conversation, to_unit, repr(now), repr(due)]))

    # -- SLA -----------------------------------------------------------------------------------

    async def mark_first_response(self, conversation: str, *,
                                  now: float | None = None) -> float | None:
        """Record the agent's first reply; stops the SLA clock. Returns seconds from assignment
        to that reply (None if the conversation is not assigned or was already answered)."""
        now = self._now(now)
        key = self._k("conv", conversation)
        unit, state, assigned_at, done = (_s(v) for v in await self.redis.hmget(
            key, "unit", "state", "assigned_at", "first_response_at"))
        if state != "assigned" or done is not None or assigned_at is None:
            return None
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, "first_response_at", repr(now))
        pipe.zrem(self._k("sla", unit), conversation)
        await pipe.execute()
        return now - float(assigned_at)

    async def first_response_due(self, conversation: str) -> float | None:
        """When the first agent reply is due: assigned_at + the unit's SLA for an assigned
        conversation; for one still waiting, waiting_since + SLA (the line itself is late).
        None once answered or when not queued."""
        unit = _s(await self.redis.hget(self._k("conv", conversation), "unit"))
        if unit is None:
            return None
        return _f(await self.redis.zscore(self._k("sla", unit), conversation))

    async def overdue(self, unit: str, now: float | None = None) -> list[Overdue]:
        """Conversations of the unit whose first-response deadline has passed, most late first."""
        now = self._now(now)
        rows = await self.redis.zrangebyscore(self._k("sla", unit), "-inf", f"({now!r}",
                                              withscores=True)
        pipe = self.redis.pipeline(transaction=False)
        for conv, _ in rows:
            pipe.hmget(self._k("conv", _s(conv)), "state", "agent")
        details = await pipe.execute()
        return [Overdue(_s(conv), unit, _s(state) or "waiting", _s(agent), due, now - due)
                for (conv, due), (state, agent) in zip(rows, details)]

    # -- supervisors ---------------------------------------------------------------------------

    async def waiting(self, unit: str) -> list[Waiting]:
        """The unit's line, in order."""
        rows = await self.redis.zrange(self._k("wait", unit), 0, -1, withscores=True)
        pipe = self.redis.pipeline(transaction=False)
        for conv, _ in rows:
            pipe.hget(self._k("conv", _s(conv)), "meta")
        metas = await pipe.execute()
        return [Waiting(_s(conv), unit, i, score, json.loads(_s(meta)) if meta else {})
                for i, ((conv, score), meta) in enumerate(zip(rows, metas), start=1)]

    async def agents(self, unit: str, *, now: float | None = None) -> list[AgentState]:
        """The unit's agents with effective status (offline once the heartbeat lapsed) and load."""
        now = self._now(now)
        names = sorted(_s(a) for a in await self.redis.smembers(self._k("agents", unit)))
        pipe = self.redis.pipeline(transaction=False)
        for a in names:
            pipe.hmget(self._k("agent", a), "status", "alive_until", "cap")
            pipe.smembers(self._k("load", a))
        res = await pipe.execute()
        out = []
        for i, a in enumerate(names):
            (status, alive, cap), held = res[2 * i], res[2 * i + 1]
            alive_until = _f(alive)
            live = alive_until is not None and alive_until > now
            out.append(AgentState(
                a, _s(status) if live and status else "offline", len(held),
                int(cap) if cap else self.cap_for(unit), tuple(sorted(_s(c) for c in held)),
                alive_until))
        return out

    # -- recovery ------------------------------------------------------------------------------

    async def rebuild(self, unit: str, waiting: Sequence[tuple[str, float, Mapping[str, Any]]],
                      assigned: Sequence[AssignedEntry] = ()) -> int:
        """Restore the unit from SQL after Redis lost data: ``waiting`` as (conversation,
        enqueued_at, meta) and, so caps hold again, what agents were holding. Entries already
        present are left alone, so it is safe to run on a live queue or twice. Returns how many
        entries were added. A restored waiting conversation's SLA clock runs from enqueued_at,
        so one that waited through the outage shows as overdue, which it is."""
        sla = self.sla_for(unit)
        pipe = self.redis.pipeline(transaction=False)
        for conv, enqueued_at, meta in waiting:
            await self._enqueue(**self._enqueue_call(unit, conv, enqueued_at, enqueued_at, meta),
                                client=pipe)
        for e in assigned:
            answered = "" if e.first_response_at is None else repr(float(e.first_response_at))
            await self._restore(
                keys=[self._k("conv", e.conversation), self._k("sla", unit)],
                args=[self.p, e.conversation, unit, repr(float(e.enqueued_at)),
                      json.dumps(e.meta, ensure_ascii=False), e.agent,
                      repr(float(e.assigned_at)), answered, repr(float(e.assigned_at) + sla)],
                client=pipe)
        return sum(1 for x in await pipe.execute() if x)  # 0 = already there
