"""坐席工作台, the page: ``/console/workspace``, its script and stylesheet, and 常用语.

The page is a server-rendered shell: the canned replies, the unit picker and the close codes are
rendered here (escaped); ``static/workspace.js`` fills the lists and the transcript from the
JSON API (:mod:`console.workspace`) and keeps them live from the websocket
(:mod:`console.workspace_socket`). The same frame (:func:`layout`) serves 班组监控.

The console's Content-Security-Policy forbids scripts; these pages extend it with exactly what
they need (our own script, fetch and the websocket to ourselves, voice playback) and nothing
inline. The script and stylesheet are served behind the console's sign-in like every other
path under ``/console``.

常用语 come from ``config/canned_replies.yaml``: read and validated when the app is made, so a
bad file stops start-up with the file and the field named.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, \
    model_validator

from core.appkeys import SETTINGS
from core.errors import ConfigError
from core.handoff import AgentDesk
from core.handoff.desk import CLOSE_RESOLUTIONS, MAX_REPLY
from core.hours import load_units
from core.paths import config_dir
from core.staff import StaffSession, StaffUser

from .auth import login_required, staff_session
from .pages import CSP, _e, _layout
from .workspace import DESK_ROLES, MAX_SUMMARY, HandoffDisabled, desk_of

PAGE = "/console/workspace"
STATIC = Path(__file__).resolve().parent / "static"
SCRIPT = "/console/static/workspace.js"
STYLE = "/console/static/workspace.css"
#: the console's policy plus our own script, fetch / websocket to ourselves, voice playback
PAGE_CSP = CSP + "; script-src 'self'; connect-src 'self'; media-src 'self'"


# -- 常用语 (config/canned_replies.yaml) -------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CannedReply(_Strict):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=MAX_REPLY)]


def _unique_titles(items: list[CannedReply]) -> list[CannedReply]:
    seen: set[str] = set()
    for item in items:
        if item.title in seen:
            raise ValueError(f"title {item.title!r} is used twice")
        seen.add(item.title)
    return items


class CannedReplies(_Strict):
    common: list[CannedReply] = Field(default_factory=list, max_length=200)
    units: dict[str, list[CannedReply]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _titles(self) -> CannedReplies:
        _unique_titles(self.common)
        for items in self.units.values():
            _unique_titles(items)
        return self

    def for_user(self, user: StaffUser) -> list[CannedReply]:
        out = list(self.common)
        for unit in user.units:
            out.extend(self.units.get(unit, []))
        return out


CANNED = web.AppKey("canned_replies", CannedReplies)


def load_canned(path: Path | None = None, units: set[str] | None = None) -> CannedReplies:
    """Read and validate the canned replies; a ConfigError names the file and the field."""
    path = path or config_dir() / "canned_replies.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        canned = CannedReplies.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the canned replies ({exc})") from exc
    except ValidationError as exc:
        raise ConfigError("; ".join(
            f"{path}: {'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
            f"{err['msg'].removeprefix('Value error, ')}" for err in exc.errors())) from None
    unknown = sorted(set(canned.units) - units) if units is not None else []
    if unknown:
        raise ConfigError(f"{path}: units.{unknown[0]}: unknown unit (not in the units file)")
    return canned


# -- the page ----------------------------------------------------------------------------------


def layout(session: StaffSession, title: str, main: str, *, script: str | None = SCRIPT,
           body_class: str = "") -> str:
    """The console's frame, full width, with the workspace's stylesheet and script."""
    user = session.user
    nav = ['<a href="/console/">首页</a>']
    if user.has_role(*DESK_ROLES):
        nav.append(f'<a href="{PAGE}">坐席工作台</a>')
    if user.has_role("supervisor", "admin"):
        nav.append('<a href="/console/supervisor">班组监控</a>')
    head = f'<link rel="stylesheet" href="{STYLE}">\n'
    if script:
        head += f'<script src="{script}" defer></script>\n'
    return _layout(title, main, session=session, head=head, nav="".join(nav),
                   body_class=f"ws {body_class}".strip(), wide=True)


def unavailable(session: StaffSession, title: str, heading: str, why: object) -> str:
    """The page said when human help is switched off (handoff.enabled: false)."""
    return layout(session, title, f'<main class="bb-main"><section class="bb-card"><h1>'
                                  f'{_e(heading)}</h1><p>{_e(why)}</p></section></main>',
                  script=None)


def html_response(body: str, status: int = 200) -> web.Response:
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Content-Security-Policy"] = PAGE_CSP
    return resp


def workspace_page(session: StaffSession, desk: AgentDesk, canned: list[CannedReply]) -> str:
    units = '<option value="">请选择单位</option>' + "".join(
        f'<option value="{_e(code)}">{_e(u.name)}</option>' for code, u in desk.service.units.items())
    codes = "".join(f'<option value="{_e(k)}">{_e(v)}</option>'
                    for k, v in CLOSE_RESOLUTIONS.items())
    replies = "".join(
        f'<li><button type="button" class="ws-insert" data-text="{_e(c.text)}" '
        f'title="{_e(c.text)}">{_e(c.title)}</button></li>' for c in canned) \
        or '<li class="ws-empty">没有配置常用语</li>'
    dispatch = desk.dispatcher is not None
    off = "" if dispatch else " disabled"
    dispatch_note = "" if dispatch else '<p class="ws-off" id="ws-dispatch-off">未配置12345派单</p>'
    is_agent = session.user.has_role("agent")
    presence = "" if not is_agent else """<div class="ws-presence" role="group" aria-label="接待状态">
      <span>状态：<strong id="ws-status">离线</strong></span>
      <button type="button" data-status="online">上线</button>
      <button type="button" data-status="busy">忙碌</button>
      <button type="button" data-status="away">离开</button>
    </div>"""
    main = f"""<main class="ws-main" id="ws" data-user="{_e(session.user.id)}"
      data-agent="{'1' if is_agent else ''}" data-max="{MAX_REPLY}">
  <aside class="ws-lists" aria-label="会话列表">
    {presence}
    <p class="ws-conn" id="ws-conn" role="status"></p>
    <section aria-labelledby="h-mine"><h2 id="h-mine">我的会话</h2>
      <ul class="ws-list" id="ws-mine" data-empty="暂无接待中的会话"></ul></section>
    <section aria-labelledby="h-breach"><h2 id="h-breach">超时提醒</h2>
      <ul class="ws-list" id="ws-breaches" data-empty="无"></ul></section>
    <section aria-labelledby="h-wait"><h2 id="h-wait">排队中</h2>
      <ul class="ws-list" id="ws-waiting" data-empty="无人排队"></ul></section>
    <section aria-labelledby="h-left"><h2 id="h-left">留言</h2>
      <ul class="ws-list" id="ws-messages" data-empty="暂无留言"></ul></section>
  </aside>
  <section class="ws-chat" aria-labelledby="ws-title">
    <header class="ws-chat-head">
      <h1 id="ws-title">请从左侧选择一个会话</h1>
      <p id="ws-facts" class="bb-hint"></p>
    </header>
    <div class="ws-log" id="ws-log" role="log" aria-label="会话记录" aria-live="polite"></div>
    <p class="bb-error ws-alert" id="ws-alert" role="alert" hidden></p>
    <form class="ws-reply" id="ws-reply" hidden>
      <label for="ws-text" class="bb-sr">回复内容</label>
      <textarea id="ws-text" maxlength="{MAX_REPLY}" rows="3" placeholder="输入回复，Ctrl+Enter 发送"></textarea>
      <div class="ws-reply-bar">
        <label class="ws-file">发送图片或语音<input type="file" id="ws-file"
          accept="image/png,image/jpeg,image/gif,image/webp,audio/mpeg,audio/amr,.amr,.mp3,audio/mp4,.m4a,audio/wav,.wav,audio/ogg,.ogg"></label>
        <span id="ws-pending" class="bb-hint"></span>
        <button type="submit" id="ws-send">发送</button>
      </div>
    </form>
    <div class="ws-actions" id="ws-actions" hidden>
      <form id="ws-claim" hidden><button type="submit">接待这条留言</button></form>
      <form id="ws-close" class="ws-act"><label for="ws-resolution">结案</label>
        <select id="ws-resolution">{codes}</select>
        <input type="text" id="ws-close-note" maxlength="500" placeholder="备注（可选）" aria-label="结案备注">
        <button type="submit">结案</button></form>
      <form id="ws-transfer" class="ws-act"><label for="ws-unit">转办</label>
        <select id="ws-unit">{units}</select>
        <input type="text" id="ws-transfer-note" maxlength="500" placeholder="转办说明" aria-label="转办说明">
        <button type="submit">转办</button></form>
      <details class="ws-dispatch" id="ws-dispatch-box"><summary>派单到12345{"" if dispatch else "（未配置）"}</summary>
        <form id="ws-dispatch"><fieldset{off}><legend class="bb-sr">派单到12345</legend>
        {dispatch_note}
        <label for="ws-summary">诉求摘要</label>
        <textarea id="ws-summary" rows="3" maxlength="{MAX_SUMMARY}"></textarea>
        <label for="ws-contact">联系方式（可选）</label>
        <input type="text" id="ws-contact" maxlength="64" autocomplete="off">
        <button type="submit">派单</button></fieldset></form></details>
    </div>
  </section>
  <aside class="ws-tools" aria-label="辅助工具">
    <section aria-labelledby="h-kb"><h2 id="h-kb">知识库</h2>
      <form id="ws-kb" role="search"><label for="ws-kb-q" class="bb-sr">搜索知识库</label>
        <input type="search" id="ws-kb-q" maxlength="200" placeholder="搜索知识库">
        <button type="submit">搜索</button></form>
      <ul class="ws-kb-hits" id="ws-kb-hits"></ul></section>
    <section aria-labelledby="h-canned"><h2 id="h-canned">常用语</h2>
      <ul class="ws-canned">{replies}</ul></section>
  </aside>
