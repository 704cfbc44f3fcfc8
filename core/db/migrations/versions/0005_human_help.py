"""Human help (线上人工帮办): service segments, KB candidates from agents, attachments.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "handoffs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("channel_user", sa.String(128), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("matter", sa.String(8)),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("agent", sa.String(32)),
        sa.Column("agent_name", sa.String(64)),
        sa.Column("requested_at", TZ, nullable=False),
        sa.Column("assigned_at", TZ),
        sa.Column("first_response_at", TZ),
        sa.Column("closed_at", TZ),
        sa.Column("resolution", sa.String(16)),
        sa.Column("sla_breached", sa.Boolean, nullable=False),
        sa.Column("previous_id", sa.String(32)),
        sa.Column("note", sa.Text),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_handoffs"),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name="fk_handoffs_conversation_id_conversations"),
    )
    op.create_index("ix_handoffs_unit_state", "handoffs", ["unit", "state"])
    op.create_index("ix_handoffs_conversation_id", "handoffs", ["conversation_id"])
    op.create_index("ix_handoffs_agent_state", "handoffs", ["agent", "state"])
    op.create_index("ix_handoffs_day", "handoffs", ["day"])
    op.create_table(
        "kb_candidates",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("matter", sa.String(8)),
        sa.Column("unit", sa.String(32)),
        sa.Column("proposed_by", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("entry_id", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("decided_at", TZ),
        sa.Column("decided_by", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name="pk_kb_candidates"),
    )
    op.create_index("uq_kb_candidates_message_id", "kb_candidates", ["message_id"], unique=True)
    op.create_index("ix_kb_candidates_status", "kb_candidates", ["status"])
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("uploader", sa.String(16), nullable=False),
        sa.Column("uploader_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("mime", sa.String(100), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_attachments"),
    )
    op.create_index("ix_attachments_conversation_id", "attachments", ["conversation_id"])


def downgrade() -> None:
    op.drop_table("attachments")
    op.drop_table("kb_candidates")
    op.drop_table("handoffs")
