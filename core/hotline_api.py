"""12345's side of dispatch: its signed status callbacks, the supervisors' ticket views, and the
sweep that keeps every ticket moving.

``mount(app)`` (on an app made by core.app.create_app) adds:

* ``POST /api/hotline/v1/callback`` — 12345's status update (受理 / 办结 / 退回), signed as our
  tickets are (core.hotline_wire.verify). 401 bad signature, 400 malformed, 404 unknown ticket,
  413 oversized, 503 dispatch not configured. A change is told to the citizen on their channel
  (stored in the conversation, then pushed through the bus); a repeat changes nothing and tells
  nobody, so 12345 may retry freely.
* ``GET /console/api/tickets[?status=&unit=&limit=]`` and ``GET /console/api/tickets/dead`` —
  for supervisors (their units only) and admins; phone and ID numbers masked;
  ``POST /console/api/tickets/{ticket}/resend`` delivers a dead ticket again (409 otherwise).
* a background task in every process that runs core.ticket_recovery.recover_stuck every
  ``recover_every_s`` (one process per round, by a Redis lock), so a ticket whose enqueue failed
  or whose worker died is delivered without anyone noticing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import unicodedata
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from console.auth import login_required, staff_session
from console.figures import check_units, unit_scope

from .appkeys import ENGINE, HUB, REDIS, SETTINGS
from .bodies import read_limited
from .db.schema import tickets
from .errors import Forbidden, NotFound, ValidationFailed
from .hub import Hub
from .logging import mask_personal_data
from .tasks import cancel_and_wait
from . import ticket_recovery as _recovery
from .hotline_wire import (
    CALLBACK_PATH,
    CALLBACK_STATUSES,
    PROGRESS,
    SIGNATURE_HEADER,
    STATUSES,
    TIMESTAMP_HEADER,
    BadSignature,
    dispatch_config,
    verify,
)
from .ticket_recovery import recover_stuck, resend_ticket
from .tickets import dead_letters_key, get_ticket, list_tickets, parse_dead_letters, utcnow

log = logging.getLogger(__name__)

#: a status update is a few hundred bytes; anything near this is not one
MAX_CALLBACK_BYTES = 64 * 1024
MAX_NOTE = 500
#: how often the recovery sweep runs (in one process per round)
RECOVER_EVERY_S = 15.0

STATUS_LABELS = {"created": "待派单", "sending": "派单中", "sent": "已派单", "accepted": "已受理",
                 "done": "已办结", "returned": "已退回", "dead": "派单失败"}

# What the citizen reads on their channel when 12345 reports progress.
_PREFIX = "【12345工单进度】"
_NUMBER = "，工单号：{external_id}"
ACCEPTED_TEXT = (_PREFIX + "您反映的问题已由12345市民服务热线受理{number}。办理结果将通过这里告知您，"
                 "您也可以拨打12345查询办理进度。")
DONE_TEXT = _PREFIX + "您反映的问题已办结{number}。{note}如对办理结果有疑问，可拨打12345市民服务热线咨询。"
RETURNED_TEXT = (_PREFIX + "您反映的问题被12345市民服务热线退回{number}。{note}帮办工作人员将核实情况后"
                 "重新处理，并通过这里与您联系；您也可以直接回复补充说明，或拨打12345。")


def citizen_text(status: str, external_id: str | None, note: str | None) -> str:
    """The message telling the citizen about a ticket's new status."""
    number = _NUMBER.format(external_id=external_id) if external_id else ""
    note = (note or "").strip().rstrip("。.")
    if status == "accepted":
        return ACCEPTED_TEXT.format(number=number)
    if status == "done":
        return DONE_TEXT.format(number=number, note=f"办理结果：{note}。" if note else "")
    return RETURNED_TEXT.format(number=number, note=f"退回原因：{note}。" if note else "")


# -- applying a status update -----------------------------------------------------------------


