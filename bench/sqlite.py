"""SQL transactions on the embedded SQLite: our engine against plain aiosqlite, side by side.

    python bench/sqlite.py [--n 3000] [--rounds 2]

Both engines on a fresh file each, WAL and the same pragmas, one connection (so only the
driver differs): ``plain`` is SQLAlchemy's aiosqlite dialect as it comes, ``ours`` is
core.db.create_engine (core/db/sqlite.py: cursor and close in place, rows fetched with the
statement, no rollback outside a transaction). A write is BEGIN; UPDATE; SELECT; COMMIT, a read
one SELECT. Prints wall and CPU milliseconds per transaction and the driver-thread trips each
made.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# bench/ holds http.py, which would shadow the standard library's http package
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import aiosqlite.core  # noqa: E402
from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine  # noqa: E402

from core.db.engine import _sqlite_pragmas, create_engine  # noqa: E402

TRIPS: Counter[str] = Counter()
_execute = aiosqlite.core.Connection._execute


async def _counted(self, fn, *args, **kwargs):
    TRIPS["n"] += 1
    return await _execute(self, fn, *args, **kwargs)


aiosqlite.core.Connection._execute = _counted


def plain(path: Path) -> AsyncEngine:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 30},
                                 pool_size=1, max_overflow=0)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


async def run(label: str, engine: AsyncEngine, n: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (1, 0)"))
    for kind in ("write", "read"):
        TRIPS.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            if kind == "write":
                async with engine.begin() as conn:
                    await conn.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
                    (await conn.execute(text("SELECT v FROM t WHERE id = 1"))).scalar()
            else:
                async with engine.connect() as conn:
                    (await conn.execute(text("SELECT v FROM t WHERE id = 1"))).scalar()
        wall = (time.perf_counter() - t0) / n * 1e3
        cpu = (time.process_time() - c0) / n * 1e3
        print(f"  {label:6} {kind:5}  wall {wall:6.3f} ms  cpu {cpu:6.3f} ms  "
              f"trips {TRIPS['n'] / n:4.1f} per transaction")
    await engine.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="transactions per kind")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    for r in range(args.rounds):
        print(f"round {r + 1}")
        with tempfile.TemporaryDirectory() as tmp:
            await run("plain", plain(Path(tmp) / "plain.db"), args.n)
            await run("ours", create_engine(f"sqlite+aiosqlite:///{tmp}/ours.db"), args.n)


if __name__ == "__main__":
    asyncio.run(main())
