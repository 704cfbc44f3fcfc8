"""好差评 of a human service, asked the same way on every channel.

When an agent closes a service the citizen gets a rating request: five levels as quick replies
(channels with buttons show buttons; text-only channels show "回复1-5", and the numbered menu
lists the levels in the same order, 1 = 非常不满意 … 5 = 非常满意, so "1" means the same in
both readings). Then 已解决 / 未解决, then an optional comment. Each answer updates the one rating
row of that service segment (core.ratings), so a citizen who stops half-way still counts with
what they gave. Anything that is not an answer to the current step ends the rating flow and is
treated as a new question for the bot: a citizen is never trapped in a survey.
"""

from __future__ import annotations

from typing import Any

from ..dialog.bot import BotReply, Context
from ..dialog.models import Inbound, QuickReply, RatingRequest
from ..ratings import LEVELS, TEXT_PROMPT, RatingStore, parse_text_rating, parse_text_resolved

LEVEL_OPTIONS = [QuickReply(label=LEVELS[n], payload=f"rate:{n}") for n in (1, 2, 3, 4, 5)]
RESOLVED_OPTIONS = [QuickReply(label="已解决", payload="rate:resolved:yes"),
                    QuickReply(label="未解决", payload="rate:resolved:no")]
SKIP = QuickReply(label="不用了", payload="rate:done")
#: the longest free text taken as a comment (longer input is still stored, cut to this)
MAX_COMMENT = 500


def rating_request(handoff_id: str, unit_name: str) -> dict[str, Any]:
    """The stored body of the request sent when an agent closes a service."""
    req = RatingRequest(segment="agent", prompt=f"请为{unit_name}本次人工服务评价：",
                        target=handoff_id, options=LEVEL_OPTIONS)
    return {"rating": req.model_dump(), "quick_replies": [q.model_dump() for q in LEVEL_OPTIONS]}


def rating_context(handoff_id: str, unit: str, agent: str | None) -> dict[str, Any]:
    return {"target": handoff_id, "unit": unit, "agent": agent, "stage": "level"}


class RatingFlow:
    def __init__(self, ratings: RatingStore) -> None:
        self.ratings = ratings

    async def step(self, conversation_id: str, channel: str, ctx: Context, inbound: Inbound,
                   payload: str | None) -> list[BotReply] | None:
        """The reply to one step of the flow, or None when the message is not part of it."""
        state = ctx.rating
        if not state:
            if payload and payload.startswith("rate:"):
                return [BotReply("rating", "这次服务已经评价过了，感谢您的反馈。")]
            return None
        stage, text = state.get("stage"), inbound.text
        seg = {"conversation_id": conversation_id, "segment": "agent",
               "target": state["target"], "unit": state.get("unit"),
               "agent": state.get("agent"), "channel": channel}
        if stage == "level":
            level = None
            if payload and payload.startswith("rate:") and payload[5:].isdigit():
                level = int(payload[5:])
            elif not payload:
                level = parse_text_rating(text)
            if level is None or level not in LEVELS:
                ctx.rating = None
                return None
            await self.ratings.record(**seg, level=level)
            state["stage"] = "resolved"
            ctx.options = [q.payload for q in RESOLVED_OPTIONS]
            return [BotReply("rating", f"已记录您的评价：{LEVELS[level]}。请问您的问题解决了吗？",
                             quick_replies=list(RESOLVED_OPTIONS))]
        if stage == "resolved":
            resolved = None
            if payload in ("rate:resolved:yes", "rate:resolved:no"):
                resolved = payload.endswith("yes")
            elif not payload:
                resolved = parse_text_resolved(text)
            if resolved is None:
                ctx.rating = None
                return None
            row = await self.ratings.record(**seg, resolved=resolved)
            state["stage"] = "comment"
            ctx.options = [SKIP.payload]
            extra = "我们会跟进改进。" if row.get("followup_id") else ""
            return [BotReply("rating", f"感谢您的反馈！{extra}如有意见或建议，可直接输入（可选）。",
                             quick_replies=[SKIP])]
        if stage == "comment":
            ctx.rating = None
            if payload == SKIP.payload:
                return [BotReply("rating", "感谢您的评价！还有问题可以继续问小申。")]
            if payload or not text.strip():
                return None
            await self.ratings.record(**seg, comment=text.strip()[:MAX_COMMENT])
            return [BotReply("rating", "已收到您的意见，感谢您的评价！")]
        ctx.rating = None
        return None


__all__ = ["RatingFlow", "rating_request", "rating_context", "LEVEL_OPTIONS", "TEXT_PROMPT"]
