"""Alembic migrations on a brand-new database of the kind under test (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, inspect, select, text

from core.db import create_engine, current_revision, upgrade
from core.db.migrate import alembic_config, downgrade
from core.db.schema import kb_entries, metadata

KB_TABLES = {"kb_entries", "kb_entry_matters", "kb_revisions"}
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def table_names(engine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    return names - {"alembic_version"}


async def schema_differences(engine, target: MetaData) -> list:
    """What alembic's autogenerate would write to turn the database into ``target``."""

    def compare(sync_conn):
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, target)

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


def test_there_is_exactly_one_head():
    # two heads would mean two migrations branched from one parent: upgrade "head" fails
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


async def test_upgrade_creates_the_schema_at_head(empty_database_url):
    engine = create_engine(empty_database_url)
    try:
        assert await table_names(engine) == set()
        assert await current_revision(engine) is None
        await upgrade(engine)
        tables = await table_names(engine)
        assert KB_TABLES <= tables
        assert tables == set(metadata.tables)
        assert await current_revision(engine) == HEAD
    finally:
        await engine.dispose()


async def test_upgrade_twice_is_a_no_op_that_keeps_data(empty_database_url):
    engine = create_engine(empty_database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO kb_revisions (entry_id, version, action, actor, at) "
                "VALUES ('e1', 1, 'create', 'test', CURRENT_TIMESTAMP)"
            ))
        await upgrade(engine)
        assert await current_revision(engine) == HEAD
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT entry_id FROM kb_revisions"))).all()
        assert [r.entry_id for r in rows] == ["e1"]
    finally:
        await engine.dispose()


async def test_downgrade_to_base_removes_everything_and_upgrade_works_again(empty_database_url):
    engine = create_engine(empty_database_url)
    try:
        await upgrade(engine)
        await downgrade(engine, "base")
        assert await table_names(engine) == set()
        assert await current_revision(engine) is None

        await upgrade(engine)
        assert await current_revision(engine) == HEAD
        assert await table_names(engine) == set(metadata.tables)
        async with engine.connect() as conn:  # usable, and empty
            assert (await conn.execute(select(kb_entries.c.id))).all() == []
    finally:
        await engine.dispose()


async def test_every_revision_downgrades_one_step(empty_database_url):
    """Walk the chain down one migration at a time: each downgrade() undoes its upgrade()."""
    script = ScriptDirectory.from_config(alembic_config())
    chain = [rev.revision for rev in script.walk_revisions()]  # head first
    engine = create_engine(empty_database_url)
    try:
        await upgrade(engine)
        for rev, below in zip(chain, [*chain[1:], None], strict=True):
            assert await current_revision(engine) == rev
            await downgrade(engine, below or "base")
            if below is not None:
                await upgrade(engine, rev)  # and up again from there
                await downgrade(engine, below)
        assert await table_names(engine) == set()
    finally:
        await engine.dispose()


async def test_schema_module_matches_the_migrations(empty_database_url):
    """core/db/schema.py changed without a migration (or vice versa) shows up here."""
    engine = create_engine(empty_database_url)
    try:
        await upgrade(engine)
        assert await schema_differences(engine, metadata) == []
    finally:
        await engine.dispose()


async def test_the_comparison_notices_a_column_without_a_migration(empty_database_url):
    # guards the test above: a comparison that sees nothing would pass whatever the schema
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["kb_entries"].append_column(Column("priority", Integer))
    engine = create_engine(empty_database_url)
    try:
        await upgrade(engine)
        diffs = await schema_differences(engine, changed)
        assert [(d[0], d[3].name) for d in diffs] == [("add_column", "priority")]
    finally:
        await engine.dispose()
