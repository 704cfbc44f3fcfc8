"""Server-rendered pages of the staff console (Simplified Chinese).

String templates, like the web channel's: every dynamic value goes through ``html.escape``
(``_e``). The pages load nothing inline and nothing from elsewhere — one stylesheet served from
here — so the console's Content-Security-Policy can forbid everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from core.conversations import SHANGHAI
from core.reference import department_name
from core.staff import ROLE_LABELS, StaffSession

STYLESHEET = "/console/static/console.css"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")

CSS = """\
*{box-sizing:border-box}
body{margin:0;font-family:"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;
  color:#1f2933;background:#f3f5f8;line-height:1.6}
.bb-top{background:#0b4f9c;color:#fff}
.bb-top-inner{max-width:960px;margin:0 auto;padding:.6rem 1rem;display:flex;
  align-items:center;justify-content:space-between;gap:1rem}
.bb-brand{font-weight:600;font-size:1.1rem}
.bb-who{display:flex;align-items:center;gap:.75rem}
.bb-who form{margin:0}
.bb-main{max-width:960px;margin:1.5rem auto;padding:0 1rem}
.bb-card{background:#fff;border:1px solid #d9dee5;border-radius:6px;padding:1.25rem 1.5rem;
  margin-bottom:1rem}
.bb-card h1,.bb-card h2{margin-top:0}
.bb-login{max-width:380px;margin:4rem auto}
.bb-login h1{font-size:1.3rem;margin-top:0}
label{display:block;margin:.75rem 0 .25rem;font-weight:500}
input[type=text],input[type=password]{width:100%;padding:.5rem;border:1px solid #aab4c0;
  border-radius:4px;font-size:1rem}
button{cursor:pointer;border:0;border-radius:4px;padding:.5rem 1.1rem;font-size:1rem;
  background:#0b4f9c;color:#fff}
.bb-top button{background:#fff;color:#0b4f9c;padding:.25rem .75rem;font-size:.9rem}
.bb-login button{width:100%;margin-top:1.25rem}
.bb-error{color:#b42318;background:#fef3f2;border:1px solid #fecdca;border-radius:4px;
  padding:.5rem .75rem}
.bb-hint{color:#52606d;font-size:.9rem}
dl.bb-facts{display:grid;grid-template-columns:8em 1fr;gap:.35rem 1rem;margin:0}
dl.bb-facts dt{color:#52606d}
dl.bb-facts dd{margin:0}
ul.bb-links{list-style:none;padding:0;margin:0}
ul.bb-links li{padding:.6rem 0;border-bottom:1px solid #eef1f4}
ul.bb-links li:last-child{border-bottom:0}
.bb-soon{display:inline-block;margin-left:.5rem;font-size:.8rem;color:#7b8794;
  border:1px solid #cbd2d9;border-radius:3px;padding:0 .35rem}
.bb-desc{display:block;color:#52606d;font-size:.9rem}
code{background:#eef1f4;padding:0 .25rem;border-radius:3px}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def role_names(roles: list[str]) -> str:
    return "、".join(ROLE_LABELS.get(r, r) for r in roles)


def unit_name(code: str) -> str:
    return department_name(code)  # a unit removed from codes.yaml still shows its code


def _layout(title: str, main: str, *, session: StaffSession | None = None, head: str = "",
            nav: str = "", body_class: str = "", wide: bool = False) -> str:
    """The console's one frame. ``head``: extra stylesheets/scripts; ``nav``: links shown in
    the top bar; ``wide``: a full-width application page (the workspace) that brings its own
    ``<main>`` and names itself in the top bar."""
    who = ""
    meta = ""
    if session is not None:
        meta = f'<meta name="csrf-token" content="{_e(session.csrf_token)}">\n'
        me = ' class="ws-me"' if wide else ""
        who = f"""<div class="bb-who">
      <span{me}>{_e(session.user.display_name)}</span>
      <form method="post" action="/console/logout">
        <input type="hidden" name="csrf_token" value="{_e(session.csrf_token)}">
        <button type="submit">退出登录</button>
      </form>
    </div>"""
    brand = f"帮办工作台 · {_e(title)}" if wide else "帮办工作台"
    nav = f'\n    <nav class="ws-nav" aria-label="工作台导航">{nav}</nav>' if nav else ""
    body = main if wide else f'<main class="bb-main" id="main">\n{main}\n</main>'
    body_attr = f' class="{_e(body_class)}"' if body_class else ""
    return f"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
{meta}<title>{_e(title)} · 帮办工作台</title>
<link rel="stylesheet" href="{STYLESHEET}">
{head}</head>
<body{body_attr}>
<header class="bb-top">
  <div class="bb-top-inner{' ws-top' if wide else ''}">
    <span class="bb-brand">{brand}</span>{nav}
    {who}
  </div>
</header>
{body}
</body>
</html>
"""


def login_page(csrf: str, *, username: str = "", next_path: str = "",
               error: str | None = None) -> str:
    alert = f'<p class="bb-error" role="alert">{_e(error)}</p>' if error else ""
    main = f"""<section class="bb-card bb-login" aria-labelledby="login-title">
  <h1 id="login-title">帮办工作台登录</h1>
  {alert}
  <form method="post" action="/console/login">
    <input type="hidden" name="csrf_token" value="{_e(csrf)}">
    <input type="hidden" name="next" value="{_e(next_path)}">
    <label for="username">用户名</label>
    <input type="text" id="username" name="username" value="{_e(username)}" maxlength="64"
           autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus>
    <label for="password">密码</label>
    <input type="password" id="password" name="password" maxlength="1024"
           autocomplete="current-password" required>
    <button type="submit">登录</button>
  </form>
  <p class="bb-hint">本系统仅供政务服务工作人员使用。忘记密码请联系本单位系统管理员重置。</p>
</section>"""
    return _layout("登录", main)


@dataclass(frozen=True)
class Link:
    """An entry of the landing page: a real link, or a section not built yet (no href)."""

    title: str
    description: str
    href: str | None = None


def links_for(session: StaffSession, *, portal: bool) -> list[Link]:
    """The landing page's entries for this user's roles. Only what exists gets an href."""
    user = session.user
    links: list[Link] = []
    if user.has_role("agent", "supervisor", "admin"):
        links.append(Link("坐席工作台", "接待转人工的群众咨询，多会话同时处理。",
                          "/console/workspace"))
    if user.has_role("supervisor", "admin"):
        links.append(Link("班组监控", "本单位坐席负载、排队情况与超时提醒。",
                          "/console/supervisor"))
    if user.has_role("kb_editor", "admin"):
        links.append(Link("知识库运营", "维护知识条目，处理未解答问题。"))
    if user.has_role("admin"):
        links.append(Link("用户管理", "添加、停用员工账号，重置密码，调整角色与所属单位。",
                          "/console/admin/users"))
        links.append(Link("服务状态", "数据库与 Redis 的就绪检查（JSON）。", "/readyz"))
    if portal:
        links.append(Link("一网通办门户（群众端）", "查看群众看到的页面与智能客服小申。", "/"))
    return links


def home_page(session: StaffSession, links: list[Link]) -> str:
    user = session.user
    units = "、".join(f"{_e(unit_name(u))}（{_e(u)}）" for u in user.units) or "无"
    items = []
    for link in links:
        if link.href:
            title = f'<a href="{_e(link.href)}">{_e(link.title)}</a>'
        else:
            title = f'{_e(link.title)}<span class="bb-soon">即将上线</span>'
        items.append(f'<li>{title}<span class="bb-desc">{_e(link.description)}</span></li>')
    expires = session.expires_at.astimezone(SHANGHAI)
    main = f"""<section class="bb-card" aria-labelledby="hello">
  <h1 id="hello">您好，{_e(user.display_name)}</h1>
  <dl class="bb-facts">
    <dt>用户名</dt><dd>{_e(user.username)}</dd>
    <dt>角色</dt><dd>{_e(role_names(user.roles))}</dd>
    <dt>所属单位</dt><dd>{units}</dd>
    <dt>登录有效期至</dt><dd>{_e(f"{expires:%Y-%m-%d %H:%M}")}（北京时间）</dd>
  </dl>
</section>
<section class="bb-card" aria-labelledby="sections">
  <h2 id="sections">功能入口</h2>
  <ul class="bb-links">
{chr(10).join(items)}
  </ul>
</section>"""
    return _layout("首页", main, session=session)


def message_page(title: str, message: str, *, session: StaffSession | None = None,
                 back: tuple[str, str] = ("/console/", "返回首页")) -> str:
    """A page that only says why something was refused (403, 404 …)."""
    main = f"""<section class="bb-card" aria-labelledby="msg-title">
  <h1 id="msg-title">{_e(title)}</h1>
  <p>{_e(message)}</p>
  <p><a href="{_e(back[0])}">{_e(back[1])}</a></p>
</section>"""
    return _layout(title, main, session=session)

