"""坐席工作台's JSON API under ``/console/api/…``: the board, transcripts, replies (text, and
pictures or voice uploaded through :mod:`console.workspace_media`), close, transfer, 派单, 留言,
纳入知识库 and the knowledge-base search.

The page itself is :mod:`console.workspace_page` (a server-rendered shell that
``static/workspace.js`` fills from this API); live updates come over
:mod:`console.workspace_socket`.

Who may see what is decided by core.handoff.AgentDesk on every call: an agent only ever reads or
acts on their units' conversations, whatever id a request names. This layer only maps the desk's
refusals to HTTP (Forbidden 403, NotFound 404, Conflict 409, ValidationFailed 422) as
``{"error", "message"}``; it never lists anything the desk did not hand it for this user.

Citizens' text is shown as text everywhere: the API returns plain strings (never the bot's HTML),
and the script builds the DOM with ``textContent``. ID-card and mobile numbers are not masked in
the agent's own view (they need them to help) and are never logged here.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from core.appkeys import HUB
from core.attachments import AttachmentStore, id_from_url
from core.conversations import StoredMessage
from core.dialog.bot import answer_body
from core.dialog.models import Outbound
from core.errors import BangbanError, Conflict, NotFound, ValidationFailed, http_status
from core.handoff import AgentDesk, BannedPhrase
from core.handoff.desk import MAX_REPLY
from core.handoff.steering import flags as steering_flags
from core.handoff.store import Handoff
from core.kb.richtext import html_to_text
from core.reference import matter_names
from core.staff import StaffUser

from .auth import login_required, staff_session

log = logging.getLogger(__name__)

API = "/console/api"
DESK_ROLES = ("agent", "supervisor", "admin")
MAX_SUMMARY = 4000
HID = "{handoff_id}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- request bodies ----------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=MAX_SUMMARY)


class SendBody(_Body):
    text: str = ""
    attachments: list[Annotated[str, StringConstraints(max_length=40)]] = \
        Field(default_factory=list, max_length=5)


class CloseBody(_Body):
    resolution: str
    note: str | None = None


class TransferBody(_Body):
    unit: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    note: str | None = None


class DispatchBody(_Body):
    summary: str
    contact: Annotated[str, StringConstraints(max_length=64)] | None = None


class ProposeBody(_Body):
    message_id: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    question: str | None = None


M = TypeVar("M", bound=BaseModel)


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise ValidationFailed(f"请求内容有误（{where}）", [("body", where, err["msg"])]) \
            from None


# -- plumbing ----------------------------------------------------------------------------------


class HandoffDisabled(NotFound):
    code = "handoff_disabled"


def desk_of(request: web.Request) -> AgentDesk:
    desk = request.config_dict[HUB].desk
    if desk is None:
        raise HandoffDisabled("线上人工帮办未启用（handoff.enabled 为 false），工作台不可用。")
    return desk


#: what staff read when a refusal carries only the core's internal (English) wording, such as
#: "no human-help service 'h…'" for a conversation that is gone
STAFF_WORDING = {
    "not_found": "会话或内容不存在，可能已结束或已被删除，请刷新页面后重试。",
    "conflict": "会话状态已变化，请刷新页面后重试。",
    "forbidden": "您没有权限进行这项操作。",
    "invalid": "提交的内容有误，请检查后重试。",
}
_CHINESE = re.compile(r"[\u4e00-\u9fff]")


def error_response(exc: BangbanError, **extra: Any) -> web.Response:
    message = str(exc)
    if not _CHINESE.search(message):
        log.info("workspace: %s (%s) shown to staff as the generic wording", exc.code, message)
        message = STAFF_WORDING.get(exc.code, "操作未能完成，请稍后重试。")
    return web.json_response({"error": exc.code, "message": message, **extra},
                             status=http_status(exc))


def api(handler: Handler) -> Handler:
    """A JSON endpoint for desk roles; the desk's refusals become ``{"error", "message"}``."""

    @login_required(roles=DESK_ROLES)
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BangbanError as exc:
            return error_response(exc)

    return wrapped


def user_of(request: web.Request) -> StaffUser:
    return staff_session(request).user


def attachments_of(request: web.Request) -> AttachmentStore:
    return request.config_dict[HUB].attachments


