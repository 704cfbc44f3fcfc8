"""12345 dispatch (派单): tickets in SQL, delivered by an RQ job, updated by 12345's callbacks.

The row in ``tickets`` is the truth. :func:`create_ticket` writes it and enqueues
:func:`deliver_ticket`, which POSTs the ticket as JSON to the configured endpoint:

* signed with HMAC-SHA256 as core.hotline_wire says (the contract with 12345);
* with ``Idempotency-Key: <the ticket's key>`` on every attempt.

Exactly once at the receiver: the job marks the ticket 'sending' (and counts the attempt) before
it POSTs, and the receiver de-duplicates by Idempotency-Key, so POSTing a ticket again is always
safe — the receiver answers "already have it" and the ticket becomes 'sent', recorded once.

Nothing is lost when Redis or a worker is: core.ticket_recovery re-enqueues, from the SQL
truth, every ticket still 'created' or 'sending' whose delivery job is gone or dead. Each ticket
remembers its current job in Redis (``job_key``); a job superseded by a re-enqueued one does
nothing when it runs (and its failure does not make the ticket 'dead').

Failures are retried by RQ with back-off (``DispatchConfig.retry_intervals``, 5 s, 30 s, 2 min,
10 min by default; the intervals need a worker running with its scheduler, as ``bangban worker``
does) up to ``max_attempts``. When they are exhausted, or the receiver refuses the ticket outright
(a 4xx other than 408/429), the ticket becomes 'dead' and is pushed to the Redis dead-letter list
that supervisors read with :func:`dead_letters`.

12345's status updates (受理 accepted / 办结 done / 退回 returned) come back signed the same way
to ``hotline_wire.CALLBACK_PATH`` and move the ticket forward (``hotline_wire.PROGRESS``);
core.hotline_api applies them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from rq import Callback
from rq.job import Job
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings, load_settings
from .db.schema import tickets
from .errors import BangbanError, NotFound, ValidationFailed
from .hotline_wire import (
    IDEMPOTENCY_HEADER,
    DispatchConfig,
    dispatch_config,
    signed_headers,
)
from .jobs import queue, with_engine

log = logging.getLogger(__name__)

#: Redis list of tickets whose delivery gave up (newest last), after the deployment's prefix
DEAD_LETTERS_KEY = "tickets:dead"
#: Redis key holding the id of the RQ job now responsible for a ticket's delivery
JOB_KEY = "tickets:job:{}"
JOB_KEY_TTL_S = 14 * 24 * 3600
_DELIVERED = {"sent", "accepted", "done", "returned"}


class DispatchError(BangbanError):
    code = "dispatch_failed"


class PermanentDispatchError(DispatchError):
    """The receiver refused the ticket itself: retrying would not help."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime | None) -> datetime | None:
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000):011x}{secrets.token_hex(6)}"


# -- creating and delivering ------------------------------------------------------------------


def ticket_dict(row: Any) -> dict[str, Any]:
    return dict(row)


async def get_ticket(engine: AsyncEngine, ticket_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id))
               ).mappings().first()
    if row is None:
        raise NotFound(f"no ticket {ticket_id}")
    return ticket_dict(row)


async def list_tickets(engine: AsyncEngine, *, status: str | None = None,
                       units: list[str] | None = None, limit: int = 500) -> list[dict[str, Any]]:
    q = select(tickets).order_by(tickets.c.created_at.desc(), tickets.c.id).limit(limit)
    if status is not None:
        q = q.where(tickets.c.status == status)
    if units is not None:
        q = q.where(tickets.c.unit.in_(units))
    async with engine.connect() as conn:
        return [ticket_dict(r) for r in (await conn.execute(q)).mappings().all()]


