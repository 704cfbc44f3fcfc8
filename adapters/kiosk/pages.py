"""The kiosk's HTTP side: the touch page, terminal registration, the print view, QR codes.

Pages are a string template (``templates/kiosk.html``) or small builders here; every dynamic
value goes through ``html.escape`` (``_e``). The pages load nothing inline and nothing from
elsewhere (CSP), and are never cached: a shared terminal's back button or cache must not
bring back a page of the last person.

Which terminal is asking is ``Devices.device_of`` (the registration cookie). The touch page
needs a registered terminal whose id matches ``?device=``; anything else is a 403 page that
says what to do. The print view and the QR codes show public KB content only, so they need no
registration (the print view is also useful opened from a staff PC).
"""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from aiohttp import web

from core.bodies import read_form
from core.dialog.bot import answer_body
from core.reference import department_name, matter_names
from core.routing import department_menu

from .devices import DEVICE_ID
from .render import continue_url, kiosk_html, qr_svg, snapshot

if TYPE_CHECKING:
    from .adapter import KioskAdapter

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
PAGE = Template((HERE / "templates" / "kiosk.html").read_text(encoding="utf-8"))
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; frame-src 'self'; frame-ancestors 'self'; base-uri 'none'; "
       "form-action 'self'; object-src 'none'")
