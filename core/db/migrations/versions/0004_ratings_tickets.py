"""Ratings (好差评) with their follow-ups (差评整改), and 12345 tickets (派单).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("segment", sa.String(8), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(32)),
        sa.Column("agent", sa.String(32)),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("resolved", sa.Boolean),
        sa.Column("level", sa.Integer),
        sa.Column("comment", sa.Text),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ratings"),
    )
    op.create_index("uq_ratings_conversation_id_segment_target", "ratings",
                    ["conversation_id", "segment", "target"], unique=True)
    op.create_index("ix_ratings_day", "ratings", ["day"])
    op.create_table(
        "rating_followups",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("rating_id", sa.Integer, nullable=False),
        sa.Column("unit", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", TZ, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("closed_at", TZ),
        sa.Column("closed_by", sa.String(64)),
        sa.Column("note", sa.Text),
        sa.ForeignKeyConstraint(["rating_id"], ["ratings.id"], ondelete="CASCADE",
                                name="fk_rating_followups_rating_id_ratings"),
        sa.PrimaryKeyConstraint("id", name="pk_rating_followups"),
    )
    op.create_index("uq_rating_followups_rating_id", "rating_followups", ["rating_id"],
                    unique=True)
    op.create_index("ix_rating_followups_unit_status_due_at", "rating_followups",
                    ["unit", "status", "due_at"])
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("transcript", sa.JSON, nullable=False),
        sa.Column("citizen_contact", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
    )
    op.create_index("uq_tickets_idempotency_key", "tickets", ["idempotency_key"], unique=True)
    op.create_index("ix_tickets_conversation_id", "tickets", ["conversation_id"])
    op.create_index("ix_tickets_status", "tickets", ["status"])


def downgrade() -> None:
    op.drop_table("tickets")
    op.drop_table("rating_followups")
    op.drop_table("ratings")