def enqueue_delivery(rq_connection, ticket_id: str, dispatch: DispatchConfig,  # noqa: ANN001
                     settings: dict[str, Any] | None = None) -> Job:
    """Enqueue a delivery job and make it the ticket's current one (raises RedisError)."""
    # The key is set before the job exists, so the job can never start and find another id there.
    job_id = f"ticket-{ticket_id}-{secrets.token_hex(4)}"
    rq_connection.set(job_key(dispatch.key_prefix, ticket_id), job_id, ex=JOB_KEY_TTL_S)
    return queue(dispatch.queue, rq_connection).enqueue(
        deliver_ticket, ticket_id, settings, dispatch.model_dump(mode="json"), job_id=job_id,
        retry=dispatch.retry(), on_failure=Callback(delivery_failed),
        description=f"12345 dispatch {ticket_id}")


def _superseded(job: Job | None, ticket_id: str, prefix: str) -> bool:
    """Whether another job has since been made responsible for the ticket."""
    if job is None:
        return False
    current = job.connection.get(job_key(prefix, ticket_id))
    if isinstance(current, bytes):
        current = current.decode()
    return current is not None and current != job.id


async def create_ticket(engine: AsyncEngine, rq_connection, *, conversation_id: str,  # noqa: ANN001
                        unit: str, summary: str, transcript: list[dict[str, Any]],
                        dispatch: DispatchConfig, settings: dict[str, Any] | None = None,
                        citizen_contact: str | None = None, idempotency_key: str | None = None,
                        now: datetime | None = None) -> dict[str, Any]:
    """Write the ticket and enqueue its delivery; returns the row.

    With an ``idempotency_key`` already used (a double click on 派单), the existing ticket is
    returned and nothing is enqueued again. ``settings`` is the worker's Settings dump (None: the
    worker's own configuration). When Redis cannot take the job the ticket stays 'created' and is
    returned all the same: it is in SQL, and :func:`recover_stuck` enqueues it once Redis is back.
    """
    if not summary.strip():
        raise ValidationFailed("a ticket needs a summary", [("ticket", "summary", "empty")])
    now = now or utcnow()
    key = idempotency_key or secrets.token_urlsafe(24)
    if len(key) > 64:
        raise ValidationFailed("idempotency key too long", [("ticket", "idempotency_key", ">64")])
    ticket_id = new_id("t")
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(tickets).values(
                id=ticket_id, conversation_id=conversation_id, unit=unit,
                summary=summary.strip()[:4000], transcript=transcript,
                # as the agent typed it: 12345 calls the citizen back on it (staff lists and
                # logs mask it, core.hotline_api)
                citizen_contact=(citizen_contact or "").strip()[:64] or None, status="created",
                attempts=0,
                idempotency_key=key, created_at=now, updated_at=now))
    except IntegrityError:
        async with engine.connect() as conn:
            row = (await conn.execute(select(tickets).where(tickets.c.idempotency_key == key))
                   ).mappings().first()
        if row is None:
            raise
        return ticket_dict(row)
    try:
        await asyncio.to_thread(enqueue_delivery, rq_connection, ticket_id, dispatch, settings)
    except (RedisError, OSError) as exc:
        log.warning("ticket %s saved but not queued (%s); the recovery sweep will queue it",
                    ticket_id, exc)
    return await get_ticket(engine, ticket_id)


def dispatcher(engine: AsyncEngine, rq_connection, settings: Settings):  # noqa: ANN001, ANN201
    """``create_ticket`` bound to the configured dispatch (for the agent desk's 派单), or None
    when dispatch is off. Jobs run with the worker's own settings."""
    d = dispatch_config(settings)
    if d is None:
        return None

    async def dispatch(**ticket: Any) -> dict[str, Any]:
        return await create_ticket(engine, rq_connection, dispatch=d, **ticket)

    return dispatch


def ticket_payload(row: dict[str, Any], dispatch: DispatchConfig) -> dict[str, Any]:
    return {
        "ticket_id": row["id"], "idempotency_key": row["idempotency_key"],
        "conversation_id": row["conversation_id"], "unit": row["unit"],
        "summary": row["summary"], "transcript": row["transcript"],
        "citizen_contact": row["citizen_contact"],
        "created_at": row["created_at"].isoformat(),
        "callback_url": dispatch.callback_url,
    }


