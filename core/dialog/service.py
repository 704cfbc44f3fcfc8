"""Running conversations: de-duplication, the SQL record, live context, the bot, fan-out.

``DialogService.handle`` is what every adapter calls with an ``Inbound``. It stores the
citizen's message and the replies (SQL first: it is the truth), keeps the live context in Redis
with a TTL, records unanswered questions, and publishes everything on the bus so other tabs,
long-polls and (later) the agent workspace see it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis

from ..bus import Bus
from ..conversations import Conversation, ConversationStore, StoredMessage
from ..conversations import new_id
from ..ratings import RatingStore
from ..nlu.text import numbered_choice
from .bot import HOTLINE_LINK, HUMAN_REPLY, RESOLVED, Bot, BotReply, Context
from .models import Inbound, Outbound, RatingRequest

log = logging.getLogger(__name__)

#: conversation states in which a person, not the bot, answers
HUMAN_STATES = ("queued", "agent", "message")
#: a retried platform message id is recognised for this long
DEDUP_TTL_S = 24 * 3600


class HumanHelp(Protocol):
    """What happens when a citizen asks for a person (线上人工帮办).

    ``request`` answers the request itself; ``on_payload`` takes ``handoff:…`` quick replies
    (district, department, cancel); ``on_citizen`` sees every message while a person is (about
    to be) serving; ``after`` runs once the replies are stored, with them (assignment may
    notify at once).
    """

    async def request(self, conv: Conversation, ctx: Context, inbound: Inbound
                      ) -> list[BotReply]: ...

    async def on_payload(self, conv: Conversation, ctx: Context, payload: str,
                         inbound: Inbound) -> list[BotReply] | None: ...

    async def on_citizen(self, conv: Conversation, inbound: Inbound, message: dict
                         ) -> list[BotReply]: ...

    async def after(self, conversation_id: str, replies: list[BotReply]) -> None: ...


class HotlineReferral:
    """Human help where no agent desk is connected: say how to reach a person by phone.

    The 12345 hotline takes every government-service question; the matter's own department
    line is added when the KB has one.
    """

    async def request(self, conv: Conversation, ctx: Context, inbound: Inbound
                      ) -> list[BotReply]:
        return [BotReply(
            "handoff",
            "线上人工帮办暂未接入本渠道。您可以拨打12345市民服务热线（7×24小时）咨询，"
            "工作人员会为您解答或转交相关部门。",
            links=[HOTLINE_LINK])]

    async def on_payload(self, conv: Conversation, ctx: Context, payload: str,
                         inbound: Inbound) -> list[BotReply] | None:
        return None

    async def on_citizen(self, conv: Conversation, inbound: Inbound, message: dict
                         ) -> list[BotReply]:
        return []

    async def after(self, conversation_id: str, replies: list[BotReply]) -> None:
        return None


@dataclass
class HandleResult:
    conversation_id: str
    #: sequence number of the citizen's own message (0 for a duplicate)
    seq: int
    replies: list[Outbound] = field(default_factory=list)
    duplicate: bool = False


def _reply_item(reply: BotReply) -> dict:
    message_id = new_id("m")
    rating = None
    if reply.rate:
        rating = RatingRequest(segment="bot", prompt="这个回答解决您的问题了吗？",
                               target=message_id, options=list(RESOLVED)).model_dump()
    body = {"html": reply.html,
            "quick_replies": [q.model_dump() for q in reply.quick_replies],
            "links": [link.model_dump() for link in reply.links],
            "rating": rating,
            "meta": reply.meta.model_dump(),
            **reply.body}
    return {"id": message_id, "sender": "bot", "kind": "text", "action": reply.action,
            "text": reply.text, "body": {k: v for k, v in body.items() if v}}


class DialogService:
    def __init__(self, conversations: ConversationStore, bot: Bot, redis: aioredis.Redis,
                 bus: Bus, *, prefix: str = "bangban:", human: HumanHelp | None = None,
                 context_ttl_s: int = 1800, ratings: RatingStore | None = None) -> None:
        # imported here: core.handoff depends on this module's protocol
        from ..handoff.rating import RatingFlow

        self.conversations = conversations
        self.bot = bot
        self.redis = redis
        self.bus = bus
        self.prefix = prefix
        self.human = human or HotlineReferral()
        self.context_ttl_s = context_ttl_s
        self.ratings = ratings
        self.rating_flow = RatingFlow(ratings) if ratings is not None else None

    # -- live context -------------------------------------------------------------------------
    def _ctx_key(self, conversation_id: str) -> str:
        return f"{self.prefix}ctx:{conversation_id}"

    async def load_context(self, conversation_id: str) -> Context:
        raw = await self.redis.get(self._ctx_key(conversation_id))
        if raw:
            try:
                return Context.model_validate_json(raw)
            except ValueError:
                log.warning("discarding unreadable context of %s", conversation_id)
        return Context()

    async def save_context(self, conversation_id: str, ctx: Context) -> None:
        await self.redis.set(self._ctx_key(conversation_id), ctx.model_dump_json(),
                             ex=self.context_ttl_s)

    async def forget_context(self, conversation_id: str) -> None:
        """Drop the live context (last question, offered options) of an ended conversation."""
        await self.redis.delete(self._ctx_key(conversation_id))

    # -- the one entry point ------------------------------------------------------------------
    async def handle(self, inbound: Inbound) -> HandleResult:
        dedup_key = f"{self.prefix}dedup:{inbound.channel}:{inbound.msg_id}"
        if inbound.msg_id and not await self.redis.set(dedup_key, 1, nx=True, ex=DEDUP_TTL_S):
            conv = await self.conversations.current(inbound.channel, inbound.channel_user)
            return HandleResult(conv.id, 0, duplicate=True)
        try:
            return await self._handle(inbound)
        except BaseException:
            # not processed: the platform's retry must be handled, not dropped as a duplicate
            if inbound.msg_id:
                try:
                    await self.redis.delete(dedup_key)
                except Exception:
                    log.warning("could not release the de-duplication key %s", dedup_key)
            raise

    async def _handle(self, inbound: Inbound) -> HandleResult:
        conv = await self.conversations.current(inbound.channel, inbound.channel_user)
        citizen_item = {
            "sender": "citizen", "kind": inbound.kind, "action": None, "text": inbound.text,
            "channel_msg_id": inbound.msg_id,
            "body": {k: v for k, v in {
                "payload": inbound.payload,
                "attachments": [a.model_dump() for a in inbound.attachments],
                "channel_meta": inbound.meta or None,
            }.items() if v},
        }
        if conv.status in HUMAN_STATES:
            # a person is (about to be) serving this citizen: the bot stays quiet
            stored = await self.conversations.append(conv.id, inbound.channel, [citizen_item])
            await self._publish(inbound, stored)
            replies = await self.human.on_citizen(
                conv, inbound, stored[0].to_outbound().model_dump(mode="json"))
            if not replies:
                return HandleResult(conv.id, stored[0].seq)
            more = await self.conversations.append(conv.id, inbound.channel,
                                                   list(map(_reply_item, replies)))
            outs = [m.to_outbound() for m in more]
            await self.bus.publish(inbound.channel, inbound.channel_user, outs)
            return HandleResult(conv.id, stored[0].seq, outs)

        ctx = await self.load_context(conv.id)
        rated_message = ctx.last_answer_message
        replies = await self._steps(conv, ctx, inbound)
        handed_off = any(r.handoff for r in replies)
        if handed_off:
            replies += await self.human.request(conv, ctx, inbound)
        offered = [r for r in replies if r.quick_replies]
        if offered:
            ctx.options = [q.payload for q in offered[-1].quick_replies]

        stored = await self.conversations.append(
            conv.id, inbound.channel, [citizen_item, *map(_reply_item, replies)],
            matter=ctx.matter if ctx.matter != conv.matter else False)
        outs = [m.to_outbound() for m in stored[1:]]
        for reply, out in zip(replies, outs, strict=True):
            if reply.rate:
                ctx.last_answer_message = out.message_id
            if reply.rated is not None and rated_message and self.ratings is not None:
                # 好差评 of the bot segment: one rating per answer, a second tap updates it
                await self.ratings.record(conversation_id=conv.id, segment="bot",
                                          target=rated_message, channel=inbound.channel,
                                          resolved=reply.rated)
            if reply.unanswered:
                question = inbound.text if reply.unanswered == "fallback" else (
                    ctx.last_question or inbound.text)
                await self.conversations.record_unanswered(
                    conv.id, stored[0].id, question, reply.unanswered, matter=ctx.matter,
                    entry_id=reply.meta.entry_id)
        await self.save_context(conv.id, ctx)
        await self._publish(inbound, stored, outs)
        if handed_off or any(r.action == "handoff" for r in replies):
            await self.human.after(conv.id, replies)
        return HandleResult(conv.id, stored[0].seq, outs)

    async def _steps(self, conv: Conversation, ctx: Context, inbound: Inbound) -> list[BotReply]:
        """Rating flow and human-help choices first; then the bot."""
        payload = inbound.payload
        choice = numbered_choice(inbound.text) if not payload else None
        if choice is not None and choice <= len(ctx.options) and \
                ctx.options[choice - 1].startswith(("rate:", "handoff:")):
            payload = ctx.options[choice - 1]  # "2" on a text-only channel = the 2nd button
        if self.rating_flow is not None and (ctx.rating or (payload or "").startswith("rate:")):
            replies = await self.rating_flow.step(conv.id, inbound.channel, ctx, inbound, payload)
            if replies is not None:
                return replies
        if payload and payload.startswith("handoff:"):
            replies = await self.human.on_payload(conv, ctx, payload, inbound)
            if replies is not None:
                return replies
        return self._respond(inbound, ctx)

    def _respond(self, inbound: Inbound, ctx: Context) -> list[BotReply]:
        if inbound.kind in ("image", "voice") and not inbound.text:
            return [BotReply("system", "小申目前只能看懂文字消息。如需发送截图或语音，"
                             "请转线上人工帮办，工作人员会为您查看。",
                             quick_replies=[HUMAN_REPLY])]
        if inbound.kind == "event" and not inbound.text:
            return [BotReply("greet", "您好，我是“一网通办”智能客服小申，请问有什么可以帮您？")]
        return [self.bot.respond(inbound.text, ctx, inbound.payload)]

    async def _publish(self, inbound: Inbound, stored: list[StoredMessage],
                       outs: list[Outbound] | None = None) -> None:
        items = [stored[0].to_outbound()] + (outs or [])
        await self.bus.publish(inbound.channel, inbound.channel_user, items)

    # -- reading ------------------------------------------------------------------------------
    async def history(self, channel: str, channel_user: str, *, after: int = 0
                      ) -> tuple[str | None, list[Outbound]]:
        conv = await self.conversations.current(channel, channel_user, create=False)
        if conv is None:
            return None, []
        return conv.id, [m.to_outbound() for m in
                         await self.conversations.history(conv.id, after=after)]