</main>"""
    return layout(session, "坐席工作台", main)


# -- handlers ----------------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get(PAGE)
@login_required(roles=DESK_ROLES)
async def page(request: web.Request) -> web.StreamResponse:
    session = staff_session(request)
    try:
        desk = desk_of(request)
    except HandoffDisabled as exc:
        return html_response(unavailable(session, "坐席工作台", "工作台不可用", exc), 404)
    canned = request.config_dict[CANNED].for_user(session.user)
    return html_response(workspace_page(session, desk, canned))


@routes.get(SCRIPT)
async def script(_request: web.Request) -> web.StreamResponse:
    return _static("workspace.js", "application/javascript")


@routes.get(STYLE)
async def style(_request: web.Request) -> web.StreamResponse:
    return _static("workspace.css", "text/css")


@functools.cache
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _static(name: str, content_type: str) -> web.Response:
    resp = web.Response(text=_read(name), content_type=content_type, charset="utf-8")
    resp.headers["Cache-Control"] = "private, max-age=300"
    return resp


def mount(app: web.Application) -> None:
    settings = app[SETTINGS]
    units = set(load_units(settings.handoff.units_file)) if settings.handoff.enabled else None
    app[CANNED] = load_canned(None, units)
    app.add_routes(routes)


__all__ = ["CANNED", "CannedReplies", "PAGE", "html_response", "layout", "load_canned", "mount",
           "routes", "workspace_page"]