class StatusUpdate(BaseModel):
    """A status update as 12345 posts it (fields we do not use are ignored)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    ticket_id: str | None = Field(None, max_length=64)
    idempotency_key: str | None = Field(None, max_length=64)
    #: accepted / done / returned, or the words 12345's staff use: 受理 / 办结 / 退回
    status: Literal["accepted", "done", "returned"]
    external_id: str | None = Field(None, max_length=64)
    note: str | None = None

    @field_validator("ticket_id", "external_id", "idempotency_key", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else (v or None)

    @field_validator("status", mode="before")
    @classmethod
    def _words(cls, v: Any) -> Any:
        return {word: code for code, word in CALLBACK_STATUSES.items()}.get(v, v)

    @field_validator("note", mode="before")
    @classmethod
    def _clean_note(cls, v: Any) -> Any:
        if v is None:
            return None
        text = "".join(ch for ch in str(v) if unicodedata.category(ch)[0] != "C")
        return text.strip()[:MAX_NOTE] or None

    @model_validator(mode="after")
    def _names_a_ticket(self) -> StatusUpdate:
        if not self.ticket_id and not self.idempotency_key:
            raise ValueError("names no ticket (ticket_id or idempotency_key)")
        return self


async def apply_callback(engine: AsyncEngine, body: bytes, *, signature: str | None,
                         timestamp: str | None, secret: str,
                         now: float | None = None) -> dict[str, Any]:
    """Apply one signed status update; a repeated or out-of-date one changes nothing.

    Returns ``{ticket_id, conversation_id, unit, status, changed, external_id, note}``. Raises
    BadSignature, ValidationFailed (malformed) or NotFound (no such ticket).
    """
    verify(secret, body, signature, timestamp, now=now)
    try:
        payload = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        raise ValidationFailed("callback body is not JSON") from None
    try:
        update_ = StatusUpdate.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        raise ValidationFailed(f"callback {where}: {msg}", [("callback", where, msg)]) from None
    where = (tickets.c.id == update_.ticket_id) if update_.ticket_id \
        else (tickets.c.idempotency_key == update_.idempotency_key)
    async with engine.begin() as conn:
        row = (await conn.execute(select(tickets).where(where).with_for_update())
               ).mappings().first()
        if row is None:
            raise NotFound("no such ticket")
        current, external_id = row["status"], row["external_id"]
        changed = PROGRESS[update_.status] > PROGRESS[current]
        if changed:
            values: dict[str, Any] = {"status": update_.status, "updated_at": utcnow()}
            if update_.external_id and not external_id:
                values["external_id"] = external_id = update_.external_id
            result = await conn.execute(update(tickets).where(
                tickets.c.id == row["id"], tickets.c.status == current).values(**values))
            changed = result.rowcount == 1
    if changed:
        log.info("ticket %s: %s → %s (%s)", row["id"], current, update_.status,
                 CALLBACK_STATUSES[update_.status])
    return {"ticket_id": row["id"], "conversation_id": row["conversation_id"],
            "unit": row["unit"], "status": update_.status if changed else current,
            "changed": changed, "external_id": external_id, "note": update_.note}


# -- handlers ---------------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def callback(request: web.Request) -> web.Response:
    """POST /api/hotline/v1/callback"""
    settings = request.config_dict[SETTINGS]
    secret = settings.dispatch.secret
    if not secret:
        return _error(503, "dispatch_off", "12345 dispatch is not configured here")
    body = await read_limited(request, MAX_CALLBACK_BYTES)
    if body is None:
        return _error(413, "too_large", f"a status update is at most {MAX_CALLBACK_BYTES} bytes")
    try:
        result = await apply_callback(
            request.config_dict[ENGINE], body, secret=secret,
            signature=request.headers.get(SIGNATURE_HEADER),
            timestamp=request.headers.get(TIMESTAMP_HEADER))
    except BadSignature as exc:
        return _error(401, exc.code, str(exc))
    except ValidationFailed as exc:
        return _error(400, exc.code, str(exc))
    except NotFound as exc:
        return _error(404, exc.code, str(exc))
    notified = False
    if result["changed"]:
        notified = await _tell_citizen(request.config_dict[HUB], result)
    return web.json_response({"ticket_id": result["ticket_id"], "status": result["status"],
                              "changed": result["changed"], "notified": notified})


async def _tell_citizen(hub: Hub, result: dict[str, Any]) -> bool:
    """Tell the citizen; the ticket's new status stands even when this fails (it is logged)."""
    text = citizen_text(result["status"], result["external_id"], result["note"])
    try:  # stored in the conversation, then pushed by whichever process holds the citizen
        await hub.notifier.tell(result["conversation_id"], text)
    except Exception:  # the conversation is gone, the database or Redis failed
        log.warning("ticket %s: could not tell the citizen about %s", result["ticket_id"],
                    result["status"], exc_info=True)
        return False
    return True


