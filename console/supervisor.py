"""班组监控: the supervisors' view of their units, ``/console/supervisor``.

Per unit of the supervisor (every unit with something going on, for an admin): the agents with
their status and load (core.queue: heartbeats, caps), the waiting line with how long each citizen
has waited, the conversations being served, open first-response SLA breaches, and open 差评整改
follow-ups (core.ratings). Server-rendered; the page's script re-reads it when a workspace event
of these units arrives on the workspace socket (and every 30 s), and ticks the waiting times.
``GET /console/api/supervisor`` is the same overview as JSON.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from core.conversations import SHANGHAI
from core.db.schema import staff_users
from core.errors import BangbanError
from core.handoff import AgentDesk
from core.logging import mask_personal_data
from core.ratings import LEVELS, RatingStore
from core.staff import StaffSession, StaffUser

from .auth import login_required, staff_session
from .pages import _e
from .workspace import HandoffDisabled, desk_of, error_response, matter_name
from .workspace_page import PAGE as WORKSPACE, html_response, layout, unavailable

PATH = "/console/supervisor"
ROLES = ("supervisor", "admin")
STATUS_LABELS = {"online": "在线", "busy": "忙碌", "away": "离开", "offline": "离线"}
STATES = {"waiting": "排队中", "assigned": "接待中", "message": "留言"}
CHANNELS = {"web": "网页", "app": "随申办", "wechat": "微信", "alipay": "支付宝", "kiosk": "自助终端"}


def _units(desk: AgentDesk, user: StaffUser) -> list[str]:
    wanted = desk.units_of(user)
    return [u for u in desk.service.units if wanted is None or u in wanted]


async def _names(desk: AgentDesk, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    async with desk.store.engine.connect() as conn:
        rows = (await conn.execute(select(staff_users.c.id, staff_users.c.display_name)
                                   .where(staff_users.c.id.in_(sorted(ids))))).all()
    return {r[0]: r[1] for r in rows}


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


async def overview(desk: AgentDesk, user: StaffUser) -> dict[str, Any]:
    """Everything the view shows, for the user's units (JSON-ready)."""
    units = _units(desk, user)
    scope = None if desk.units_of(user) is None else units
    now = desk.service.clock()
    waiting_rows = {h.conversation_id: h for h in
                    await desk.store.in_states(("waiting",), units=scope)}
    serving = defaultdict(list)
    for h in await desk.store.in_states(("assigned",), units=scope):
        serving[h.unit].append(h)
    breaches = defaultdict(list)
    for h in await desk.store.breached_open(scope):
        breaches[h.unit].append(h)
    followups = defaultdict(list)
    for f in await RatingStore(desk.store.engine).followups(units=scope):
        followups[f["unit"]].append(f)
    agents = {u: await desk.queue.agents(u, now=now) for u in units}
    lines = {u: await desk.queue.waiting(u) for u in units}
    ids = {a.agent for states in agents.values() for a in states}
    ids |= {h.agent for hs in serving.values() for h in hs if h.agent}
    names = await _names(desk, ids)
    out = []
    for u in units:
        busy = agents[u] or lines[u] or serving[u] or breaches[u] or followups[u]
        if scope is None and not busy:
            continue  # an admin sees the units where something is going on
        line = []
        for w in lines[u]:
            h = waiting_rows.get(w.conversation)
            line.append({"position": w.position, "conversation": w.conversation,
                         "handoff": h.id if h else None, "channel": h.channel if h else None,
                         "matter": matter_name(h.matter) if h else None,
                         "enqueued_at": w.enqueued_at, "waited_s": round(now - w.enqueued_at)})
        out.append({
            "unit": u, "unit_name": desk.service.unit_name(u),
            "agents": [{"id": a.agent, "name": names.get(a.agent, a.agent), "status": a.status,
                        "load": a.load, "cap": a.cap} for a in agents[u]],
            "waiting": line,
            "serving": [{"handoff": h.id, "agent": h.agent,
                         "agent_name": h.agent_name or names.get(h.agent or "", ""),
                         "matter": matter_name(h.matter), "channel": h.channel,
                         "assigned_at": _iso(h.assigned_at),
                         "answered": h.first_response_at is not None,
                         "sla_breached": h.sla_breached} for h in serving[u]],
            "breaches": [{"handoff": h.id, "state": h.state, "agent_name": h.agent_name,
                          "matter": matter_name(h.matter),
                          "requested_at": _iso(h.requested_at)} for h in breaches[u]],
            "followups": [{"id": f["id"], "level": f.get("level"),
                           "level_name": LEVELS.get(f.get("level") or 0, ""),
                           "resolved": f.get("resolved"),
                           # a list staff read, like the ticket lists: numbers masked
                           "comment": f.get("comment") and mask_personal_data(f["comment"]),
                           "channel": f.get("channel"), "due_at": _iso(f.get("due_at")),
                           "agent_name": names.get(f.get("agent") or "", "")}
                          for f in followups[u]],
        })
    return {"now": now, "units": out}


# -- the page ----------------------------------------------------------------------------------


def _time(value: str | None) -> str:
    if not value:
        return ""
    return f"{datetime.fromisoformat(value).astimezone(SHANGHAI):%m-%d %H:%M}"


