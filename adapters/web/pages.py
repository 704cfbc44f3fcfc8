"""Server-rendered pages of the web channel: the demo portal, public KB entries, the widget files.

String templates; every dynamic value goes through ``html.escape`` (``_e``) and every URL
through ``_href`` (http/https only). KB bodies are sanitised HTML (allow-list, nh3), sanitised
again here because some answer bodies are assembled from plain-text fields.
"""

from __future__ import annotations

import logging
import re
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from core.dialog.bot import answer_body
from core.kb.richtext import sanitize_html
from core.reference import department_name, matter_names

if TYPE_CHECKING:
    from core.kb.models import KbEntryBase

    from .adapter import WebAdapter

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
WIDGET_TAG = '<script src="/widget.js" defer></script>'
#: the pages load nothing inline and nothing from elsewhere but images in KB answers
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
       "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'; "
       "object-src 'none'")
#: matters shown on the demo portal's front page (their guides, when the KB has them)
#: the portal's popular matters, for citizens (个人服务) and for businesses (法人服务)
PERSONAL = ("M03", "M04", "M06", "M01", "M20", "M34")
BUSINESS = ("M12", "M21", "M22", "M30", "M28", "M32")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _href(url: str | None) -> str | None:
    if url and url.strip().lower().startswith(("https://", "http://")):
        return url.strip()
    return None


def _layout(title: str, main: str, *, lang: str = "zh-CN") -> str:
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="stylesheet" href="/portal.css">
</head>
<body class="bb-page">
<header class="bb-site-header">
  <div class="bb-site-inner">
    <a class="bb-site-brand" href="/"><span class="bb-site-emblem" aria-hidden="true">沪</span>
      <span>上海市一网通办</span></a>
    <nav aria-label="主导航">
      <a href="/">首页</a><a href="/#personal">个人服务</a><a href="/#business">法人服务</a><a href="/#help">办事帮助</a>
    </nav>
  </div>
</header>
<main class="bb-site-inner bb-site-main" id="main">
{main}
</main>
<footer class="bb-site-footer"><div class="bb-site-inner">
  <p>本页面为帮办（Bangban）开源项目的演示门户，内容仅供演示，不代表官方信息。</p>
  <p>咨询电话：12345 市民服务热线（7×24小时）</p>
</div></footer>
{WIDGET_TAG}
</body>
</html>
"""


def _headers(resp: web.Response) -> web.Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _snapshot(adapter: WebAdapter):
    try:
        return adapter.hub.knowledge.snapshot
    except (AttributeError, RuntimeError):  # knowledge not loaded yet
        return None


def portal(adapter: WebAdapter):
    async def page(request: web.Request) -> web.Response:
        snap = _snapshot(adapter)
        names = matter_names()

        def matters(anchor: str, heading: str, codes: tuple[str, ...]) -> str:
            """A section of popular matters, each linked to its guide when the KB has one."""
            items = []
            for code in codes:
                if code not in names:
                    continue
                guide = snap.guides.get(code) if snap else None
                label = _e(names[code])
                link = f'<a href="/kb/{_e(guide.id)}">{label}</a>' if guide else label
                items.append(f"    <li>{link}</li>")
            return (f'<section id="{anchor}" aria-labelledby="{anchor}-title">\n'
                    f'  <h2 id="{anchor}-title">{heading} · 热门事项</h2>\n'
                    f'  <ul class="bb-matters">\n' + "\n".join(items) + "\n  </ul>\n</section>")

        # one line per sentence: a line break between Chinese characters renders as a space
        main = f"""<section class="bb-hero" aria-labelledby="hero-title">
  <h1 id="hero-title">一网通办 · 便民服务</h1>
  <p>线上办事遇到问题？点击右下角“小申”，智能客服7×24小时为您解答；工作日工作时间可转线上人工帮办。</p>
