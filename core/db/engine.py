"""Engine creation for the two databases we support: SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..config import normalise_database_url
from . import sqlite


#: how long a statement waits for another process's write lock (worker, CLI) before failing
BUSY_TIMEOUT_S = 30


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    url = normalise_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        kw: dict = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            kw = {"pool_size": 1, "max_overflow": 0,  # (":memory:" has one already)
                  "async_creator": sqlite.connector(str(path.resolve()),
                                                    timeout=BUSY_TIMEOUT_S)}
        # One connection per process. SQLite has a single writer; with several connections
        # concurrent writers wait on its lock, and its busy handler sleeps 1, 2, 5 … 100 ms
        # between tries, so under load a write waited hundreds of milliseconds with the CPU
        # idle (bench/handoff.py: p99 169 → 105 ms, max 559 → 152 ms at 7 citizens/s). One
        # connection queues our statements FIFO in-process instead. Other processes (worker,
        # CLI) still meet the lock and wait for it (BUSY_TIMEOUT_S). A transaction must therefore
        # never wait for a second connection while it holds the first.
        engine = create_async_engine(url, echo=echo, **kw)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the web process read while a worker or the CLI writes; foreign keys are off by
    # default in SQLite and we rely on them like PostgreSQL does. (The busy timeout is the
    # connection's own ``timeout``, BUSY_TIMEOUT_S, in effect from the first statement.)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


async def dispose_engine(engine: AsyncEngine) -> None:
    await engine.dispose()