def holding(h: Handoff, user: StaffUser) -> None:
    """Only the agent holding a conversation writes in it (the desk's rule, checked before
    touching attachments so the refusal is the same whatever the request carries)."""
    if h.state != "assigned" or h.agent != user.id:
        raise Conflict("这个会话不在您的接待中" if h.is_open else "这个会话已经结束")


def matter_name(code: str | None) -> str | None:
    if not code:
        return None
    return matter_names().get(code, code)


def _named(desk: AgentDesk, item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "unit_name": desk.service.unit_name(item["unit"]),
            "matter_name": matter_name(item["matter"])}


def handoff_json(desk: AgentDesk, h: Handoff, user: StaffUser) -> dict[str, Any]:
    out = _named(desk, h.public())
    out["mine"] = h.state == "assigned" and h.agent == user.id
    out["can_manage"] = h.is_open and (out["mine"] or user.has_role("supervisor", "admin"))
    out["can_claim"] = h.state == "message" and user.has_role("agent")
    return out


def message_json(m: Outbound, *, steering: bool = False, proposed: bool = False
                 ) -> dict[str, Any]:
    """A stored message for the staff view: plain text only (never the bot's HTML), and only
    our own attachments, rewritten to the staff download route. ``steering``: a citizen's
    line that only steers the conversation (core.handoff.steering), which the script leaves
    out of the 派单 draft and never offers as the question of a 纳入知识库."""
    media = []
    for a in m.attachments:
        aid = id_from_url(a.url)
        if aid:
            media.append({"kind": a.kind, "url": f"{API}/attachments/{aid}", "mime": a.mime,
                          "size": a.size, "name": a.name})
    return {"id": m.message_id, "seq": m.seq, "sender": m.sender, "sender_name": m.sender_name,
            "action": m.action, "text": m.text, "attachments": media,
            "links": [{"title": x.title, "url": x.url} for x in m.links
                      if x.url.startswith(("https://", "http://"))],
            "steering": steering, "proposed": proposed, "created_at": m.created_at.isoformat()}


def stored_json(history: list[StoredMessage], proposed: set[str]) -> list[dict[str, Any]]:
    """The stored messages for the staff view, each citizen line flagged when it only steers
    (a line and the bot's replies to it are stored together, so a page holds both), each
    agent reply when it is already a KB candidate."""
    return [message_json(m.to_outbound(), steering=f, proposed=m.id in proposed)
            for m, f in zip(history, steering_flags(history), strict=True) if m.seq > 0]


# -- handlers ----------------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get(f"{API}/board")
@api
async def board(request: web.Request) -> web.StreamResponse:
    desk, user = desk_of(request), user_of(request)
    raw = await desk.board(user)
    out: dict[str, Any] = {key: [_named(desk, i) for i in items] for key, items in raw.items()}
    out["me"] = {"id": user.id, "display_name": user.display_name, "roles": user.roles,
                 "units": user.units}
    out["dispatch"] = desk.dispatcher is not None
    return web.json_response(out)


@routes.get(f"{API}/handoffs/{HID}")
@api
async def transcript(request: web.Request) -> web.StreamResponse:
    desk, user = desk_of(request), user_of(request)
    try:
        after = max(0, int(request.query.get("after", "0")))
    except ValueError:
        raise ValidationFailed("after 必须是整数") from None
    h, history = await desk.history(user, request.match_info["handoff_id"], after=after)
    out = {"handoff": handoff_json(desk, h, user),
           "messages": stored_json(history, await desk.proposed(
               [m.id for m in history if m.sender == "agent"]))}
    if after == 0:
        out["segments"] = [{"id": s.id, "unit_name": desk.service.unit_name(s.unit),
                            "state": s.state, "resolution": s.resolution, "note": s.note,
                            "agent_name": s.agent_name}
                           for s in await desk.store.for_conversation(h.conversation_id)]
    return web.json_response(out)