def post_ticket(payload: dict[str, Any], dispatch: DispatchConfig) -> dict[str, Any]:
    """One signed POST of a ticket; returns the receiver's JSON answer (may be {})."""
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
    headers = signed_headers(dispatch.secret, body)
    headers[IDEMPOTENCY_HEADER] = payload["idempotency_key"]
    req = urllib.request.Request(dispatch.endpoint, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=dispatch.timeout_s) as resp:  # noqa: S310
            text = resp.read(65536)
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", "replace")
        cls = PermanentDispatchError if 400 <= exc.code < 500 and exc.code not in (408, 429) \
            else DispatchError
        raise cls(f"HTTP {exc.code} from {dispatch.endpoint}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DispatchError(f"cannot reach {dispatch.endpoint}: {exc}") from exc
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        answer = {}
    return answer if isinstance(answer, dict) else {}


async def _claim(engine: AsyncEngine, ticket_id: str, max_attempts: int) -> dict[str, Any] | None:
    """Mark the ticket 'sending' and count the attempt; None when there is nothing to send."""
    async with engine.begin() as conn:
        row = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id)
                                  .with_for_update())).mappings().first()
        if row is None:
            raise NotFound(f"no ticket {ticket_id}")
        if row["status"] in _DELIVERED or row["status"] == "dead":
            return None
        if row["attempts"] >= max_attempts:
            raise PermanentDispatchError(f"{row['attempts']} attempts already made")
        await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(
            status="sending", attempts=tickets.c.attempts + 1, updated_at=utcnow()))
    return ticket_dict(row)


async def _mark_sent(engine: AsyncEngine, ticket_id: str, external_id: str | None) -> str:
    async with engine.begin() as conn:
        await conn.execute(update(tickets).where(
            tickets.c.id == ticket_id, tickets.c.status.in_(("created", "sending", "dead"))
        ).values(status="sent", last_error=None, updated_at=utcnow()))
        if external_id:
            await conn.execute(update(tickets).where(
                tickets.c.id == ticket_id, tickets.c.external_id.is_(None)
            ).values(external_id=str(external_id)[:64]))
        return (await conn.execute(select(tickets.c.status).where(tickets.c.id == ticket_id))
                ).scalar_one()


async def _note_error(engine: AsyncEngine, ticket_id: str, error: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(
            last_error=error[:2000], updated_at=utcnow()))


async def _mark_dead(engine: AsyncEngine, ticket_id: str,
                     error: str | None) -> dict[str, Any] | None:
    """'dead' unless it was delivered meanwhile; the row when this call made it dead."""
    values: dict[str, Any] = {"status": "dead", "updated_at": utcnow()}
    if error:
        values["last_error"] = error[:2000]
    async with engine.begin() as conn:
        result = await conn.execute(update(tickets).where(
            tickets.c.id == ticket_id, tickets.c.status.in_(("created", "sending"))
        ).values(**values))
        if result.rowcount != 1:
            return None
        row = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id))
               ).mappings().one()
    return ticket_dict(row)


def _push_dead_letter(connection, row: dict[str, Any], prefix: str) -> None:  # noqa: ANN001
    connection.rpush(dead_letters_key(prefix), json.dumps({
        "ticket_id": row["id"], "conversation_id": row["conversation_id"], "unit": row["unit"],
        "summary": row["summary"][:200], "attempts": row["attempts"],
        "last_error": row["last_error"], "at": utcnow().isoformat(),
    }, ensure_ascii=False))


def _settings(settings: dict[str, Any] | None) -> Settings:
    return Settings.model_validate(settings) if settings else load_settings()


def _job_dispatch(cfg: Settings, dispatch: dict[str, Any] | None) -> DispatchConfig | None:
    """The job's own dispatch (as enqueued), else the worker's; None when dispatch is off."""
    return DispatchConfig.model_validate(dispatch) if dispatch else dispatch_config(cfg)




