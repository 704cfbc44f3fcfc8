"""Background work on RQ: queue names, enqueueing, and the jobs themselves.

Jobs are plain functions taking JSON-able arguments, so any worker process (on any machine) can
run them with only the settings it was started with. Their async work goes through
:func:`with_engine`: RQ workers are synchronous.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from rq import Queue
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings, load_settings
from .db import create_engine
from .db.schema import kb_entries

log = logging.getLogger(__name__)
T = TypeVar("T")

HIGH, DEFAULT, LOW = "high", "default", "low"
#: how often the seed's 知识巡检 wants every entry looked at
INSPECTION_INTERVAL = timedelta(days=7)


def queue(name: str, connection) -> Queue:  # noqa: ANN001 - a sync redis.Redis
    return Queue(name, connection=connection)


def with_engine(database_url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run a job's async ``work`` on an engine of its own, disposed afterwards.

    A worker process has no event loop, so ``asyncio.run`` drives it. A job run inside a
    thread that already runs one (a SimpleWorker in an async program, as the test suite's burst
    worker is) gets a thread of its own instead."""

    async def run() -> T:
        engine = create_engine(database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


async def entries_due_for_inspection(engine, now: datetime | None = None) -> list[dict[str, Any]]:
    """Published entries not reviewed within the inspection interval (never reviewed first)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    cutoff = now - INSPECTION_INTERVAL
    q = select(kb_entries.c.id, kb_entries.c.type, kb_entries.c.title, kb_entries.c.data).where(
        kb_entries.c.status == "published"
    ).order_by(kb_entries.c.id)
    due = []
    async with engine.connect() as conn:
        async for row in await conn.stream(q):
            reviewed = row.data.get("last_reviewed_at")
            if reviewed is None or datetime.fromisoformat(reviewed) < cutoff:
                due.append({"id": row.id, "type": row.type, "title": row.title,
                            "last_reviewed_at": reviewed})
    return due


def kb_inspection(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """RQ job: the weekly inspection list (知识巡检) — which entries are due for review."""
    cfg = Settings.model_validate(settings) if settings else load_settings()
    due = with_engine(cfg.database_url, entries_due_for_inspection)
    log.info("KB inspection: %d entries due for review", len(due))
    return {"due": len(due), "entries": due[:200]}


__all__ = ["queue", "with_engine", "kb_inspection", "entries_due_for_inspection", "HIGH", "DEFAULT", "LOW"]
