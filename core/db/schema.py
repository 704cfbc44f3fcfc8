"""The SQL schema (SQLAlchemy Core). Changes go through a new Alembic migration in migrations/.

Portable types only: the same SQL must run on SQLite and PostgreSQL (and the PostgreSQL-compatible
databases used in government IT).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator):
    """A point in time, always read back aware and in UTC (we only ever store UTC).

    PostgreSQL keeps the zone; SQLite keeps none and hands back naive datetimes, which every
    reader then had to remember to mark, and some did not: the APP API's long-poll answered
    "…00:48:59" where its POST said "…00:48:59Z", eight hours off for an app in Beijing. The
    column's DDL is ``DateTime(timezone=True)`` as before, so no migration."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

# Named constraints make migrations reproducible on both databases.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per knowledge entry. ``data`` is the whole validated record (the wire form, exactly
# what export writes back); the other columns are copies of it kept for filtering and sorting.
kb_entries = Table(
    "kb_entries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("kb_class", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("valid", String(1), nullable=False),
    Column("region", String(12)),
    Column("title", Text, nullable=False),
    Column("published_by", String(32), nullable=False),
    Column("updated_by", String(32), nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("data", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("modified_at", UtcDateTime(), nullable=False),
    Index("ix_kb_entries_type_status", "type", "status"),
)

# Matter links (关联事项) as rows, so "every entry about M03" is an indexed query.
kb_entry_matters = Table(
    "kb_entry_matters",
    metadata,
    Column("entry_id", String(64), ForeignKey("kb_entries.id", ondelete="CASCADE"), primary_key=True),
    Column("matter", String(8), primary_key=True),
    Index("ix_kb_entry_matters_matter", "matter"),
)

# Every change to an entry: who, when, what it was and what it became.
kb_revisions = Table(
    "kb_revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", String(64), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("before", JSON),
    Column("after", JSON),
    Column("note", Text),
)

# -- conversations ----------------------------------------------------------------------------

# A citizen is one person or business across channels; identities map channel users onto them.
citizens = Table(
    "citizens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

channel_identities = Table(
    "channel_identities",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("channel_user", String(128), primary_key=True),
    Column("citizen_id", String(32), ForeignKey("citizens.id"), nullable=False, index=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("citizen_id", String(32), ForeignKey("citizens.id"), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("channel_user", String(128), nullable=False),
    # bot → queued → agent → closed; only the bot state times out by idleness
    Column("status", String(16), nullable=False),
    Column("matter", String(8)),
    Column("unit", String(32)),
    Column("msg_count", Integer, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("last_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime()),
    Index("ix_conversations_channel_user", "channel", "channel_user", "last_at"),
    Index("ix_conversations_status", "status"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), ForeignKey("conversations.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("sender", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("action", String(16)),
    Column("text", Text, nullable=False),
    # the rest of an Outbound (quick replies, links, meta …) or an Inbound's payload/attachments
    Column("body", JSON, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("channel_msg_id", String(128)),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("uq_messages_conversation_id_seq", "conversation_id", "seq", unique=True),
    # the SQL backstop of de-duplication (Redis catches platform retries first)
    Index("uq_messages_channel_channel_msg_id", "channel", "channel_msg_id", unique=True),
)

# Questions the bot could not answer, or whose answer the citizen marked 未解决: the KB gap list
# that knowledge operators must close within 5 working days.
unanswered = Table(
    "unanswered",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(32), nullable=False),
    Column("message_id", String(32)),
    Column("question", Text, nullable=False),
    Column("reason", String(16), nullable=False),
    Column("matter", String(8)),
    Column("entry_id", String(64)),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("resolved_entry_id", String(64)),
    Index("ix_unanswered_status_due_at", "status", "due_at"),
)

# -- staff ------------------------------------------------------------------------------------

# Console accounts: agents, supervisors, KB editors and administrators, each bound to units
# (department codes of config/codes.yaml). Never deleted, only disabled, so the record of who
# did what keeps its names.
staff_users = Table(
    "staff_users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("display_name", String(64), nullable=False),
    # argon2id, in the PHC string form (parameters and salt included)
    Column("password_hash", String(255), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("units", JSON, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("last_login_at", UtcDateTime()),
    Index("uq_staff_users_username", "username", unique=True),
)

# Console sign-ins. ``id`` is the SHA-256 (hex) of the session token in the browser's cookie;
# the token itself is never stored, so a copy of this table opens no session.
staff_sessions = Table(
    "staff_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("staff_users.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("user_agent", String(256)),
)

# -- ratings (好差评) and 12345 dispatch (派单) -------------------------------------------------

# One rating per service segment: the bot's answer (target = its message id) or an agent's service
# (target = the service id, with its unit and agent). A second rating of the same segment updates
# the row, so each segment is counted once. ``day`` is the Beijing date of the first rating, kept
# as text so "by day" figures group the same way on SQLite and PostgreSQL.
ratings = Table(
    "ratings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(32), nullable=False),
    Column("segment", String(8), nullable=False),
    Column("target", String(64), nullable=False),
    Column("unit", String(32)),
    Column("agent", String(32)),
    Column("channel", String(32), nullable=False),
    Column("resolved", Boolean),
    # 5 非常满意, 4 满意, 3 基本满意, 2 不满意, 1 非常不满意
    Column("level", Integer),
    Column("comment", Text),
    Column("day", String(10), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("uq_ratings_conversation_id_segment_target", "conversation_id", "segment", "target",
          unique=True),
    Index("ix_ratings_day", "day"),
)

# 差评整改: a low rating (or an agent service rated 未解决) is followed up by the unit's
# supervisors before ``due_at``. At most one follow-up per rating.
rating_followups = Table(
    "rating_followups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rating_id", Integer, ForeignKey("ratings.id", ondelete="CASCADE"), nullable=False),
    Column("unit", String(32)),
    Column("status", String(16), nullable=False),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime()),
    Column("closed_by", String(64)),
    Column("note", Text),
    Index("uq_rating_followups_rating_id", "rating_id", unique=True),
    Index("ix_rating_followups_unit_status_due_at", "unit", "status", "due_at"),
)

# Tickets dispatched to the 12345 hotline. The row is the truth; the RQ job only moves it along
# created → sending → sent → accepted → done | returned, or → dead when delivery gave up.
# ``idempotency_key`` is sent with every delivery attempt, so the receiver records it once.
tickets = Table(
    "tickets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("summary", Text, nullable=False),
    Column("transcript", JSON, nullable=False),
    # masked (138****1234): the full number stays with the channel identity
    Column("citizen_contact", String(64)),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("idempotency_key", String(64), nullable=False),
    Column("external_id", String(64)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("uq_tickets_idempotency_key", "idempotency_key", unique=True),
    Index("ix_tickets_conversation_id", "conversation_id"),
    Index("ix_tickets_status", "status"),
)

# -- human help (线上人工帮办) --------------------------------------------------------------------

# One row per service segment of human help: a conversation's request for a person at one unit,
# from routing to close. A transfer closes the segment ('transferred') and opens a new one at the
# other unit, so ratings, first-response times and figures are per unit and agent. The row is the
# truth; the Redis queue (core.queue) is a rebuildable view of the rows in state waiting/assigned.
handoffs = Table(
    "handoffs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), ForeignKey("conversations.id"), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("channel_user", String(128), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("matter", String(8)),
    # how routing chose the unit (core.routing Reason), or 'transfer' / 'overflow' / 'menu'
    Column("reason", String(32), nullable=False),
    # waiting → assigned → closed; message (留言, outside hours) → assigned → closed;
    # or cancelled / transferred / overflowed
    Column("state", String(16), nullable=False),
    Column("agent", String(32)),
    Column("agent_name", String(64)),
    Column("requested_at", UtcDateTime(), nullable=False),
    Column("assigned_at", UtcDateTime()),
    Column("first_response_at", UtcDateTime()),
    Column("closed_at", UtcDateTime()),
    # resolved / unresolved / dispatched / transferred / no_reply / cancelled / overflowed
    Column("resolution", String(16)),
    Column("sla_breached", Boolean, nullable=False),
    Column("previous_id", String(32)),
    Column("note", Text),
    # Beijing date of the request, as text, so figures group the same way on every database
    Column("day", String(10), nullable=False),
    Column("meta", JSON, nullable=False),
    Index("ix_handoffs_unit_state", "unit", "state"),
    Index("ix_handoffs_conversation_id", "conversation_id"),
    Index("ix_handoffs_agent_state", "agent", "state"),
    Index("ix_handoffs_day", "day"),
)

# "Propose for KB" (纳入知识库): an agent's answer kept as a candidate entry for KB operators.
kb_candidates = Table(
    "kb_candidates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(32), nullable=False),
    Column("message_id", String(32), nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("matter", String(8)),
    Column("unit", String(32)),
    Column("proposed_by", String(32), nullable=False),
    # candidate → accepted (became entry_id) | rejected
    Column("status", String(16), nullable=False),
    Column("entry_id", String(64)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("decided_at", UtcDateTime()),
    Column("decided_by", String(32)),
    Index("uq_kb_candidates_message_id", "message_id", unique=True),
    Index("ix_kb_candidates_status", "status"),
)

# Images and voice messages sent in conversations (citizens' screenshots, agents' pictures).
# The bytes live in SQL so every process on every machine can serve them; size and type are
# checked before they get here (core.attachments).
attachments = Table(
    "attachments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), nullable=False),
    Column("uploader", String(16), nullable=False),  # citizen / agent
    Column("uploader_id", String(128), nullable=False),
    Column("kind", String(8), nullable=False),  # image / voice
    Column("mime", String(100), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("name", String(200)),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_attachments_conversation_id", "conversation_id"),
)
