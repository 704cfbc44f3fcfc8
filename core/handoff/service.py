"""Human help (线上人工帮办), the citizen's side: routing, the wait, assignment.

A request for a person goes through core.routing (matter → unit; districts asked with 16 quick
replies; an unknown matter gets a department menu). Inside the unit's working hours the
conversation joins the unit's line (core.queue) and the citizen is told their position and
expected wait, updated live; outside them they are told the hours and leave a message (留言),
which the unit's agents answer on the next working day on the same channel.

Assignment happens at once when the request is stored (so an idle agent is notified within
milliseconds) and again in every process's sweep (core.handoff.sweep: SLA breaches, overflow,
agents gone for good, live positions, rebuilding the Redis queue from SQL). SQL is the truth
throughout: a segment is assigned in SQL by a conditional update after the atomic Redis
assignment, and released from Redis when SQL says the citizen has already gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ..bus import Events
from ..conversations import Conversation
from ..dialog.bot import HOTLINE_LINK, BotReply, Context
from ..dialog.models import Inbound, Outbound, QueueStatus, QuickReply
from ..hours import Units
from ..notify import Notifier
from ..queue import Queue
from ..reference import Matters, load_matters
from ..routing import DISTRICTS, detect_topic, route
from .store import OPEN_STATES, Handoff, HandoffStore
from .sweep import Sweeper, waiting_text

log = logging.getLogger(__name__)

CANCEL = QuickReply(label="取消排队", payload="handoff:cancel")
CANCEL_WORDS = {"取消", "取消排队", "不排了", "不等了", "取消人工", "取消留言"}
#: typed while an agent serves, these still mean the line or the 留言 (a stale button's label
#: typed on a text channel); a bare "取消" may well be an answer to the agent and goes through
SERVING_CANCEL_WORDS = {"取消排队", "取消留言", "取消人工"}
#: a 留言's later lines are acknowledged again (briefly) after this much quiet
LEFT_REACK_AFTER_S = 30 * 60
#: how long the record of a 留言's last line is kept (longer than any closure, 春节 included)
LEFT_TTL_S = 30 * 86400


#: ``Context.pending_handoff`` while a department menu is offered: this, then its unit codes
MENU = "menu:"


def offered_units(ctx: Context) -> list[str]:
    """The units of the department menu the citizen was offered and has not answered yet.
    A ``handoff:unit:…`` quick reply is a choice from that menu, never a way round routing:
    for any other unit (or with no menu offered) it is not understood, like any stale or
    unknown payload, and the bot reads the line instead."""
    pending = ctx.pending_handoff or ""
    return pending.removeprefix(MENU).split(",") if pending.startswith(MENU) else []


class HandoffService(Sweeper):
    """Implements core.dialog.service.HumanHelp; the agent side is core.handoff.desk."""

    def __init__(self, *, store: HandoffStore, queue: Queue, units: Units, notifier: Notifier,
                 events: Events, prefix: str = "bangban:", matters: Matters | None = None,
                 sweep_interval_s: float = 1.0, release_after_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.queue = queue
        self.units = units
        self.notifier = notifier
        self.events = events
        self.matters = matters or load_matters()
        self.clock = clock
        #: channel → whether a 留言 answered later reaches the citizen there (the adapters'
        #: ``answers_later``; set by core.handoff.wiring)
        self.answers_later: Callable[[str], bool] = lambda channel: True
        self._left_key = f"{prefix}handoff:left:"
        super().__init__(prefix=prefix, sweep_interval_s=sweep_interval_s,
                         release_after_s=release_after_s)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def unit_name(self, unit: str | None) -> str:
        if unit and unit in self.units:
            return self.units[unit].name
        return self.matters.units.get(unit or "", unit or "")

    # -- the citizen asks for a person ------------------------------------------------------

    async def request(self, conv: Conversation, ctx: Context, inbound: Inbound
                      ) -> list[BotReply]:
        topic = detect_topic(ctx.last_question) or detect_topic(inbound.text)
        district = inbound.meta.get("district") or ctx.district
        decision = route(ctx.matter, district=district, topic=topic, matters=self.matters)
        if decision.action == "ask_district":
            ctx.pending_handoff = ctx.matter or ""
            options = [QuickReply(label=name, payload=f"handoff:district:{code}")
                       for code, name in decision.choices]
            options.append(QuickReply(label="不确定 / 全市通办", payload="handoff:district:310000"))
            return [BotReply("handoff", "这个事项由各区受理。请问您在哪个区办理？", quick_replies=options)]
        if decision.action == "choose_department":
            # the menu's units, so that only a tap on this menu queues the citizen there
            ctx.pending_handoff = MENU + ",".join(g.unit for g in decision.menu)
            options = [QuickReply(label=g.name[:60], payload=f"handoff:unit:{g.unit}")
                       for g in decision.menu]
            return [BotReply("handoff", "请选择您要咨询的部门，我们为您转接相应的工作人员：",
                             quick_replies=options)]
        return await self.open(conv, ctx, decision.unit, reason=decision.reason,
                               matter=decision.matter, meta={"detail": decision.detail})

    async def on_payload(self, conv: Conversation, ctx: Context, payload: str,
                         inbound: Inbound) -> list[BotReply] | None:
        """``handoff:…`` quick replies in the bot state (district, department, cancel)."""
        _, kind, arg = (payload.split(":", 2) + ["", ""])[:3]
        if kind == "district":
            ctx.district = arg
            return await self.request(conv, ctx, inbound)
        if kind == "unit" and arg in self.units and arg in offered_units(ctx):
            ctx.pending_handoff = None
            return await self.open(conv, ctx, arg, reason="menu", matter=ctx.matter)
        if kind == "cancel":
            return [BotReply("system", "您当前没有在排队。还有其他问题可以继续问小申。")]
        return None

    async def open(self, conv: Conversation, ctx: Context, unit: str, *, reason: str,
                   matter: str | None, previous: Handoff | None = None,
                   meta: dict[str, Any] | None = None) -> list[BotReply]:
        """Start a segment at ``unit``: the line when the unit is open, 留言 when it is not."""
        ctx.pending_handoff = None
        u = self.units[unit]
        now = self.now()
        state = "waiting" if u.is_open(now) else "message"
        if state == "message" and not self.answers_later(conv.channel):
            # a 留言 would be cancelled when this person walks away from the kiosk: say when
            # to come back and where help is now, instead of promising an answer that never comes
            return [BotReply("handoff", f"{u.name}线上人工帮办的服务时间为{u.hours.describe()}，"
                             f"现在不在服务时间，将于{u.opens_text(now)}起恢复。自助终端无法接收之后的答复，"
                             "您可以届时再来，或在“随申办”APP留言，也可以拨打12345市民服务热线"
                             "（7×24小时）。", links=[HOTLINE_LINK])]
        h = await self.store.open(
            conversation_id=conv.id, channel=conv.channel, channel_user=conv.channel_user,
            unit=unit, matter=matter, reason=reason, state=state,
            previous_id=previous.id if previous else None, meta=meta, requested_at=now)
        if state == "message":
            await self.events.publish({"type": "message_left", "unit": unit,
                                       "handoff": h.id, "conversation": conv.id})
            status = QueueStatus(state="message", unit=unit, unit_name=u.name, can_cancel=True)
            return [BotReply("handoff", u.closed_message(now) + "请直接输入您的留言内容。",
                             quick_replies=[QuickReply(label="取消留言", payload="handoff:cancel")],
                             body={"queue": status.model_dump()})]
        joined = await self.queue.enqueue(unit, conv.id, {"channel": conv.channel,
                                                           "user": conv.channel_user},
                                          now=self.clock())
        self._dirty.add(unit)
        await self.events.publish({"type": "queue", "unit": unit, "conversation": conv.id,
                                   "handoff": h.id})
        if joined is not None:
            position, wait = joined.position, joined.wait_s
        else:  # already in the line (a retried request): where it stands now
            position = await self.queue.position(conv.id) or 1
            wait = await self.queue.expected_wait_s(unit, position)
        status = QueueStatus(state="waiting", unit=unit, unit_name=u.name, position=position,
                             wait_s=int(wait), can_cancel=True)
        return [BotReply("handoff", f"已为您接入{u.name}线上人工帮办。{waiting_text(position, wait)}，"
                         "请稍候。",
                         quick_replies=[CANCEL], body={"queue": status.model_dump()})]

    async def after(self, conversation_id: str, replies: list[BotReply]) -> None:
        """Called once the request's replies are stored: when one of them put the citizen in
        a unit's line (its queue status says which), assign now if an agent is free."""
        for reply in replies:
            status = reply.body.get("queue")
            if status and status["state"] == "waiting":
                await self.assign_unit(status["unit"])

    # -- while a person is (about to be) serving ----------------------------------------------

    async def on_citizen(self, conv: Conversation, inbound: Inbound, message: dict[str, Any]
                         ) -> list[BotReply]:
        """A citizen's message while queued / with an agent / leaving a message."""
        h = await self.store.current(conv.id)
        if h is None:
            return []
        said = inbound.text.strip(" 。.!！")
        if h.state in ("waiting", "message") and (
                inbound.payload == "handoff:cancel" or said in CANCEL_WORDS):
            replies = await self.cancel(h)
            if replies:
                return replies
            h = await self.store.current(conv.id)  # taken by an agent in the meantime
            if h is None:
                return []
        await self.events.publish({"type": "citizen_message", "unit": h.unit, "handoff": h.id,
                                   "conversation": conv.id, "agent": h.agent,
                                   "message": message})
        if h.state == "assigned" and (inbound.payload == "handoff:cancel"
                                      or said in SERVING_CANCEL_WORDS):
            # a stale 取消排队 / 取消留言: nothing to cancel any more. The agent sees the line
            # (the citizen may want to stop); the citizen is told why nothing was cancelled.
            return [self._serving_reply(h)]
        if h.state == "message":
            return await self._acknowledge_left(h)
        return []

    def _serving_reply(self, h: Handoff) -> BotReply:
        name = self.unit_name(h.unit)
        status = QueueStatus(state="assigned", unit=h.unit, unit_name=name,
                             agent_name=h.agent_name)
        return BotReply("system", f"{name}工作人员{h.agent_name or ''}已在为您服务，无需再排队等候。"
                        "如不再需要帮助，请直接告诉工作人员，工作人员会为您结束本次服务。",
                        body={"queue": status.model_dump()})

    async def _acknowledge_left(self, h: Handoff) -> list[BotReply]:
        """A line of a 留言: the first is acknowledged in full; later ones only after a quiet
        spell (a citizen typing several lines in a row is not answered line by line)."""
        key = self._left_key + h.id
        now = self.clock()
        pipe = self.queue.redis.pipeline(transaction=True)
        pipe.getset(key, repr(now))
        pipe.expire(key, LEFT_TTL_S)
        previous, _ = await pipe.execute()
        if previous is None:
            return [BotReply("system", f"您的留言已提交，{self.unit_name(h.unit)}工作人员"
                             f"{self._answer_when(h.unit)}通过本渠道答复您。"
                             "如需补充，可以继续输入，补充内容会一并转给工作人员。")]
        if now - float(previous) >= LEFT_REACK_AFTER_S:
            return [BotReply("system", "已收到您的补充内容，工作人员答复时会一并查看。")]
        return []

    def _answer_when(self, unit: str) -> str:
        u = self.units.get(unit)
        if u is None:
            return "将在工作时间"
        at = self.now()
        if u.is_open(at):  # opened since the 留言 began: it is already on the board
            return "将尽快"
        return f"将于{u.opens_text(at)}起"

    async def left_message(self, h: Handoff) -> bool:
        """Whether the citizen has written anything in this 留言 yet."""
        return bool(await self.queue.redis.exists(self._left_key + h.id))

    async def cancel(self, h: Handoff) -> list[BotReply]:
        ended = await self.store.finish(h.id, "cancelled", "cancelled",
                                        from_states=("waiting", "message"), at=self.now())
        if ended is None:  # assigned in the meantime: the agent is already there
            return []
        await self.queue.cancel(h.conversation_id)
        self._dirty.add(h.unit)
        await self.events.publish({"type": "cancelled", "unit": h.unit, "handoff": h.id,
                                   "conversation": h.conversation_id})
        status = QueueStatus(state="cancelled", unit=h.unit, unit_name=self.unit_name(h.unit))
        return [BotReply("system", "已为您取消。还有问题可以继续问小申，或随时再转人工。",
                         body={"queue": status.model_dump()})]

    async def close_segment(self, h: Handoff, resolution: str, *, note: str | None,
                            tell: list[dict[str, Any]], event: dict[str, Any],
                            from_states: tuple[str, ...] = OPEN_STATES,
                            before_tell: Callable[[], Awaitable[None]] | None = None
                            ) -> Handoff | None:
        """End a segment as 'closed': free its place in the line or under the agent's cap,
        tell the citizen (``tell``: Notifier items, the closed status added to the first),
        publish 'closed' (with ``event``), and hand the freed place on. None when it was no
        longer in ``from_states`` (someone else ended it first)."""
        ended = await self.store.finish(h.id, "closed", resolution, note=note,
                                        from_states=from_states, at=self.now())
        if ended is None:
            return None
        if h.agent:
            await self.queue.release(h.agent, h.conversation_id)
        else:
            await self.queue.cancel(h.conversation_id)
        if before_tell is not None:
            await before_tell()
        status = QueueStatus(state="closed", unit=h.unit, unit_name=self.unit_name(h.unit))
        first = {**tell[0], "body": {**tell[0].get("body", {}), "queue": status.model_dump()}}
        await self.notifier.tell_many(h.conversation_id, [first, *tell[1:]])
        await self.events.publish({"type": "closed", "unit": h.unit, "handoff": h.id,
                                   "conversation": h.conversation_id, "agent": h.agent,
                                   "resolution": resolution, **event})
        await self.assign_unit(h.unit)  # the agent has a free place now
        return ended

    async def citizen_left(self, conversation_id: str, *, text: str, note: str) -> None:
        """The citizen is gone for good (a kiosk screen wiped, an account closed): a wait or a
        留言 is cancelled; a conversation with an agent ends as 'no_reply', the agent is told
        (``text`` in the transcript, a 'closed' event with reason citizen_left) and freed."""
        # a few rounds: an agent may take the citizen between our read and our change
        for _ in range(3):
            h = await self.store.current(conversation_id)
            if h is None:
                return
            if h.state in ("waiting", "message"):
                if await self.cancel(h):
                    return
                continue
            if await self.close_segment(h, "no_reply", note=note, from_states=("assigned",),
                                        tell=[{"text": text}],
                                        event={"by": None, "reason": "citizen_left"}):
                return
        log.warning("human help of %s kept changing; left to the agent", conversation_id)

    # -- assignment ---------------------------------------------------------------------------

    async def assign_unit(self, unit: str) -> int:
        """Hand out the unit's line to free agents; returns how many were assigned."""
        n = 0
        while (a := await self.queue.assign(unit, now=self.clock())) is not None:
            n += 1
            self._dirty.add(unit)
            try:
                await self._assigned(a.conversation, a.agent, unit)
            except Exception:
                # the Redis assignment stands; the sweep finishes it once the SLA check sees it
                log.exception("assignment of %s to %s not recorded", a.conversation, a.agent)
        return n

    async def _assigned(self, conversation_id: str, agent: str, unit: str) -> None:
        name = await self.agent_name(agent)
        hid = await self.store.assign_waiting(conversation_id, agent, name, at=self.now())
        if hid is None:
            # the citizen cancelled (or it was handled elsewhere) after joining the line
            await self.queue.release(agent, conversation_id)
            return
        u = self.units[unit]
        await self.events.publish({"type": "assigned", "unit": unit, "handoff": hid,
                                   "conversation": conversation_id, "agent": agent})
        status = QueueStatus(state="assigned", unit=unit, unit_name=u.name, agent_name=name)
        await self.notifier.tell(conversation_id, f"{u.name}工作人员{name}已为您接入，请描述您的问题。",
                                 body={"queue": status.model_dump()})

    #: set by the app: staff user id → display name
    agent_names: Callable[[str], Any] | None = None

    async def agent_name(self, agent: str) -> str:
        if self.agent_names is None:
            return "工作人员"
        return await self.agent_names(agent)

    async def move(self, h: Handoff, target: str, *, state: str, resolution: str, reason: str,
                   text: str, note: str | None = None,
                   from_states: tuple[str, ...] = ("waiting",)) -> Handoff | None:
        """End ``h`` and continue at ``target`` (overflow, or an agent's transfer)."""
        ended = await self.store.finish(h.id, state, resolution, note=note,
                                        from_states=from_states, conversation_status=None,
                                        at=self.now())
        if ended is None:
            return None
        u = self.units[target]
        now = self.now()
        open_now = u.is_open(now)
        new = await self.store.open(
            conversation_id=h.conversation_id, channel=h.channel, channel_user=h.channel_user,
            unit=target, matter=h.matter, reason=reason,
            state="waiting" if open_now else "message", previous_id=h.id, note=note,
            meta={"from": h.unit}, requested_at=now)
        if open_now:
            if await self.queue.transfer(h.conversation_id, target, now=self.clock()) is None:
                await self.queue.enqueue(target, h.conversation_id,
                                         {"channel": h.channel, "user": h.channel_user},
                                         now=self.clock())
        else:
            await self.queue.cancel(h.conversation_id)
        self._dirty.update({h.unit, target})
        await self.events.publish({"type": "transferred", "unit": h.unit, "to": target,
                                   "handoff": h.id, "new": new.id,
                                   "conversation": h.conversation_id})
        status = QueueStatus(state="waiting" if open_now else "message", unit=target,
                             unit_name=u.name, can_cancel=True)
        if not open_now:
            text += u.closed_message(now)
        await self.notifier.tell(h.conversation_id, text, body={
            "queue": status.model_dump(), "quick_replies": [CANCEL.model_dump()]})
        if open_now:
            await self.assign_unit(target)
        await self.assign_unit(h.unit)  # a transferring agent has a free place now
        return new

    async def live_status(self, conversation_id: str) -> Outbound | None:
        """The citizen's current human-help status as a transient Outbound (seq 0), for a
        channel that (re)connects and must not wait for the next change to show it."""
        h = await self.store.current(conversation_id)
        if h is None:
            return None
        name = self.unit_name(h.unit)
        if h.state == "assigned":
            status = QueueStatus(state="assigned", unit=h.unit, unit_name=name,
                                 agent_name=h.agent_name)
            text = f"{name}工作人员{h.agent_name or ''}正在为您服务。"
        elif h.state == "message":
            status = QueueStatus(state="message", unit=h.unit, unit_name=name, can_cancel=True)
            text = "您的留言已提交，工作人员将在工作时间答复您。" if await self.left_message(h) \
                else "当前不在服务时间，请直接输入您的留言内容。"
        else:
            position = await self.queue.position(conversation_id) or 1
            wait = await self.queue.expected_wait_s(h.unit, position)
            status = QueueStatus(state="waiting", unit=h.unit, unit_name=name, position=position,
                                 wait_s=int(wait), can_cancel=True)
            text = f"{waiting_text(position, wait)}。"
        return Outbound(conversation_id=conversation_id, seq=0, sender="system",
                        action="system", text=text, queue=status)


__all__ = ["HandoffService", "CANCEL", "DISTRICTS", "waiting_text"]
