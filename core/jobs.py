"""Background work on RQ: queue names, enqueueing, and the jobs themselves.

Jobs are plain functions taking JSON-able arguments, so any worker process (on any machine) can
run them with only the settings it was started with. Async work is driven with ``asyncio.run``
inside the job: RQ workers are synchronous.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from rq import Queue
from sqlalchemy import select

from .config import Settings, load_settings
from .db import create_engine
from .db.schema import kb_entries

log = logging.getLogger(__name__)

HIGH, DEFAULT, LOW = "high", "default", "low"
#: how often the seed's 知识巡检 wants every entry looked at
INSPECTION_INTERVAL = timedelta(days=7)


def queue(name: str, connection) -> Queue:  # noqa: ANN001 - a sync redis.Redis
    return Queue(name, connection=connection)


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

    async def run() -> list[dict[str, Any]]:
        engine = create_engine(cfg.database_url)
        try:
            return await entries_due_for_inspection(engine)
        finally:
            await engine.dispose()

    due = asyncio.run(run())
    log.info("KB inspection: %d entries due for review", len(due))
    return {"due": len(due), "entries": due[:200]}


__all__ = ["queue", "kb_inspection", "entries_due_for_inspection", "HIGH", "DEFAULT", "LOW"]
