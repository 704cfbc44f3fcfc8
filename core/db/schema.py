"""The SQL schema (SQLAlchemy Core). Changes go through a new Alembic migration in migrations/.

Portable types only: the same SQL must run on SQLite and PostgreSQL (and the PostgreSQL-compatible
databases used in government IT).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

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
    Column("modified_at", DateTime(timezone=True), nullable=False),
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
    Column("at", DateTime(timezone=True), nullable=False),
    Column("before", JSON),
    Column("after", JSON),
    Column("note", Text),
)
