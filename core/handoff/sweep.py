"""The human-help sweep: what every process does every ``sweep_interval_s`` on its own.

Assign waiting citizens to agents who became free, raise first-response SLA breaches once
(timed from the request, as the figures time a first response),
overflow citizens left waiting (or assigned and never answered) too long, give back the
conversations of agents gone for good, push live queue positions, and rebuild the Redis queue
from SQL when Redis has lost it. Part of HandoffService (core.handoff.service), kept apart so
each reads on its own; the state it uses is HandoffService's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..dialog.models import QueueStatus
from ..figures import left_message
from ..queue import AssignedEntry
from ..tasks import cancel_and_wait

if TYPE_CHECKING:
    from ..bus import Events
    from ..hours import Units
    from ..notify import Notifier
    from ..queue import Queue
    from ..reference import Matters
    from .store import Handoff, HandoffStore

log = logging.getLogger(__name__)

#: how often a sweep looks for agents gone while holding conversations (a round trip per unit)
ABSENT_CHECK_EVERY_S = 15.0


def minutes(seconds: float) -> int:
    """Whole minutes to tell a citizen, at least one."""
    return max(1, round(seconds / 60))


def waiting_text(position: int, wait_s: float) -> str:
    """Where the citizen stands, as the widget's banner says it (1 = next to be served)."""
    ahead = "下一位就是您" if position <= 1 else f"您前面还有{position - 1}位"
    return f"{ahead}，预计等待约{minutes(wait_s)}分钟"


