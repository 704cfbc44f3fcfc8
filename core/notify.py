"""Telling a citizen something outside their own request: an agent's reply, a queue update,
12345's progress on a ticket, a rating request.

Stored first (SQL is the truth, and a channel that was offline catches up from it), then
published on the bus so whichever process holds the citizen's connection delivers it.
Transient status updates (queue position) are published only: they are not part of the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .bus import Bus
from .conversations import ConversationStore, new_id
from .dialog.models import Action, Outbound, QueueStatus, Sender


class Notifier:
    def __init__(self, conversations: ConversationStore, bus: Bus) -> None:
        self.conversations = conversations
        self.bus = bus

    async def tell(self, conversation_id: str, text: str, *, sender: Sender = "system",
                   action: Action = "system", kind: str = "text",
                   body: dict[str, Any] | None = None) -> Outbound:
        """Store one message in the conversation and deliver it on the citizen's channel.

        ``body`` holds the richer Outbound parts (quick_replies, links, rating, attachments,
        sender_name, queue …) as plain dicts, exactly as stored.
        """
        return (await self.tell_many(conversation_id, [
            {"sender": sender, "action": action, "kind": kind, "text": text,
             "body": body or {}}]))[0]

    async def tell_many(self, conversation_id: str, items: Sequence[dict[str, Any]]
                        ) -> list[Outbound]:
        (channel, channel_user), stored = await self.conversations.append_to_citizen(
            conversation_id, [
                {"id": it.get("id") or new_id("m"), "sender": it.get("sender", "system"),
                 "kind": it.get("kind", "text"), "action": it.get("action", "system"),
                 "text": it["text"],
                 "body": {k: v for k, v in (it.get("body") or {}).items() if v}}
                for it in items])
        outs = [m.to_outbound() for m in stored]
        await self.bus.publish(channel, channel_user, outs)
        return outs

    async def status(self, channel: str, channel_user: str, conversation_id: str,
                     status: QueueStatus, text: str) -> None:
        """A transient update (seq 0, not stored), e.g. a new queue position."""
        await self.bus.publish(channel, channel_user, [Outbound(
            conversation_id=conversation_id, seq=0, sender="system", action="system",
            text=text, queue=status)])
