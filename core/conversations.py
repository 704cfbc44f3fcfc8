"""Conversations and messages in SQL: the record every channel and the workspace read from."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, time as dtime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db.schema import channel_identities, citizens, conversations, messages, unanswered
from .dialog.models import Outbound, utcnow
from .errors import NotFound
from .workdays import add_workdays

#: a bot conversation idle this long is closed; the next message starts a new one
IDLE_TIMEOUT = timedelta(minutes=30)
#: the seed: unanswered questions go back into the KB within 5 working days
UNANSWERED_WORKDAYS = 5
SHANGHAI = ZoneInfo("Asia/Shanghai")


def new_id(prefix: str) -> str:
    """Time-ordered, unguessable ids (ids appear in URLs, so they must not be enumerable)."""
    return f"{prefix}{int(time.time() * 1000):011x}{secrets.token_hex(6)}"


@dataclass(slots=True)
class Conversation:
    id: str
    citizen_id: str
    channel: str
    channel_user: str
    status: str
    matter: str | None
    unit: str | None
    started_at: datetime
    last_at: datetime


@dataclass(slots=True)
class StoredMessage:
    id: str
    conversation_id: str
    seq: int
    sender: str
    kind: str
    action: str | None
    text: str
    body: dict[str, Any]
    created_at: datetime

    def to_outbound(self) -> Outbound:
        """Any stored message (the citizen's included) in the shape channels render."""
        body = dict(self.body)
        for inbound_only in ("payload", "channel_meta"):
            body.pop(inbound_only, None)
        return Outbound.model_validate({
            **body, "conversation_id": self.conversation_id, "message_id": self.id,
            "seq": self.seq, "sender": self.sender,
            "action": self.action or "system", "text": self.text, "created_at": self.created_at,
        })


#: the most messages one read of a conversation returns (readers page on by sequence number)
HISTORY_PAGE = 200


class ConversationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- identities and conversations ---------------------------------------------------------
    async def citizen_for(self, conn: AsyncConnection, channel: str, channel_user: str) -> str:
        q = select(channel_identities.c.citizen_id).where(
            channel_identities.c.channel == channel, channel_identities.c.channel_user == channel_user)
        found = (await conn.execute(q)).scalar()
        if found:
            return found
        citizen_id, now = new_id("u"), utcnow()
        try:
            async with conn.begin_nested():
                await conn.execute(insert(citizens).values(id=citizen_id, created_at=now))
                await conn.execute(insert(channel_identities).values(
                    channel=channel, channel_user=channel_user, citizen_id=citizen_id,
                    created_at=now))
        except IntegrityError:  # another process mapped the same identity first
            return (await conn.execute(q)).scalar_one()
        return citizen_id

    async def current(self, channel: str, channel_user: str, *, create: bool = True,
                      now: datetime | None = None) -> Conversation | None:
        """The citizen's open conversation on this channel; a new one if none (or idle)."""
        now = now or utcnow()
        async with self.engine.begin() as conn:
            row = (await conn.execute(
                select(conversations).where(
                    conversations.c.channel == channel,
                    conversations.c.channel_user == channel_user,
                    conversations.c.status != "closed",
                ).order_by(conversations.c.last_at.desc()).limit(1)
            )).mappings().first()
            if row is not None:
                conv = Conversation(**{k: row[k] for k in Conversation.__slots__})
                idle = now - conv.last_at
                if conv.status != "bot" or idle < IDLE_TIMEOUT:
                    return conv
                await conn.execute(update(conversations).where(conversations.c.id == conv.id)
                                   .values(status="closed", closed_at=now))
            if not create:
                return None
            citizen_id = await self.citizen_for(conn, channel, channel_user)
            conv = Conversation(new_id("c"), citizen_id, channel, channel_user, "bot", None, None,
                                now, now)
            await conn.execute(insert(conversations).values(
                id=conv.id, citizen_id=citizen_id, channel=channel, channel_user=channel_user,
                status="bot", msg_count=0, started_at=now, last_at=now))
            return conv

    async def get(self, conversation_id: str) -> Conversation:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(conversations).where(conversations.c.id == conversation_id)
            )).mappings().first()
        if row is None:
            raise NotFound(f"no conversation {conversation_id!r}")
        return Conversation(**{k: row[k] for k in Conversation.__slots__})

    async def close(self, conversation_id: str, *, now: datetime | None = None) -> None:
        """End the conversation (its citizen's next message starts a new one)."""
        async with self.engine.begin() as conn:
            await conn.execute(update(conversations).where(
                conversations.c.id == conversation_id, conversations.c.status != "closed")
                .values(status="closed", closed_at=now or utcnow()))

    # -- messages -----------------------------------------------------------------------------
    async def append(self, conversation_id: str, channel: str, items: list[dict[str, Any]],
                     *, matter: str | None | Literal[False] = False) -> list[StoredMessage]:
        """Store messages in order; seq numbers come from an atomic counter on the conversation.

        Each item: sender, kind, action, text, body, channel_msg_id (optional). ``matter``
        (unless False) sets the conversation's matter in the same transaction.
        """
        return (await self._append(conversation_id, channel, items, matter))[1]

    async def append_to_citizen(self, conversation_id: str, items: list[dict[str, Any]]
                                ) -> tuple[tuple[str, str], list[StoredMessage]]:
        """:meth:`append` on the conversation's own channel, also returning (channel,
        channel_user) to deliver on: one transaction where reading the row first took two."""
        return await self._append(conversation_id, None, items, False)

    async def _append(self, conversation_id: str, channel: str | None,
                      items: list[dict[str, Any]], matter: str | None | Literal[False]
                      ) -> tuple[tuple[str, str], list[StoredMessage]]:
        now = utcnow()
        values: dict[str, Any] = {"msg_count": conversations.c.msg_count + len(items),
                                  "last_at": now}
        if matter is not False:
            values["matter"] = matter
        async with self.engine.begin() as conn:
            row = (await conn.execute(
                update(conversations).where(conversations.c.id == conversation_id)
                .values(**values)
                .returning(conversations.c.msg_count, conversations.c.channel,
                           conversations.c.channel_user)
            )).first()
            if row is None:
                raise NotFound(f"no conversation {conversation_id!r}")
            last, own_channel, channel_user = row
            channel = channel or own_channel
            first = last - len(items) + 1
            stored = [
                StoredMessage(it.get("id") or new_id("m"), conversation_id, first + i, it["sender"], it["kind"],
                              it.get("action"), it["text"], it.get("body") or {}, now)
                for i, it in enumerate(items)
            ]
            await conn.execute(insert(messages), [
                {"id": m.id, "conversation_id": m.conversation_id, "seq": m.seq,
                 "sender": m.sender, "kind": m.kind, "action": m.action, "text": m.text,
                 "body": m.body, "channel": channel,
                 "channel_msg_id": it.get("channel_msg_id"), "created_at": m.created_at}
                for m, it in zip(stored, items, strict=True)
            ])
        return (own_channel, channel_user), stored

    async def history(self, conversation_id: str, *, after: int = 0, limit: int = HISTORY_PAGE
                      ) -> list[StoredMessage]:
        q = (select(messages).where(messages.c.conversation_id == conversation_id,
                                    messages.c.seq > after)
             .order_by(messages.c.seq).limit(limit))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [StoredMessage(**{k: r[k] for k in StoredMessage.__slots__}) for r in rows]

    async def sent_as(self, conversation_id: str, channel_msg_id: str) -> StoredMessage | None:
        """The citizen's message the channel sent under this id, if this conversation has it."""
        q = (select(messages).where(messages.c.conversation_id == conversation_id,
                                    messages.c.channel_msg_id == channel_msg_id)
             .order_by(messages.c.seq).limit(1))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).mappings().first()
        return None if row is None else StoredMessage(**{k: row[k]
                                                         for k in StoredMessage.__slots__})

    # -- the KB gap list ----------------------------------------------------------------------
    async def record_unanswered(self, conversation_id: str, message_id: str | None, question: str,
                                reason: str, *, matter: str | None = None,
                                entry_id: str | None = None) -> None:
        now = utcnow()
        local_due = add_workdays(now.astimezone(SHANGHAI), UNANSWERED_WORKDAYS)
        due = datetime.combine(local_due, dtime(23, 59, 59), SHANGHAI).astimezone(UTC)
        async with self.engine.begin() as conn:
            await conn.execute(insert(unanswered).values(
                conversation_id=conversation_id, message_id=message_id, question=question[:2000],
                reason=reason, matter=matter, entry_id=entry_id, status="open",
                created_at=now, due_at=due))

    async def open_unanswered(self, limit: int = 500) -> list[dict[str, Any]]:
        q = (select(unanswered).where(unanswered.c.status == "open")
             .order_by(unanswered.c.due_at, unanswered.c.id).limit(limit))
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def count_messages(self, conversation_id: str) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.conversation_id == conversation_id))).scalar_one()