class TicketView(BaseModel):
    """A ticket as supervisors see it: no transcript, personal numbers masked."""

    id: str
    conversation_id: str
    unit: str
    status: str
    status_label: str
    summary: str
    citizen_contact: str | None
    attempts: int
    last_error: str | None
    external_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> TicketView:
        return cls(
            id=row["id"], conversation_id=row["conversation_id"], unit=row["unit"],
            status=row["status"], status_label=STATUS_LABELS.get(row["status"], row["status"]),
            summary=mask_personal_data(row["summary"]),
            citizen_contact=row["citizen_contact"] and mask_personal_data(row["citizen_contact"]),
            attempts=row["attempts"], external_id=row["external_id"],
            last_error=row["last_error"] and mask_personal_data(row["last_error"][:500]),
            created_at=row["created_at"], updated_at=row["updated_at"])


class DeadLetterView(BaseModel):
    ticket_id: str
    conversation_id: str
    unit: str
    summary: str
    attempts: int
    last_error: str | None
    at: str

    @classmethod
    def of(cls, item: dict[str, Any]) -> DeadLetterView:
        return cls(**{**item, "summary": mask_personal_data(item["summary"]),
                      "last_error": item.get("last_error")
                      and mask_personal_data(item["last_error"][:500])})


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "200")
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise ValidationFailed("limit 须为 1 到 500 之间的整数。")
    return int(raw)


def _units_asked(request: web.Request) -> list[str] | None:
    """The units of the request's ``unit`` filter the user may see; an unknown code is a
    ValidationFailed naming it (an admin's typo was answered with an empty list)."""
    asked = request.query.getall("unit", [])
    check_units(request.config_dict[SETTINGS], asked)
    return unit_scope(staff_session(request).user, asked)


def _refusal(exc: Exception) -> web.Response:
    if isinstance(exc, Forbidden):
        return _error(403, exc.code, str(exc))
    return _error(400, getattr(exc, "code", "invalid"), str(exc))


@login_required(roles=("supervisor", "admin"))
async def staff_tickets(request: web.Request) -> web.Response:
    """GET /console/api/tickets — newest first."""
    status = request.query.get("status") or None
    try:
        if status is not None and status not in STATUSES:
            raise ValidationFailed(f"未知的工单状态 {status!r}，可选：{'、'.join(STATUSES)}。")
        units, limit = _units_asked(request), _limit(request)
    except (ValidationFailed, Forbidden) as exc:
        return _refusal(exc)
    rows = await list_tickets(request.config_dict[ENGINE], status=status, units=units,
                              limit=limit)
    views = [TicketView.of(r).model_dump(mode="json") for r in rows]
    return web.json_response({"tickets": views, "count": len(views)})