@routes.post(f"{API}/handoffs/{HID}/send")
@api
async def send(request: web.Request) -> web.StreamResponse:
    desk, user = desk_of(request), user_of(request)
    body = await _body(request, SendBody)
    hid = request.match_info["handoff_id"]
    h = await desk.get(user, hid)
    holding(h, user)
    media = []
    if body.attachments:
        store = attachments_of(request)
        for aid in body.attachments:
            try:
                meta, _ = await store.get(aid)
            except NotFound:
                meta = None
            # only files this agent uploaded into this conversation
            if meta is None or meta.conversation_id != h.conversation_id \
                    or meta.uploader != "agent" or meta.uploader_id != user.id:
                raise NotFound("图片或语音不存在或不属于这个会话，请重新选择")
            media.append(meta.to_attachment())
    try:
        out = await desk.send(user, hid, body.text, attachments=media or None)
    except BannedPhrase as exc:
        # the reason for the agent, and where it is in their box, so the box can highlight it
        lead = len(body.text) - len(body.text.lstrip())  # the desk checked the stripped text
        span = ({"start": exc.start + lead, "end": exc.end + lead} if exc.start is not None
                else {"start": None, "end": None})
        return error_response(exc, phrase=exc.phrase, category=exc.category, reason=exc.reason,
                              **span)
    return web.json_response({"message": message_json(out)})


async def _act(request: web.Request, action: str) -> web.StreamResponse:
    desk, user = desk_of(request), user_of(request)
    hid = request.match_info["handoff_id"]
    if action == "close":
        body = await _body(request, CloseBody)
        h = await desk.close(user, hid, body.resolution, body.note or None)
    elif action == "transfer":
        body = await _body(request, TransferBody)
        h = await desk.transfer(user, hid, body.unit, body.note)
    elif action == "claim":
        h = await desk.claim(user, hid)
    else:
        raise NotFound(action)
    log.info("workspace: %s %s %s", user.username, action, hid)
    return web.json_response({"handoff": handoff_json(desk, h, user)})


@routes.post(f"{API}/handoffs/{HID}/close")
@api
async def close(request: web.Request) -> web.StreamResponse:
    return await _act(request, "close")


@routes.post(f"{API}/handoffs/{HID}/transfer")
@api
async def transfer(request: web.Request) -> web.StreamResponse:
    return await _act(request, "transfer")


@routes.post(f"{API}/handoffs/{HID}/claim")
@api
async def claim(request: web.Request) -> web.StreamResponse:
    return await _act(request, "claim")


@routes.post(f"{API}/handoffs/{HID}/dispatch")
@api
async def dispatch(request: web.Request) -> web.StreamResponse:
    desk, user = desk_of(request), user_of(request)
    body = await _body(request, DispatchBody)
    if not body.summary.strip():
        raise ValidationFailed("请填写诉求摘要", [("dispatch", "summary", "empty")])
    hid = request.match_info["handoff_id"]
    ticket = await desk.dispatch(user, hid, summary=body.summary,
                                 contact=(body.contact or "").strip() or None)
    log.info("workspace: %s dispatched %s as ticket %s", user.username, hid, ticket.get("id"))
    return web.json_response({"ticket": {"id": ticket.get("id"), "status": ticket.get("status")}})


@routes.post(f"{API}/handoffs/{HID}/propose")
@api
async def propose(request: web.Request) -> web.StreamResponse:
    desk, user = desk_of(request), user_of(request)
    body = await _body(request, ProposeBody)
    cid = await desk.propose(user, request.match_info["handoff_id"], body.message_id,
                             body.question)
    return web.json_response({"candidate": cid}, status=201)


@routes.get(f"{API}/kb/search")
@api
async def kb_search(request: web.Request) -> web.StreamResponse:
    """The bot's knowledge for the agent: published entries ranked like the bot ranks them,
    each with its official answer as plain text (what one click puts in the reply box)."""
    desk_of(request)
    query = request.query.get("q", "").strip()[:200]
    if not query:
        return web.json_response({"hits": []})
    snap = request.config_dict[HUB].knowledge.snapshot
    hits = []
    for hit in snap.index.search(query, top=8):
        entry = snap.entry(hit.entry_id)
        if entry is None:
            continue
        hits.append({"entry_id": entry.id, "type": entry.type, "title": entry.display_title,
                     "matters": entry.matters, "score": round(float(hit.score), 3),
                     "text": html_to_text(answer_body(entry))[:MAX_REPLY]})
    return web.json_response({"hits": hits})


def mount(app: web.Application) -> None:
    from .workspace_media import routes as media_routes  # it builds on this module

    app.add_routes(routes)
    app.add_routes(media_routes)


__all__ = ["API", "DESK_ROLES", "HandoffDisabled", "desk_of",
           "error_response", "handoff_json", "matter_name", "message_json", "mount", "routes"]
