"""Nothing lost: re-enqueue, from the SQL truth, the tickets whose delivery job is gone or dead,
and a supervisor's second try at a dead ticket.

:func:`recover_stuck` runs every few seconds in every app process (core.hotline_api) and on
demand (``bangban dispatch recover``). A ticket enqueued while Redis was down, or whose worker
was killed mid-POST, is still 'created' or 'sending' in SQL with no live job: it gets a new job,
which supersedes the old one (core.tickets keeps each ticket's current job id in Redis), and
12345 de-duplicates by Idempotency-Key, so it is still delivered once. RQ 3 itself notices a
killed job only when its heartbeat has expired and a worker runs maintenance (up to 10 min).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from .db.schema import tickets
from .errors import Conflict, NotFound
from .hotline_wire import DispatchConfig
from .tickets import aware, dead_letters_key, enqueue_delivery, job_key, ticket_dict, utcnow

log = logging.getLogger(__name__)

#: a ticket 'created' or 'sending' this long without a live job is re-enqueued; RQ heartbeats a
#: running job every 30 s, so a started job silent for longer than this has lost its worker
RECOVER_AFTER_S = 90.0


def _delivery_alive(connection, ticket_id: str, now: datetime,  # noqa: ANN001
                    stale_after_s: float, prefix: str) -> bool:
    """Whether the ticket's current job will still run or is running on a live worker."""
    job_id = connection.get(job_key(prefix, ticket_id))
    if job_id is None:
        return False
    try:
        job = Job.fetch(job_id.decode() if isinstance(job_id, bytes) else job_id,
                        connection=connection)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.CREATED):
        return True
    if status == JobStatus.STARTED:
        beat = job.last_heartbeat or job.started_at
        return beat is not None and (now - aware(beat)).total_seconds() < stale_after_s
    return False  # finished, failed, stopped or cancelled while the ticket is still undelivered


async def recover_stuck(engine: AsyncEngine, rq_connection,  # noqa: ANN001
                        dispatch: DispatchConfig, *, settings: dict[str, Any] | None = None,
                        stale_after_s: float = RECOVER_AFTER_S, now: datetime | None = None,
                        limit: int = 200) -> list[str]:
    """Re-enqueue tickets stuck in 'created' / 'sending' for ``stale_after_s`` whose delivery job
    is gone (Redis was down or lost it) or dead (its worker was killed); returns their ids.

    Safe to run anywhere, any number of times: a ticket whose job is queued, scheduled for a
    retry or running on a live worker is left alone, the new job supersedes the old one, and the
    receiver de-duplicates by Idempotency-Key. Raises RedisError when Redis is unreachable.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stale_after_s)
    q = (select(tickets.c.id).where(tickets.c.status.in_(("created", "sending")),
                                    tickets.c.updated_at < cutoff)
         .order_by(tickets.c.updated_at, tickets.c.id).limit(limit))
    async with engine.connect() as conn:
        candidates = list((await conn.execute(q)).scalars())

    def requeue() -> list[str]:
        done = []
        for ticket_id in candidates:
            if _delivery_alive(rq_connection, ticket_id, now, stale_after_s,
                               dispatch.key_prefix):
                continue
            enqueue_delivery(rq_connection, ticket_id, dispatch, settings)
            done.append(ticket_id)
        return done

    recovered = await asyncio.to_thread(requeue) if candidates else []
    for ticket_id in recovered:
        log.warning("ticket %s had no live delivery job; queued it again", ticket_id)
    return recovered


async def resend_ticket(engine: AsyncEngine, rq_connection, ticket_id: str,  # noqa: ANN001
                        dispatch: DispatchConfig, *, settings: dict[str, Any] | None = None
                        ) -> dict[str, Any]:
    """A supervisor's second try at a dead ticket (12345 was down for hours, its endpoint was
    misconfigured): back to 'created' with its attempts reset and off the dead-letter list,
    delivered by a new job under the same Idempotency-Key, so 12345 still records it once.
    Conflict unless the ticket is dead. Should Redis fail after the SQL update, the recovery
    sweep finds the ticket 'created' without a job and queues it: nothing is lost either way."""
    async with engine.begin() as conn:
        row = (await conn.execute(update(tickets).where(
            tickets.c.id == ticket_id, tickets.c.status == "dead"
        ).values(status="created", attempts=0, updated_at=utcnow()).returning(tickets)
        )).mappings().first()
        if row is None:
            status = (await conn.execute(select(tickets.c.status)
                                         .where(tickets.c.id == ticket_id))).scalar()
            if status is None:
                raise NotFound(f"no ticket {ticket_id}")
            raise Conflict(f"只能重新派送派单失败的工单（该工单状态：{status}）。")

    def requeue() -> None:
        enqueue_delivery(rq_connection, ticket_id, dispatch, settings)
        key = dead_letters_key(dispatch.key_prefix)
        for raw in rq_connection.lrange(key, 0, -1):
            if json.loads(raw).get("ticket_id") == ticket_id:
                rq_connection.lrem(key, 0, raw)

    try:
        await asyncio.to_thread(requeue)
    except RedisError:
        log.warning("ticket %s: resend recorded, queueing left to the recovery sweep",
                    ticket_id, exc_info=True)
    return ticket_dict(row)


__all__ = ["RECOVER_AFTER_S", "recover_stuck", "resend_ticket"]
