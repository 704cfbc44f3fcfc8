"""aiosqlite with fewer trips to its thread: what the embedded SQLite costs per statement.

aiosqlite runs every call on the connection's own thread and wakes the event loop for each
result. Through SQLAlchemy a two-statement transaction made nine such trips (cursor, execute,
fetchall, close per statement, commit, then the pool's reset rollback), ~150 µs of CPU each, and
every trip is another turn in the event loop's line when the process is busy. On the human-help
path (bench/handoff.py) these trips were most of the SQL time.

Here only what does I/O goes to the thread, and a statement's rows come back with it:

- ``cursor()`` and ``close()`` are done in place (they touch no file);
- ``execute()`` runs the statement and fetches its rows in one trip; ``fetch*`` then read them
  from memory (so ``conn.stream()`` still works: it is served from the same buffer);
- ``rollback()`` outside a transaction (the pool's reset after a commit or a read) does nothing.

The sqlite3 connection is still used by one thread at a time: SQLAlchemy hands a connection to
one task, which awaits each call before the next, so the in-place calls never run alongside the
thread's (``check_same_thread`` is off, as SQLAlchemy sets it for file databases anyway).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from functools import partial
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager


def _run(cursor: sqlite3.Cursor, sql: str, parameters: Any) -> list[Any]:
    cursor.execute(sql, parameters)
    return cursor.fetchall() if cursor.description else []


class Cursor(aiosqlite.Cursor):
    def __init__(self, conn: aiosqlite.Connection, cursor: sqlite3.Cursor) -> None:
        super().__init__(conn, cursor)
        self._rows: deque[Any] = deque()

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        self._rows = deque(await self._execute(_run, self._cursor, sql,
                                               () if parameters is None else parameters))
        return self

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        n = min(self._cursor.arraysize if size is None else size, len(self._rows))
        return [self._rows.popleft() for _ in range(n)]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()
        self._cursor.close()


class Connection(aiosqlite.Connection):
    @contextmanager  # awaitable and an async context manager, like aiosqlite's own
    async def cursor(self) -> Cursor:  # type: ignore[override]
        return Cursor(self, self._conn.cursor())

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            await super().rollback()


def connector(path: str, *, timeout: float) -> Any:
    """For ``create_async_engine(async_creator=…)``: a new connection to ``path``."""

    async def connect() -> Connection:
        conn = Connection(partial(sqlite3.connect, path, timeout=timeout,
                                  check_same_thread=False), iter_chunk_size=64)
        conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
        return await conn

    return connect