@login_required(roles=("supervisor", "admin"))
async def staff_dead_letters(request: web.Request) -> web.Response:
    """GET /console/api/tickets/dead — tickets whose delivery gave up, newest first."""
    try:
        units, limit = _units_asked(request), _limit(request)
    except (ValidationFailed, Forbidden) as exc:
        return _refusal(exc)
    key = dead_letters_key(request.config_dict[SETTINGS].redis.prefix)
    raw = await request.config_dict[REDIS].lrange(key, 0, -1)
    items = [DeadLetterView.of(i).model_dump(mode="json")
             for i in parse_dead_letters(raw, units=units, limit=limit)]
    return web.json_response({"dead_letters": items, "count": len(items)})


@login_required(roles=("supervisor", "admin"))
async def staff_resend(request: web.Request) -> web.Response:
    """POST /console/api/tickets/{ticket}/resend — deliver a dead ticket again (its unit's
    supervisors and admins). NotFound, Forbidden and Conflict (not dead) are answered by the
    app's error middleware: 404, 403, 409."""
    dispatch = dispatch_config(request.config_dict[SETTINGS])
    if dispatch is None:
        return _error(503, "dispatch_off", "本系统未配置12345派单。")
    engine, user = request.config_dict[ENGINE], staff_session(request).user
    ticket = await get_ticket(engine, request.match_info["ticket"])
    unit_scope(user, [ticket["unit"]])  # Forbidden for another unit's ticket
    ticket = await resend_ticket(engine, request.config_dict[HUB].rq, ticket["id"], dispatch)
    log.info("ticket %s resent by %s", ticket["id"], user.username)
    return web.json_response({"ticket": TicketView.of(ticket).model_dump(mode="json")})


# -- the recovery sweep -----------------------------------------------------------------------


async def _recover_forever(app: web.Application, every_s: float, stale_after_s: float) -> None:
    settings = app[SETTINGS]
    dispatch = dispatch_config(settings)
    lock = f"{settings.redis.prefix}tickets:recover-lock"
    connection = app[HUB].rq  # the process's RQ client (closed with the core)
    while True:
        try:
            # one process per round; the lock expires by itself, so a dead holder blocks
            # nobody for longer than a round
            if await app[REDIS].set(lock, "1", nx=True, px=max(int(every_s * 1000), 1)):
                await recover_stuck(app[ENGINE], connection, dispatch,
                                    stale_after_s=stale_after_s)
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis or the database is down: try again next round
            log.warning("ticket recovery sweep failed; retrying in %.0f s", every_s,
                        exc_info=True)
        await asyncio.sleep(every_s)


def _recovery_ctx(every_s: float | None, stale_after_s: float | None):  # noqa: ANN202
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = None
        if dispatch_config(app[SETTINGS]) is not None:
            task = asyncio.create_task(_recover_forever(
                app, every_s or RECOVER_EVERY_S, stale_after_s or _recovery.RECOVER_AFTER_S),
                name="ticket-recovery")
        try:
            yield
        finally:
            await cancel_and_wait(task)

    return ctx


def mount(app: web.Application, *, recover_every_s: float | None = None,
          stale_after_s: float | None = None) -> None:
    """Add the callback route, the staff ticket views and the recovery sweep to ``app``
    (made by core.app.create_app, whose resources the handlers and the sweep use). The sweep
    runs every ``recover_every_s`` (default RECOVER_EVERY_S) and re-enqueues tickets stuck for
    ``stale_after_s`` (default core.ticket_recovery.RECOVER_AFTER_S); the defaults are read at start-up.
    """
    app.router.add_post(CALLBACK_PATH, callback)
    app.router.add_get("/console/api/tickets", staff_tickets)
    app.router.add_get("/console/api/tickets/dead", staff_dead_letters)
    app.router.add_post("/console/api/tickets/{ticket}/resend", staff_resend)
    app.cleanup_ctx.append(_recovery_ctx(recover_every_s, stale_after_s))


__all__ = ["mount", "apply_callback", "citizen_text", "StatusUpdate", "TicketView",
           "MAX_CALLBACK_BYTES", "STATUS_LABELS"]