def _waited(seconds: int) -> str:
    m, s = divmod(max(0, seconds), 60)
    return f"{m}分{s:02d}秒" if m else f"{s}秒"


def _table(caption: str, head: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<h3>{_e(caption)}</h3><p class="ws-empty">{_e(empty)}</p>'
    th = "".join(f"<th scope=\"col\">{_e(h)}</th>" for h in head)
    return (f'<h3>{_e(caption)}</h3><div class="bb-table-wrap"><table class="sv-table">'
            f"<thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _link(handoff: str | None, label: str) -> str:
    if not handoff:
        return _e(label)
    return f'<a href="{WORKSPACE}?h={_e(handoff)}">{_e(label)}</a>'


def unit_section(u: dict[str, Any], now: float) -> str:
    agents = [f'<tr class="sv-{_e(a["status"])}"><td>{_e(a["name"])}</td>'
              f'<td>{_e(STATUS_LABELS.get(a["status"], a["status"]))}</td>'
              f'<td>{a["load"]} / {a["cap"]}</td></tr>' for a in u["agents"]]
    waiting = [f'<tr><td>{w["position"]}</td><td>{_link(w["handoff"], w["matter"] or "未识别事项")}'
               f'</td><td>{_e(CHANNELS.get(w["channel"] or "", w["channel"] or ""))}</td>'
               f'<td class="sv-waited" data-since="{w["enqueued_at"]:.3f}">'
               f'{_e(_waited(round(now - w["enqueued_at"])))}</td></tr>' for w in u["waiting"]]
    late = ' class="sv-late"'
    serving = [f'<tr{late if s["sla_breached"] else ""}>'
               f'<td>{_e(s["agent_name"])}</td><td>{_link(s["handoff"], s["matter"] or "未识别事项")}</td>'
               f'<td>{_e(_time(s["assigned_at"]))}</td>'
               f'<td>{"已响应" if s["answered"] else "未响应"}</td></tr>' for s in u["serving"]]
    breaches = [f'<tr class="sv-late"><td>{_link(b["handoff"], b["matter"] or "未识别事项")}</td>'
                f'<td>{_e(STATES.get(b["state"], b["state"]))}</td>'
                f'<td>{_e(b["agent_name"] or "—")}</td><td>{_e(_time(b["requested_at"]))}</td></tr>'
                for b in u["breaches"]]
    followups = [f'<tr><td>{_e(f["level_name"])}</td>'
                 f'<td>{_e({True: "已解决", False: "未解决"}.get(f["resolved"], "—"))}</td>'
                 f'<td>{_e(f["agent_name"] or "—")}</td><td>{_e(f["comment"] or "")}</td>'
                 f'<td>{_e(_time(f["due_at"]))}</td></tr>' for f in u["followups"]]
    online = sum(1 for a in u["agents"] if a["status"] == "online")
    return f"""<section class="bb-card sv-unit" aria-labelledby="sv-{_e(u["unit"])}">
  <h2 id="sv-{_e(u["unit"])}">{_e(u["unit_name"])}</h2>
  <p class="sv-summary">在线坐席 <strong>{online}</strong> · 排队 <strong>{len(u["waiting"])}</strong>
    · 接待中 <strong>{len(u["serving"])}</strong> · 超时 <strong>{len(u["breaches"])}</strong>
    · 差评待整改 <strong>{len(u["followups"])}</strong></p>
  {_table("坐席", ["坐席", "状态", "接待数 / 上限"], agents, "本单位暂无坐席上线记录")}
  {_table("排队", ["序号", "事项", "渠道", "已等待"], waiting, "无人排队")}
  {_table("接待中", ["坐席", "事项", "接入时间", "首次响应"], serving, "无")}
  {_table("超时未响应", ["会话", "状态", "坐席", "发起时间"], breaches, "无")}
  {_table("差评整改", ["评价", "是否解决", "坐席", "群众意见", "整改期限"], followups, "无")}
</section>"""


def supervisor_page(session: StaffSession, data: dict[str, Any]) -> str:
    sections = "\n".join(unit_section(u, data["now"]) for u in data["units"]) or \
        '<section class="bb-card"><p>您所属的单位暂无线上人工帮办数据。</p></section>'
    main = f"""<main class="bb-main sv-main" id="sv">
<p class="ws-conn" id="ws-conn" role="status"></p>
<div id="sv-board">
{sections}
</div>
</main>"""
    return layout(session, "班组监控", main, body_class="sv")


# -- handlers ----------------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get(PATH)
@login_required(roles=ROLES)
async def page(request: web.Request) -> web.StreamResponse:
    session = staff_session(request)
    try:
        desk = desk_of(request)
    except HandoffDisabled as exc:
        return html_response(unavailable(session, "班组监控", "班组监控不可用", exc), 404)
    return html_response(supervisor_page(session, await overview(desk, session.user)))


@routes.get("/console/api/supervisor")
@login_required(roles=ROLES)
async def api(request: web.Request) -> web.StreamResponse:
    try:
        desk = desk_of(request)
        return web.json_response(await overview(desk, staff_session(request).user))
    except BangbanError as exc:
        return error_response(exc)


def mount(app: web.Application) -> None:
    app.add_routes(routes)


__all__ = ["PATH", "mount", "overview", "routes"]