def deliver_ticket(ticket_id: str, settings: dict[str, Any] | None = None,
                   dispatch: dict[str, Any] | None = None) -> dict[str, Any]:
    """RQ job: deliver one ticket to 12345. Raises on a retryable failure (RQ retries it).

    ``dispatch`` None: the worker's own ``dispatch`` settings (see :func:`dispatch_config`).
    """
    from rq.job import get_current_job

    cfg = _settings(settings)
    job = get_current_job()
    d = _job_dispatch(cfg, dispatch)
    prefix = d.key_prefix if d is not None else cfg.redis.prefix
    if _superseded(job, ticket_id, prefix):
        # the recovery sweep gave the ticket to a newer job (this one's worker looked dead)
        return {"ticket_id": ticket_id, "skipped": True, "superseded": True}

    async def run(engine: AsyncEngine) -> dict[str, Any]:
        try:
            if d is None:
                raise PermanentDispatchError("dispatch is off (dispatch.endpoint not set)")
            row = await _claim(engine, ticket_id, d.max_attempts)
            if row is None:
                return {"ticket_id": ticket_id, "status": (await get_ticket(
                    engine, ticket_id))["status"], "skipped": True}
            answer = await asyncio.to_thread(post_ticket, ticket_payload(row, d), d)
        except PermanentDispatchError as exc:
            dead = await _mark_dead(engine, ticket_id, str(exc))
            if dead is not None and job is not None:
                _push_dead_letter(job.connection, dead, prefix)
            log.warning("ticket %s refused for good: %s", ticket_id, exc)
            return {"ticket_id": ticket_id, "status": "dead", "error": str(exc)}
        except DispatchError as exc:
            await _note_error(engine, ticket_id, str(exc))
            raise
        status = await _mark_sent(engine, ticket_id, answer.get("id")
                                  or answer.get("external_id"))
        return {"ticket_id": ticket_id, "status": status,
                "duplicate": bool(answer.get("duplicate"))}

    return with_engine(cfg.database_url, run)


def delivery_failed(job: Job, connection, exc_type, exc_value, tb) -> None:  # noqa: ANN001
    """RQ failure callback (also for a worker killed mid-job): dead once retries are spent."""
    if job.should_retry:
        return
    ticket_id = job.args[0]
    cfg = _settings(job.args[1] if len(job.args) > 1 else None)
    d = _job_dispatch(cfg, job.args[2] if len(job.args) > 2 else None)
    prefix = d.key_prefix if d is not None else cfg.redis.prefix
    if _superseded(job, ticket_id, prefix):
        return  # a superseded job's failure says nothing about the ticket's newer job

    dead = with_engine(cfg.database_url, lambda engine: _mark_dead(
        engine, ticket_id, f"{exc_type.__name__}: {exc_value}" if exc_type else None))
    if dead is not None:
        _push_dead_letter(connection, dead, prefix)
        log.warning("ticket %s is dead after %d attempts: %s", ticket_id, dead["attempts"],
                    dead["last_error"])


def dead_letters_key(prefix: str) -> str:
    """The dead-letter list of the deployment whose ``redis.prefix`` this is."""
    return prefix + DEAD_LETTERS_KEY


def job_key(prefix: str, ticket_id: str) -> str:
    """Where that deployment keeps the id of the job now responsible for a ticket."""
    return prefix + JOB_KEY.format(ticket_id)


def dead_letters(connection, prefix: str, *, units: list[str] | None = None,  # noqa: ANN001
                 limit: int = 500) -> list[dict[str, Any]]:
    """Tickets whose delivery gave up, newest first (``units``: a supervisor's)."""
    return parse_dead_letters(connection.lrange(dead_letters_key(prefix), 0, -1), units=units,
                              limit=limit)


def parse_dead_letters(raw: list[bytes | str], *, units: list[str] | None = None,
                       limit: int = 500) -> list[dict[str, Any]]:
    """The dead-letter list as read from Redis (oldest first) → entries, newest first."""
    items = [json.loads(x) for x in reversed(raw)]
    if units is not None:
        items = [i for i in items if i["unit"] in units]
    return items[:limit]


__all__ = ["dispatcher", "create_ticket", "deliver_ticket", "delivery_failed", "enqueue_delivery",
           "dead_letters", "parse_dead_letters", "get_ticket", "list_tickets", "ticket_payload",
           "post_ticket", "DispatchError", "PermanentDispatchError", "dead_letters_key", "job_key",
           "ticket_dict", "aware", "utcnow"]