</section>
{matters("personal", "个人服务", PERSONAL)}
{matters("business", "法人服务", BUSINESS)}
<section id="help" aria-labelledby="help-title">
  <h2 id="help-title">办事帮助</h2>
  <ul class="bb-help">
    <li>不知道需要什么材料？直接问小申，例如“居住证签注需要什么材料”。</li>
    <li>回答没有解决问题？点击“未解决”，可以转线上人工帮办。</li>
    <li>也可以拨打 <a href="tel:12345">12345 市民服务热线</a>。</li>
  </ul>
</section>"""
        resp = web.Response(text=_layout("上海市一网通办 · 智能客服小申", main),
                            content_type="text/html", charset="utf-8")
        adapter.ensure_cookie(request, resp)
        return _headers(resp)

    return page


def _source_url(entry: KbEntryBase) -> str | None:
    for field in ("source_url", "basis_url", "system_url", "website"):
        url = _href(getattr(entry, field, None))
        if url:
            return url
    return None


def _department(code: str | None) -> str | None:
    return department_name(code) if code else None


def _entry_main(entry: KbEntryBase) -> str:
    names = matter_names()
    matters = "、".join(_e(names.get(m, m)) for m in entry.matters)
    facts = [f"<dt>类型</dt><dd>{_e(entry.label)}</dd>"]
    if matters:
        facts.append(f"<dt>相关事项</dt><dd>{matters}</dd>")
    if dept := _department(getattr(entry, "updated_by", None)):
        facts.append(f"<dt>发布部门</dt><dd>{_e(dept)}</dd>")
    facts.append(f"<dt>更新时间</dt><dd>{_e(entry.updated_at.strftime('%Y-%m-%d'))}</dd>")
    phone = str(getattr(entry, "phone", None) or "")
    if dial := re.sub(r"[^0-9+]", "", phone):  # hotlines and departments: one tap to call
        facts.append(f'<dt>电话</dt><dd><a href="tel:{dial}">{_e(phone)}</a></dd>')
    source = _source_url(entry)
    if source:
        facts.append(f'<dt>来源</dt><dd><a href="{_e(source)}" rel="noopener noreferrer" '
                     f'target="_blank">查看原文（外部链接）</a></dd>')
    body = sanitize_html(answer_body(entry))
    return f"""<nav class="bb-crumbs" aria-label="当前位置"><a href="/">首页</a> › 知识库</nav>
<article class="bb-entry" aria-labelledby="entry-title">
  <h1 id="entry-title">{_e(entry.display_title)}</h1>
  <dl class="bb-facts">{''.join(facts)}</dl>
  <div class="bb-entry-body">{body}</div>
</article>"""


def kb_entry(adapter: WebAdapter):
    async def page(request: web.Request) -> web.Response:
        snap = _snapshot(adapter)
        entry_id = request.match_info["entry_id"]
        # the snapshot holds only published, valid entries: a draft or retired id is a 404
        entry = snap.entry(entry_id) if snap else None
        if entry is None:
            main = """<article class="bb-entry" aria-labelledby="entry-title">
  <h1 id="entry-title">未找到该知识条目</h1>
  <p>该内容不存在或已下线。您可以返回<a href="/">首页</a>，或点击右下角“小申”直接提问。</p>
</article>"""
            resp = web.Response(text=_layout("未找到该知识条目 · 上海市一网通办", main),
                                status=404, content_type="text/html", charset="utf-8")
        else:
            resp = web.Response(
                text=_layout(f"{entry.display_title} · 上海市一网通办", _entry_main(entry)),
                content_type="text/html", charset="utf-8")
        adapter.ensure_cookie(request, resp)
        return _headers(resp)

    return page


def static_file(name: str):
    path = STATIC / name

    async def serve(_request: web.Request) -> web.FileResponse:
        # revalidated each time (ETag / Last-Modified), so a deploy shows at once
        return web.FileResponse(path, headers={
            "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
            # the widget may be embedded by other origins' pages
            "Cross-Origin-Resource-Policy": "cross-origin",
        })

    return serve
