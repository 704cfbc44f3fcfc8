"""Human help, the agent's side: presence, the board, replies, close, transfer, 派单, 留言.

Every action takes the signed-in :class:`~core.staff.StaffUser` and checks it against the
service segment's unit before doing anything: an agent can never read or act on another unit's
conversation, whichever URL or socket message they try (:class:`~core.errors.Forbidden`, 403).
Admins see every unit; supervisors see their units' conversations and may close or transfer
them, but only the agent holding a conversation replies in it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ..conversations import ConversationStore, StoredMessage
from ..db.schema import kb_candidates, messages
from ..dialog.models import Attachment, Outbound, QueueStatus
from ..errors import Conflict, Forbidden, NotFound, ValidationFailed
from ..staff import StaffUser
from .rating import rating_context, rating_request
from .service import HandoffService
from .steering import flags
from .store import RESOLUTIONS, Handoff, utcnow

log = logging.getLogger(__name__)

MAX_REPLY = 2000
#: how many messages 纳入知识库 looks back through for the citizen's question
QUESTION_LOOKBACK = 200
#: what an agent may pick when closing (dispatched/transferred have their own actions)
CLOSE_RESOLUTIONS = {"resolved": "已解决", "unresolved": "未解决", "no_reply": "群众未回复"}


class BannedPhrase(ValidationFailed):
    """An agent's message contains a banned phrase (禁语); it was not sent."""

    code = "banned_phrase"

    def __init__(self, phrase: str, category: str, reason: str, *, start: int | None = None,
                 end: int | None = None) -> None:
        super().__init__(f"消息含有禁语“{phrase}”（{category}）：{reason}",
                         [("message", "text", phrase)])
        self.phrase, self.category, self.reason = phrase, category, reason
        #: where it stands in the text that was checked (the stripped message), to highlight
        self.start, self.end = start, end


class PhraseChecker(Protocol):
    def find(self, text: str) -> Any: ...


Dispatcher = Callable[..., Awaitable[dict[str, Any]]]