ENTRY = r"{entry_id:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}}"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _headers(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on the
    # register form's POST, which the same-origin check must refuse; no address (with its
    # ?device=) leaves for another site either way
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _html(text: str, status: int = 200) -> web.Response:
    return _headers(web.Response(text=text, status=status, content_type="text/html",
                                 charset="utf-8"))  # type: ignore[return-value]


def _simple(title: str, body: str, *, status: int = 200, cls: str = "kq-plain") -> web.Response:
    return _html(f"""<!doctype html>
<html lang="zh-CN">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><link rel="stylesheet" href="/kiosk/static/kiosk.css">
<script src="/kiosk/static/kiosk.js" defer></script></head>
<body class="{cls}"><main class="kq-sheet">
{body}
</main></body></html>""", status)


def forbidden(reason: str, device: str | None = None) -> web.Response:
    register = ""
    if device and DEVICE_ID.match(device):
        register = (f'<p><a class="kq-btn" href="/kiosk/register?device={quote(device)}">'
                    f'注册本终端</a></p>')
    return _simple("终端未注册 · 自助服务终端", f"""<h1>本终端暂不能使用</h1>
<p class="kq-reason">{_e(reason)}</p>
<p>如需帮助，请咨询现场工作人员，或拨打 12345 市民服务热线。</p>
<p class="kq-small">管理员：请在配置 <code>channels.kiosk.devices</code> 中登记终端编号和密钥，
再在本终端完成注册（详见部署文档 docs/channels/kiosk.md）。</p>
{register}""", status=403)


# -- the touch page ---------------------------------------------------------------------------
def _menu(adapter: KioskAdapter) -> tuple[str, str, str]:
    """Department tabs, their panels of matter buttons, and each matter's popular questions."""
    snap = snapshot(adapter)
    faqs: dict[str, list] = {}
    if snap is not None and adapter.config.popular_per_matter:
        for entry in sorted(snap.entries.values(), key=lambda e: e.id or ""):
            if entry.type == "faq":
                for matter in entry.matters[:1]:
                    faqs.setdefault(matter, []).append(entry)
    tabs, panels, lists = [], [], []
    groups = [g for g in department_menu() if g.matters]
    for i, group in enumerate(groups):
        selected = "true" if i == 0 else "false"
        tabs.append(f'      <button type="button" role="tab" class="kq-dept" id="kq-tab-{i}" '
                    f'aria-controls="kq-panel-{i}" aria-selected="{selected}">'
                    f'{_e(group.name)}</button>')
        buttons = "".join(
            f'<li><button type="button" class="kq-btn kq-matter" data-payload="matter:{_e(code)}"'
            f' data-matter="{_e(code)}">{_e(name)}</button></li>' for code, name in group.matters)
        hidden = "" if i == 0 else " hidden"
        panels.append(f'    <div class="kq-panel" role="tabpanel" id="kq-panel-{i}" '
                      f'aria-labelledby="kq-tab-{i}"{hidden}><ul class="kq-matters">'
                      f'{buttons}</ul></div>')
        for code, _ in group.matters:
            picks = faqs.get(code, [])[:adapter.config.popular_per_matter]
            if picks:
                items = "".join(
                    f'<li><button type="button" class="kq-btn kq-question" '
                    f'data-payload="pick:{_e(e.id)}">{_e(e.display_title)}</button></li>'
                    for e in picks)
                lists.append(f'  <ul data-matter="{_e(code)}">{items}</ul>')
    return "\n".join(tabs), "\n".join(panels), "\n".join(lists)


def kiosk_page(adapter: KioskAdapter):
    async def page(request: web.Request) -> web.StreamResponse:
        device = request.query.get("device", "")
        token = request.query.get("token")
        if not DEVICE_ID.match(device) or not adapter.devices.known(device):
            return forbidden("本终端未登记，或终端编号不正确。")
        if token is not None:
            reason = await adapter.devices.check_bootstrap(device, token)
            if reason is not None:
                log.warning("kiosk: a bootstrap token for %s was refused", device)
                return forbidden(reason, device)
            # the token is spent; the address without it is what stays in the address bar
            resp = web.HTTPSeeOther(f"/kiosk?device={quote(device)}")
            adapter.devices.register(request, resp, device)
            log.info("kiosk: terminal %s registered by bootstrap token", device)
            raise _headers(resp)
        registered = adapter.devices.device_of(request)
        if registered is None:
            return forbidden("本终端尚未注册或注册已失效。", device)
        if registered != device:
            return forbidden("本终端注册的编号与访问地址中的编号不一致。", device)
        tabs, panels, faqs = _menu(adapter)
        cfg = adapter.config
        return _html(PAGE.substitute(
            device=_e(device), idle=cfg.idle_timeout_s, warning=cfg.idle_warning_s,
            max_length=cfg.max_message_length, tabs=tabs, panels=panels, faqs=faqs))

    return page


# -- registration -----------------------------------------------------------------------------
def _register_form(device: str, error: str = "", status: int = 200) -> web.Response:
    message = f'<p class="kq-reason" role="alert">{_e(error)}</p>' if error else ""
    return _simple("终端注册 · 自助服务终端", f"""<h1>自助服务终端注册</h1>
<p>请输入管理员提供的终端编号和密钥。注册后本终端会记住登记信息，无需再次输入。</p>
{message}
<form method="post" action="/kiosk/register" class="kq-register" autocomplete="off">
  <label>终端编号 <input name="device" value="{_e(device)}" required maxlength="32"
    pattern="[A-Za-z0-9_\\-]{{1,32}}"></label>
  <label>终端密钥 <input name="key" type="password" required minlength="32" maxlength="256"></label>
  <button type="submit" class="kq-btn">注册</button>
</form>""", status=status)


def register_form(adapter: KioskAdapter):
    async def page(request: web.Request) -> web.Response:
        device = request.query.get("device", "")
        return _register_form(device if DEVICE_ID.match(device) else "")

    return page


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc.lower() == (request.host or "").lower()


def register(adapter: KioskAdapter):
    async def submit(request: web.Request) -> web.StreamResponse:
        if not _same_origin(request):
            return forbidden("注册请求来源不正确。")
        if not await adapter.devices.allow_attempt(request):
            return _register_form("", "尝试次数过多，请一分钟后再试。", status=429)
        form = await read_form(request)
        device, key = str(form.get("device", "")).strip(), str(form.get("key", ""))
        if not (DEVICE_ID.match(device) and adapter.devices.check_key(device, key)):
            log.warning("kiosk: a registration with a wrong device id or key was refused")
            return _register_form(device if DEVICE_ID.match(device) else "",
                                  "终端编号或密钥不正确。", status=403)
        resp = web.HTTPSeeOther(f"/kiosk?device={quote(device)}")
        adapter.devices.register(request, resp, device)
        log.info("kiosk: terminal %s registered by form", device)
        raise _headers(resp)

    return submit


# -- print view and QR codes ------------------------------------------------------------------
def _department(code: str | None) -> str | None:
    return department_name(code) if code else None


def _section(adapter: KioskAdapter, entry, heading: str = "h1") -> str:
    names = matter_names()
    facts = []
    if entry.matters:
        facts.append(f"<dt>相关事项</dt><dd>{'、'.join(_e(names.get(m, m)) for m in entry.matters)}</dd>")
    if dept := _department(getattr(entry, "updated_by", None)):
        facts.append(f"<dt>发布部门</dt><dd>{_e(dept)}</dd>")
    facts.append(f"<dt>更新时间</dt><dd>{_e(entry.updated_at.strftime('%Y-%m-%d'))}</dd>")
    return (f'<section class="kp-entry"><{heading}>{_e(entry.display_title)}</{heading}>'
            f'<dl class="kp-facts">{"".join(facts)}</dl>'
            f'<div class="kp-body">{kiosk_html(answer_body(entry))}</div></section>')


def print_page(adapter: KioskAdapter):
    async def page(request: web.Request) -> web.Response:
        snap = snapshot(adapter)
        entry = snap.entry(request.match_info["entry_id"]) if snap else None
        if entry is None:
            return _simple("未找到 · 自助服务终端", "<h1>未找到该办事指南</h1>"
                           "<p>该内容不存在或已下线。</p>", status=404)
        parts = [_section(adapter, entry)]
        guide = snap.guides.get(entry.matters[0]) if entry.matters else None
        if guide is not None and guide.id != entry.id:
            parts.append(_section(adapter, guide, "h2"))
        url = continue_url(adapter, entry)
        qr = ""
        if url:
            qr = (f'<figure class="kp-qr"><img src="/kiosk/qr/{quote(entry.id)}.svg" '
                  f'alt="手机扫码查看：{_e(entry.display_title)}" width="180" height="180">'
                  f'<figcaption>手机扫码，继续查看或咨询<br><span class="kp-url">{_e(url)}'
                  f'</span></figcaption></figure>')
        body = f"""<header class="kp-head"><span>上海市一网通办 · 办事指南</span>
<nav class="kp-tools"><button type="button" class="kq-btn" data-action="print">打印</button></nav></header>
{''.join(parts)}
{qr}
<footer class="kp-foot">本页由自助服务终端打印，内容以有关部门正式发布为准。咨询电话：12345 市民服务热线。</footer>"""
        return _simple(f"{entry.display_title} · 打印", body, cls="kp")

    return page


def qr_code(adapter: KioskAdapter):
    async def svg(request: web.Request) -> web.Response:
        # QR codes only of our own entries' pages: never a code generator for any URL
        snap = snapshot(adapter)
        entry = snap.entry(request.match_info["entry_id"]) if snap else None
        url = continue_url(adapter, entry) if entry is not None else None
        if url is None:
            raise web.HTTPNotFound(text="no such entry")
        return web.Response(body=qr_svg(url), content_type="image/svg+xml", headers={
            "Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'"})

    return svg


def static_file(name: str):
    path = STATIC / name

    async def serve(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers={"Cache-Control": "no-cache",
                                               "X-Content-Type-Options": "nosniff"})

    return serve


def routes(adapter: KioskAdapter) -> list[web.AbstractRouteDef]:
    return [
        web.get("/kiosk", kiosk_page(adapter)),
        web.get("/kiosk/register", register_form(adapter)),
        web.post("/kiosk/register", register(adapter)),
        web.get(f"/kiosk/print/{ENTRY}", print_page(adapter)),
        web.get(f"/kiosk/qr/{ENTRY}.svg", qr_code(adapter)),
        web.get("/kiosk/static/kiosk.js", static_file("kiosk.js")),
        web.get("/kiosk/static/kiosk.css", static_file("kiosk.css")),
    ]
