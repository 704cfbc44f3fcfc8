"""Knowledge base: entries, their matter links and revisions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_entries",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("kb_class", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("valid", sa.String(1), nullable=False),
        sa.Column("region", sa.String(12)),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("published_by", sa.String(32), nullable=False),
        sa.Column("updated_by", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_entries"),
    )
    op.create_index("ix_kb_entries_type_status", "kb_entries", ["type", "status"])
    op.create_table(
        "kb_entry_matters",
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("matter", sa.String(8), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entries.id"], ondelete="CASCADE",
            name="fk_kb_entry_matters_entry_id_kb_entries",
        ),
        sa.PrimaryKeyConstraint("entry_id", "matter", name="pk_kb_entry_matters"),
    )
    op.create_index("ix_kb_entry_matters_matter", "kb_entry_matters", ["matter"])
    op.create_table(
        "kb_revisions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON),
        sa.Column("note", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_kb_revisions"),
    )
    op.create_index("ix_kb_revisions_entry_id", "kb_revisions", ["entry_id"])


def downgrade() -> None:
    op.drop_table("kb_revisions")
    op.drop_table("kb_entry_matters")
    op.drop_table("kb_entries")