class AgentDesk:
    def __init__(self, service: HandoffService, conversations: ConversationStore, *,
                 contexts: Any, banned: PhraseChecker | None = None,
                 dispatcher: Dispatcher | None = None) -> None:
        self.service = service
        self.store = service.store
        self.queue = service.queue
        self.conversations = conversations
        #: the DialogService (load_context / save_context), for the rating flow
        self.contexts = contexts
        self.banned = banned
        #: None when 12345 dispatch is not configured
        self.dispatcher = dispatcher

    # -- access -------------------------------------------------------------------------------

    @staticmethod
    def units_of(user: StaffUser) -> list[str] | None:
        """The units whose conversations the user may see; None = all (admin)."""
        return None if user.has_role("admin") else list(user.units)

    def check(self, user: StaffUser, h: Handoff) -> None:
        if user.has_role("admin"):
            return
        if not (user.has_role("agent", "supervisor") and user.in_unit(h.unit)):
            raise Forbidden("这是其他单位的会话，您无权查看或处理")

    async def get(self, user: StaffUser, handoff_id: str) -> Handoff:
        h = await self.store.get(handoff_id)
        self.check(user, h)
        return h

    def _holder(self, user: StaffUser, h: Handoff) -> None:
        if h.state != "assigned" or h.agent != user.id:
            raise Conflict("这个会话不在您的接待中" if h.is_open else "这个会话已经结束")

    def _holder_or_supervisor(self, user: StaffUser, h: Handoff) -> None:
        # ended first: an agent acting on a conversation they closed in another tab is told it
        # has ended (as /send and a supervisor are), not that they lack the right
        if not h.is_open:
            raise Conflict("这个会话已经结束")
        if h.agent == user.id and h.state == "assigned":
            return
        if not user.has_role("supervisor", "admin"):
            raise Forbidden("只有接待中的坐席或本单位班长可以这样做")

    # -- presence -----------------------------------------------------------------------------

    async def heartbeat(self, user: StaffUser, status: str = "online", *,
                        cap: int | None = None) -> list[str]:
        units = [u for u in user.units if u in self.service.units]
        if not user.has_role("agent") or not units:
            return []
        await self.queue.heartbeat(user.id, units, status, cap=cap, now=self.service.clock())
        if status == "online":
            for unit in units:
                await self.service.assign_unit(unit)
        return units

    async def sign_out(self, user: StaffUser) -> int:
        """The agent signed out of their last session: offline at once, and every conversation
        they hold goes back to its place in its unit's line now, not ``release_after_s``
        later. Returns how many were given back."""
        await self.queue.sign_out(user.id)
        held = await self.store.in_states(("assigned",), agent=user.id)
        for h in held:
            await self.service.give_back(h, "已退出登录")
        if held:
            log.info("agent %s signed out: %d conversations back in line", user.username,
                     len(held))
        return len(held)

    # -- reading ------------------------------------------------------------------------------

    async def board(self, user: StaffUser) -> dict[str, Any]:
        """What the workspace lists: my conversations, my units' line, 留言, SLA breaches."""
        units = self.units_of(user)
        mine = await self.store.in_states(("assigned",), agent=user.id)
        waiting = await self.store.in_states(("waiting",), units=units)
        left = await self.store.in_states(("message",), units=units)
        breached = await self.store.breached_open(units)
        return {"mine": [h.public() for h in mine], "waiting": [h.public() for h in waiting],
                "messages": [h.public() for h in left],
                "breaches": [h.public() for h in breached]}

    async def transcript(self, user: StaffUser, handoff_id: str, *, after: int = 0
                         ) -> tuple[Handoff, list[Outbound]]:
        """The segment and the citizen's whole conversation, the bot's part included."""
        h, history = await self.history(user, handoff_id, after=after)
        return h, [m.to_outbound() for m in history]

    async def history(self, user: StaffUser, handoff_id: str, *, after: int = 0
                      ) -> tuple[Handoff, list[StoredMessage]]:
        """As :meth:`transcript`, but the messages as stored: a citizen's line keeps the
        payload of the quick reply it was (see :func:`.steering.steering`)."""
        h = await self.get(user, handoff_id)
        return h, await self.conversations.history(h.conversation_id, after=after, limit=1000)

    # -- acting -------------------------------------------------------------------------------

    async def send(self, user: StaffUser, handoff_id: str, text: str,
                   attachments: list[Attachment] | None = None) -> Outbound:
        h = await self.get(user, handoff_id)
        self._holder(user, h)
        text = (text or "").strip()
        if not text and not attachments:
            raise ValidationFailed("消息不能为空", [("message", "text", "empty")])
        if len(text) > MAX_REPLY:
            raise ValidationFailed(f"消息过长（最多{MAX_REPLY}字）", [("message", "text", "too long")])
        if text and self.banned is not None and (hit := self.banned.find(text)) is not None:
            raise BannedPhrase(hit.phrase, hit.category, hit.reason,
                               start=getattr(hit, "start", None), end=getattr(hit, "end", None))
        out = await self.service.notifier.tell(
            h.conversation_id, text, sender="agent", action="agent",
            kind="image" if attachments and not text else "text",
            body={"sender_name": h.agent_name or user.display_name,
                  "attachments": [a.model_dump() for a in attachments or []],
                  "meta": {"matters": [h.matter] if h.matter else []}})
        if await self.store.first_response(h.id, self.service.now()):
            await self.queue.mark_first_response(h.conversation_id, now=self.service.clock())
            # answered late between two sweeps: still a breach, as the figures will count it
            await self.service.breached_at_first_reply(h)
        await self.service.events.publish({
            "type": "agent_message", "unit": h.unit, "handoff": h.id,
            "conversation": h.conversation_id, "agent": user.id,
            "message": out.model_dump(mode="json")})
        return out

    async def close(self, user: StaffUser, handoff_id: str, resolution: str,
                    note: str | None = None) -> Handoff:
        if resolution not in CLOSE_RESOLUTIONS:
            raise ValidationFailed(f"结案类型必须是 {', '.join(CLOSE_RESOLUTIONS)} 之一",
                                   [("close", "resolution", resolution)])
        h = await self.get(user, handoff_id)
        self._holder_or_supervisor(user, h)
        return await self._end(h, resolution, note, by=user)

    async def _end(self, h: Handoff, resolution: str, note: str | None, *, by: StaffUser,
                   text: str | None = None) -> Handoff:
        unit_name = self.service.unit_name(h.unit)

        async def await_rating() -> None:
            # before the request is sent, so the citizen's first tap already finds it
            ctx = await self.contexts.load_context(h.conversation_id)
            ctx.rating = rating_context(h.id, h.unit, h.agent)
            ctx.options = [f"rate:{n}" for n in (1, 2, 3, 4, 5)]
            await self.contexts.save_context(h.conversation_id, ctx)

        ended = await self.service.close_segment(
            h, resolution, note=note, before_tell=await_rating, event={"by": by.id}, tell=[
                {"text": text or f"{unit_name}本次人工服务已结束。"},
                {"action": "rating", "text": "请为本次服务评价：5 非常满意，4 满意，3 基本满意，"
                                             "2 不满意，1 非常不满意。",
                 "body": rating_request(h.id, unit_name)}])
        if ended is None:
            raise Conflict("这个会话已经结束")
        return ended

    async def transfer(self, user: StaffUser, handoff_id: str, to_unit: str,
                       note: str | None = None) -> Handoff:
        h = await self.get(user, handoff_id)
        self._holder_or_supervisor(user, h)
        if to_unit not in self.service.units:
            raise ValidationFailed(f"未知单位 {to_unit!r}", [("transfer", "unit", to_unit)])
        if to_unit == h.unit:
            raise ValidationFailed("不能转给本单位", [("transfer", "unit", to_unit)])
        name = self.service.unit_name(to_unit)
        if not self.service.units[to_unit].is_open(self.service.now()) \
                and not self.service.answers_later(h.channel):
            # it would become a 留言 that ends with the citizen's kiosk session, unanswered
            raise Conflict(f"{name}现在不在服务时间，而群众在自助终端咨询，无法留言等候答复；"
                           "请直接答复，或派单到12345")
        new = await self.service.move(
            h, to_unit, state="transferred", resolution="transferred", reason="transfer",
            note=(note or "").strip()[:2000] or None, from_states=("assigned", "waiting", "message"),
            text=f"您的问题需要由{name}解答，已为您转接，请稍候。")
        if new is None:
            raise Conflict("这个会话已经结束或已被转出")
        return new

    async def claim(self, user: StaffUser, handoff_id: str) -> Handoff:
        """Take a 留言 (left outside hours) to answer it now."""
        h = await self.get(user, handoff_id)
        if not user.has_role("agent"):
            raise Forbidden("只有坐席可以接待留言")
        if h.state != "message":
            raise Conflict("这条留言已被处理")
        name = user.display_name
        if not await self.store.assign(h.id, user.id, name, from_states=("message",),
                                       at=self.service.now()):
            raise Conflict("这条留言已被其他坐席接待")
        await self.service.events.publish({"type": "assigned", "unit": h.unit, "handoff": h.id,
                                           "conversation": h.conversation_id, "agent": user.id})
        status = QueueStatus(state="assigned", unit=h.unit,
                             unit_name=self.service.unit_name(h.unit), agent_name=name)
        await self.service.notifier.tell(
            h.conversation_id, f"{status.unit_name}工作人员{name}已查看您的留言，正在为您解答。",
            body={"queue": status.model_dump()})
        return await self.store.get(h.id)

    async def dispatch(self, user: StaffUser, handoff_id: str, *, summary: str,
                       contact: str | None = None, idempotency_key: str | None = None
                       ) -> dict[str, Any]:
        """派单: a 12345 ticket from this conversation, then the service ends as dispatched."""
        h = await self.get(user, handoff_id)
        self._holder_or_supervisor(user, h)
        if self.dispatcher is None:
            raise Conflict("未配置12345派单接口（dispatch.endpoint），请联系管理员")
        _, history = await self.transcript(user, handoff_id)
        transcript = [{"seq": m.seq, "sender": m.sender, "text": m.text,
                       "at": m.created_at.isoformat()} for m in history]  # aware: UtcDateTime
        ticket = await self.dispatcher(conversation_id=h.conversation_id, unit=h.unit,
                                       summary=summary, transcript=transcript,
                                       citizen_contact=contact,
                                       idempotency_key=idempotency_key or f"h-{h.id}")
        await self._end(h, "dispatched", f"12345派单 {ticket['id']}", by=user, text=(
            "您的问题已转交12345市民服务热线办理（派单编号 "
            f"{ticket['id']}），受理后的工单号和办理进展会通过本渠道告知您。"))
        return ticket

    async def propose(self, user: StaffUser, handoff_id: str, message_id: str,
                      question: str | None = None) -> int:
        """"纳入知识库": keep an agent's answer as a candidate entry for KB operators."""
        h = await self.get(user, handoff_id)
        async with self.store.engine.connect() as conn:
            msg = (await conn.execute(select(messages).where(
                messages.c.id == message_id,
                messages.c.conversation_id == h.conversation_id))).mappings().first()
            if msg is None or msg["sender"] != "agent":
                raise NotFound("没有这条坐席答复")
            if not question:
                question = await self._question_before(conn, h.conversation_id, msg["seq"])
        if not question.strip():
            raise ValidationFailed("请填写这条答复对应的问题", [("candidate", "question", "empty")])
        try:
            async with self.store.engine.begin() as conn:
                res = await conn.execute(insert(kb_candidates).values(
                    conversation_id=h.conversation_id, message_id=message_id,
                    question=question.strip()[:2000], answer=msg["text"], matter=h.matter,
                    unit=h.unit, proposed_by=user.id, status="candidate",
                    created_at=utcnow()).returning(kb_candidates.c.id))
                return res.scalar_one()
        except IntegrityError as exc:
            raise Conflict("这条答复已经提交过") from exc

    async def proposed(self, message_ids: list[str]) -> set[str]:
        """Which of these agent messages are already KB candidates (纳入知识库 done): the
        workspace shows them as submitted after a reload instead of offering them again."""
        if not message_ids:
            return set()
        async with self.conversations.engine.connect() as conn:
            return set((await conn.execute(select(kb_candidates.c.message_id).where(
                kb_candidates.c.message_id.in_(message_ids)))).scalars())

    @staticmethod
    async def _question_before(conn: Any, conversation_id: str, seq: int) -> str:
        """The citizen's real question before message ``seq``: their last line that does more
        than steer (not 转人工, a menu number, the department they tapped, a rating …), or ''."""
        rows = (await conn.execute(
            select(messages.c.sender, messages.c.action, messages.c.text, messages.c.body).where(
                messages.c.conversation_id == conversation_id, messages.c.seq < seq)
            .order_by(messages.c.seq.desc()).limit(QUESTION_LOOKBACK))).all()
        rows.reverse()  # oldest first, as flags() reads a line with the bot's reply after it
        asked = [r.text for r, only_steers in zip(rows, flags(rows), strict=True)
                 if r.sender == "citizen" and r.text and not only_steers]
        return asked[-1] if asked else ""


__all__ = ["AgentDesk", "BannedPhrase", "CLOSE_RESOLUTIONS", "RESOLUTIONS"]
