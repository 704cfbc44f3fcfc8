"""The messages at the core's boundary: what adapters hand in and what they get back.

``Inbound`` is one thing a citizen did on a channel (typed text, tapped a quick reply, sent an
image, rated). ``Outbound`` is one message to show them; it always carries plain ``text`` so a
channel that can show nothing richer still says everything, and optionally richer parts (HTML
answer, quick replies, links, cards, a rating request) that adapters render when they can.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: longest citizen message we accept; anything longer gets a 4xx with this limit in the reason
MAX_TEXT = 2000

ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Action = Literal[
    "answer", "clarify", "fallback", "handoff", "out_of_scope", "smalltalk", "greet", "thanks",
    "goodbye", "feedback", "rating", "system", "agent",
]
Sender = Literal["citizen", "bot", "agent", "system"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Attachment(_Model):
    kind: Literal["image", "voice", "file"]
    url: str = Field(max_length=2048)
    mime: str = Field(max_length=100)
    size: int = Field(ge=0)
    name: str | None = Field(None, max_length=200)


class Inbound(_Model):
    """One citizen action on a channel, as the adapter understood it."""

    channel: ChannelName
    #: the channel's identity for the citizen: WeChat openid, Alipay user id, app user, web
    #: cookie id, kiosk session; mapped to a citizen id by the core
    channel_user: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    kind: Literal["text", "quick_reply", "event", "image", "voice"] = "text"
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT)] = ""
    #: payload of a tapped quick reply (e.g. ``pick:M03-faq-02``, ``resolved:yes``)
    payload: Annotated[str, StringConstraints(max_length=200)] | None = None
    #: the channel's message id, for de-duplicating platform retries
    msg_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    attachments: list[Attachment] = Field(default_factory=list, max_length=10)
    received_at: datetime = Field(default_factory=utcnow)
    #: what the channel knows about the citizen (e.g. ``district``: 310104, ``audience``)
    meta: dict[str, str] = Field(default_factory=dict, max_length=20)


class QuickReply(_Model):
    label: Annotated[str, StringConstraints(min_length=1, max_length=60)]
    payload: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Link(_Model):
    title: str
    url: str


class Card(_Model):
    title: str
    text: str = ""
    url: str | None = None
    image_url: str | None = None


class RatingRequest(_Model):
    """Ask the citizen to rate a service segment (好差评)."""

    segment: Literal["bot", "agent"]
    prompt: str
    #: what is rated: the bot answer's message id, or the agent service's id
    target: str
    #: 已解决 / 未解决 first (bot), or the five satisfaction levels (agent)
    options: list[QuickReply] = Field(default_factory=list)


class QueueStatus(_Model):
    """Where a citizen stands in human help (线上人工帮办), for channels that can show it live.

    Sent in a *transient* Outbound (``seq`` 0, not stored) whenever the position changes, and in
    the stored messages that start, move or end the wait. Channels that cannot update a status
    line in place ignore transient messages: the stored ones already say everything in text.
    """

    state: Literal["routing", "waiting", "message", "assigned", "closed", "cancelled"]
    unit: str | None = None
    unit_name: str | None = None
    #: 1 = next to be served (state "waiting")
    position: int | None = None
    #: expected wait in seconds (state "waiting"); an estimate from the unit's recent pace
    wait_s: int | None = None
    #: the agent's display name (state "assigned")
    agent_name: str | None = None
    #: whether the citizen may cancel now (waiting / message)
    can_cancel: bool = False


class AnswerMeta(_Model):
    """Why the bot said what it said (for `bangban ask --json`, eval and analytics)."""

    entry_id: str | None = None
    entry_type: str | None = None
    matters: list[str] = Field(default_factory=list)
    confidence: float = 0.0
    intent: str | None = None
    suggestions: list[str] = Field(default_factory=list)


class Outbound(_Model):
    """One message to the citizen."""

    conversation_id: str = ""
    message_id: str = ""
    seq: int = 0
    sender: Sender = "bot"
    action: Action
    text: str
    #: sanitised HTML of a KB answer, for channels that show rich text
    html: str | None = None
    quick_replies: list[QuickReply] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    cards: list[Card] = Field(default_factory=list)
    rating: RatingRequest | None = None
    #: images / voice sent by an agent (or, in the citizen's own echo, by the citizen)
    attachments: list[Attachment] = Field(default_factory=list)
    #: display name of the person who wrote it (sender "agent"); never a staff username
    sender_name: str | None = None
    #: human help status (see QueueStatus); seq 0 means a transient status update
    queue: QueueStatus | None = None
    meta: AnswerMeta = Field(default_factory=AnswerMeta)
    created_at: datetime = Field(default_factory=utcnow)

    def plain_text(self, *, numbered_replies: bool = True) -> str:
        """Everything as text, for channels that show nothing else (quick replies numbered)."""
        parts = [self.text]
        parts.extend(f"{link.title}: {link.url}" for link in self.links)
        for card in self.cards:
            parts.append("\n".join(p for p in (card.title, card.text, card.url) if p))
        if self.quick_replies and numbered_replies:
            menu = "\n".join(f"{i}. {q.label}" for i, q in enumerate(self.quick_replies, 1))
            numbers = "、".join(str(i) for i in range(1, len(self.quick_replies) + 1))
            parts.append(f"{menu}\n（回复 {numbers} 选择）")
        return "\n\n".join(p for p in parts if p)