class Sweeper:
    """HandoffService's sweep; the service sets these before calling ``__init__``."""

    store: HandoffStore
    queue: Queue
    units: Units
    notifier: Notifier
    events: Events
    matters: Matters
    clock: Callable[[], float]
    # and the service's methods: assign_unit, _assigned, move, unit_name

    def __init__(self, *, prefix: str, sweep_interval_s: float, release_after_s: float) -> None:
        self.sweep_interval_s = sweep_interval_s
        self.release_after_s = release_after_s
        self._marker = f"{prefix}queue:epoch"
        #: units whose line changed, for the next round of position updates
        self._dirty: set[str] = set()
        #: overdue entries this process has already handled (conversation, state, unit) → when
        self._breached: dict[tuple[str, str, str], float] = {}
        #: agent → when this process first saw them offline while holding conversations
        self._absent: dict[str, float] = {}
        self._next_absent_check = 0.0
        #: matter → its lead department (where an overflow goes first)
        self._lead = {m.code: m.department for m in self.matters.matters}
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def sweep(self) -> None:
        await self.ensure_queue()
        now = self.clock()
        codes = list(self.units)
        for code, (waiting, overdue) in zip(codes, await self.queue.census(codes, now=now)):
            if waiting:
                await self.assign_unit(code)
                await self._overflow(code, now)
            if overdue:
                await self._breaches(code, now)
        await self._unanswered(now)
        if now >= self._next_absent_check:
            self._next_absent_check = now + ABSENT_CHECK_EVERY_S
            await self._release_absent(now)
        for code in list(self._dirty):
            self._dirty.discard(code)
            await self._positions(code)
        if len(self._breached) > 10_000:  # forget the oldest half: this is only a shortcut
            for key in sorted(self._breached, key=self._breached.get)[:5_000]:
                del self._breached[key]

    async def _breaches(self, unit: str, now: float) -> None:
        u = self.units[unit]
        overflow_late = u.overflow_after_s - u.first_response_sla_s
        for late in await self.queue.overdue(unit, now):
            key = (late.conversation, late.state, unit)
            if key in self._breached and not (late.state == "assigned"
                                              and late.late_s > overflow_late):
                continue  # already alerted; nothing new until it overflows
            self._breached[key] = now
            h = await self.store.current(late.conversation)
            if h is None:
                continue
            if late.state == "assigned" and h.state == "waiting" and late.agent:
                # Redis assigned it but the SQL write failed (database blip): finish the job
                await self._assigned(late.conversation, late.agent, unit)
                h = await self.store.current(late.conversation) or h
            await self._breach(h, late.late_s, state=late.state, agent=late.agent)
            if late.state == "assigned" and late.late_s > overflow_late:
                # assigned but never answered: the agent is not there; the citizen must not
                # wait on them for ever (the breach above was raised long ago)
                target = self.units.overflow_target(unit, self._lead.get(h.matter or ""))
                if target is not None:
                    await self.move(h, target, state="overflowed", resolution="overflowed",
                                    reason="overflow", from_states=("assigned",),
                                    text=f"抱歉让您久等了，已为您转至{self.unit_name(target)}，请稍候。")

    async def _unanswered(self, now: float) -> None:
        """Served but not answered within the SLA of the request. The figures time a first
        response from the request (first reply − request, core.figures), while the Redis
        clock above restarts when an agent is assigned; so a citizen who waited 50 s and then
        got no reply for another 50 s is a miss in the figures and must be alerted as one,
        not only once the agent has had 60 s of their own."""
        if not self.units:
            return
        slas = {code: u.first_response_sla_s for code, u in self.units.items()}
        cutoff = datetime.fromtimestamp(now - min(slas.values()), UTC)
        for h in await self.store.unanswered(list(slas), cutoff):
            if left_message(h.state, h.meta):
                continue  # a 留言 is answered the next working day, as the figures know
            late = now - h.requested_at.timestamp() - slas[h.unit]
            if late > 0:
                await self._breach(h, late, state=h.state, agent=h.agent)

    async def breached_at_first_reply(self, h: Handoff) -> None:
        """The agent's first reply came later than the SLA after the request, between two
        sweeps: record and alert the breach the figures will count."""
        u = self.units.get(h.unit)
        if u is None or h.state != "assigned" or left_message(h.state, h.meta):
            return
        late = self.clock() - h.requested_at.timestamp() - u.first_response_sla_s
        if late > 0:
            await self._breach(h, late, state=h.state, agent=h.agent)

    async def _breach(self, h: Handoff, late_s: float, *, state: str, agent: str | None
                      ) -> None:
        """Mark the segment breached and alert its unit's supervisors, once whoever sees it."""
        if await self.store.mark_breached(h.id):
            log.warning("first-response SLA breached: %s at %s (%s, %.0f s late)",
                        h.id, h.unit, state, late_s)
            await self.events.publish({"type": "sla_breach", "unit": h.unit, "handoff": h.id,
                                       "conversation": h.conversation_id, "agent": agent,
                                       "state": state, "late_s": round(late_s)})

    async def _release_absent(self, now: float) -> None:
        """Conversations held by an agent gone for ``release_after_s`` (browser closed, account
        disabled, machine off) go back to their place in the unit's line, so no citizen waits
        on a person who is not there. The time counts from when this process first saw them
        offline, not from their last heartbeat in Redis: after a Redis restart nobody's
        heartbeat is known for a few seconds, and that must not take conversations away."""
        seen: set[str] = set()
        for code in self.units:
            for a in await self.queue.agents(code, now=now):
                if a.status != "offline" or not a.conversations:
                    continue
                seen.add(a.agent)
                if now - self._absent.setdefault(a.agent, now) < self.release_after_s:
                    continue
                for conv in a.conversations:
                    h = await self.store.current(conv)
                    if h is None or h.state != "assigned" or h.agent != a.agent or h.unit != code:
                        continue
                    await self.give_back(h, f"离线超过{minutes(self.release_after_s)}分钟")
        for agent in set(self._absent) - seen:
            del self._absent[agent]  # back online, or holding nothing any more

    async def give_back(self, h: Handoff, why: str) -> None:
        """An assigned conversation goes back to its place in its unit's line (the agent left:
        ``why`` says how), the citizen is told, and the next agent sees a note."""
        await self.move(
            h, h.unit, state="transferred", resolution="transferred",
            reason="agent_absent", from_states=("assigned",),
            note=f"原坐席{h.agent_name or ''}{why}，已自动转回队列",
            text="为您服务的工作人员暂时离开，已为您重新排队，"
                 "将由其他工作人员继续为您服务，请稍候。")

    async def _overflow(self, unit: str, now: float) -> None:
        u = self.units[unit]
        for w in await self.queue.waiting(unit):
            if now - w.enqueued_at < u.overflow_after_s:
                break  # FIFO: the rest waited less
            h = await self.store.current(w.conversation)
            if h is None or h.state != "waiting":
                continue
            target = self.units.overflow_target(unit, self._lead.get(h.matter or ""))
            if target is None:
                continue
            await self.move(h, target, state="overflowed", resolution="overflowed",
                            reason="overflow",
                            text=f"{u.name}当前咨询较多，已为您转至{self.unit_name(target)}，请稍候。")

    async def _positions(self, unit: str) -> None:
        u = self.units[unit]
        per = await self.queue.wait_per_position(unit)  # once for the whole line
        for w in await self.queue.waiting(unit):
            channel, user = w.meta.get("channel"), w.meta.get("user")
            if not channel or not user:
                continue
            wait = w.position * per
            status = QueueStatus(state="waiting", unit=unit, unit_name=u.name,
                                 position=w.position, wait_s=int(wait), can_cancel=True)
            await self.notifier.status(channel, user, w.conversation, status,
                                       f"{waiting_text(w.position, wait)}。")

    # -- recovery -----------------------------------------------------------------------------

    async def ensure_queue(self) -> bool:
        """Rebuild the Redis queue from SQL when Redis has lost it; True when it rebuilt."""
        if await self.queue.redis.exists(self._marker):
            return False
        await self.rebuild()
        await self.queue.redis.set(self._marker, repr(self.clock()))
        return True

    async def rebuild(self) -> int:
        rows = await self.store.in_states(("waiting", "assigned"), limit=100_000)
        by_unit: dict[str, tuple[list, list]] = {}
        for h in rows:
            waiting, assigned = by_unit.setdefault(h.unit, ([], []))
            meta = {"channel": h.channel, "user": h.channel_user}
            if h.state == "waiting":
                waiting.append((h.conversation_id, h.requested_at.timestamp(), meta))
            elif h.agent and h.assigned_at:
                assigned.append(AssignedEntry(
                    h.conversation_id, h.requested_at.timestamp(), h.agent,
                    h.assigned_at.timestamp(),
                    h.first_response_at.timestamp() if h.first_response_at else None, meta))
        added = 0
        for unit, (waiting, assigned) in by_unit.items():
            if unit in self.units:
                added += await self.queue.rebuild(unit, waiting, assigned)
                self._dirty.add(unit)
        if added:
            log.warning("rebuilt the human-help queue from SQL: %d entries restored", added)
        return added

    # -- lifecycle ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("human-help sweep failed; retrying", exc_info=True)
            await asyncio.sleep(self.sweep_interval_s)

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="handoff-sweep")

    async def stop(self) -> None:
        self._stopping = True  # a swallowed cancellation still ends the loop
        await cancel_and_wait(self._task)
        self._task = None
