"""Conversations: citizens, channel identities, conversations, messages, unanswered questions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "citizens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_citizens"),
    )
    op.create_table(
        "channel_identities",
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("channel_user", sa.String(128), nullable=False),
        sa.Column("citizen_id", sa.String(32), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["citizen_id"], ["citizens.id"],
                                name="fk_channel_identities_citizen_id_citizens"),
        sa.PrimaryKeyConstraint("channel", "channel_user", name="pk_channel_identities"),
    )
    op.create_index("ix_channel_identities_citizen_id", "channel_identities", ["citizen_id"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("citizen_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("channel_user", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("matter", sa.String(8)),
        sa.Column("unit", sa.String(32)),
        sa.Column("msg_count", sa.Integer, nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("last_at", TZ, nullable=False),
        sa.Column("closed_at", TZ),
        sa.ForeignKeyConstraint(["citizen_id"], ["citizens.id"],
                                name="fk_conversations_citizen_id_citizens"),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
    )
    op.create_index("ix_conversations_channel_user", "conversations",
                    ["channel", "channel_user", "last_at"])
    op.create_index("ix_conversations_status", "conversations", ["status"])
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("sender", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("channel_msg_id", sa.String(128)),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name="fk_messages_conversation_id_conversations"),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index("uq_messages_conversation_id_seq", "messages", ["conversation_id", "seq"],
                    unique=True)
    op.create_index("uq_messages_channel_channel_msg_id", "messages",
                    ["channel", "channel_msg_id"], unique=True)
    op.create_table(
        "unanswered",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(32)),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("matter", sa.String(8)),
        sa.Column("entry_id", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("due_at", TZ, nullable=False),
        sa.Column("resolved_entry_id", sa.String(64)),
        sa.PrimaryKeyConstraint("id", name="pk_unanswered"),
    )
    op.create_index("ix_unanswered_status_due_at", "unanswered", ["status", "due_at"])


def downgrade() -> None:
    op.drop_table("unanswered")
    op.drop_table("messages")
    op.drop_table("conversations")
    op.drop_table("channel_identities")
    op.drop_table("citizens")
