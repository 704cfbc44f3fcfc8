"""The embedded SQLite engine (core.db.sqlite through core.db.create_engine): one connection per
process, statements' rows fetched with the statement, nothing lost or half-written."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.db import create_engine


@pytest.fixture
async def sqlite_engine(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)"))
    yield engine
    await engine.dispose()


async def test_concurrent_writers_all_land_without_lock_errors(sqlite_engine):
    # many tasks writing at once: with several connections SQLite made them sleep on its lock
    # (or fail with "database is locked"); one connection queues them, and none is lost
    async def add(i: int) -> None:
        async with sqlite_engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (id, v) VALUES (:i, :v)"), {"i": i, "v": i})
            await conn.execute(text("UPDATE t SET v = v + 1 WHERE id = :i"), {"i": i})

    await asyncio.gather(*(add(i) for i in range(1, 201)))
    async with sqlite_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
    assert rows == [(i, i + 1) for i in range(1, 201)]
    assert sqlite_engine.pool.size() == 1


async def test_failed_transaction_leaves_nothing_and_the_connection_still_works(sqlite_engine):
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 1)"))
    with pytest.raises(IntegrityError):
        async with sqlite_engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (id, v) VALUES (2, 2)"))
            await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 9)"))  # duplicate key
    async with sqlite_engine.begin() as conn:
        result = await conn.execute(text("UPDATE t SET v = 5 WHERE id IN (1, 2)"))
        assert result.rowcount == 1, "row 2 was rolled back with its transaction"
        inserted = await conn.execute(text("INSERT INTO t (v) VALUES (7)"))
        assert inserted.lastrowid == 2
        rows = (await conn.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
    assert rows == [(1, 5), (2, 7)]


async def test_streamed_results_and_returning_come_back_whole(sqlite_engine):
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (id, v) VALUES (:i, :i)"),
                           [{"i": i} for i in range(1, 1001)])
        back = await conn.execute(text("UPDATE t SET v = v * 2 WHERE id <= 3 RETURNING id, v"))
        assert sorted(back.all()) == [(1, 2), (2, 4), (3, 6)]
    async with sqlite_engine.connect() as conn:
        seen = [row.id async for row in await conn.stream(text("SELECT id FROM t ORDER BY id"))]
        first = (await conn.execute(text("SELECT id FROM t ORDER BY id"))).first()
    assert seen == list(range(1, 1001))
    assert first == (1,)


async def test_another_process_writing_is_waited_for_not_an_error(sqlite_engine, tmp_path):
    # a CLI or worker on the same file holds the write lock for a moment: our write waits
    other = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (id, v) VALUES (1, 1)")

    async def write() -> None:
        async with sqlite_engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (id, v) VALUES (2, 2)"))

    task = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    assert not task.done(), "the write waits for the other writer's lock"
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(task, 10)
    async with sqlite_engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2
