"""用户管理's pages: the forms' models (the boundary) and the server-rendered HTML.

Kept apart from console.admin (the handlers, lock-out checks and audit) so each reads on its own.
Every value is escaped with console.pages._e.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.conversations import SHANGHAI
from core.reference import load_codes
from core.staff import (MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, ROLE_LABELS, ROLES,
                        StaffSession, StaffUser)

from .auth import CSRF_FIELD
from .pages import _e, _layout, role_names, unit_name

BASE = "/console/admin/users"
# not under BASE/: every word there could be a username
NEW_USER = "/console/admin/new-user"
ADMIN_CSS = "/console/static/admin.css"
FLASH_TTL_S = 120
LOCK_TIMEOUT_S = 10  # the guarded section takes milliseconds; a dead holder frees it by then
LOCK_WAIT_S = 5
STATUS_LABELS = {"active": "启用", "disabled": "已停用"}

SELF_DISABLE = "不能停用您自己的账号；如确需停用，请由另一位管理员操作。"
SELF_DEMOTE = "不能取消您自己的管理员角色；如确需调整，请由另一位管理员操作。"
LAST_ADMIN = "这是最后一个启用的管理员账号，不能停用或取消其管理员角色。"
NOT_ADMIN_NOW = "您的账号已不是启用的管理员账号，操作未执行。"
PASSWORD_REASONS = {
    "too short": f"密码太短：至少需要 {MIN_PASSWORD_LENGTH} 个字符。",
    "too long": f"密码太长：最多 {MAX_PASSWORD_LENGTH} 个字符。",
    "blank": "密码不能全是空格。",
    "same as the username": "密码不能与用户名相同。",
}
FIELD_ERRORS = {
    "username": "用户名须为 2–64 个字符：小写字母、数字、“.”“_”或“-”，以字母或数字开头。",
    "display_name": "请填写姓名，最多 64 个字符。",
    "roles": "请从列表中至少选择一个角色。",
    "units": "请从列表中选择所属单位。",
    "user": "坐席和班长至少要选择一个所属单位。",  # NewStaffUser's check across fields
}

CSS = """\
.bb-main,.bb-top-inner{max-width:1100px}
.bb-crumbs{font-size:.9rem;color:#52606d;margin:0 0 .75rem}
.bb-flash{color:#05603a;background:#ecfdf3;border:1px solid #abefc6;border-radius:4px;
  padding:.5rem .75rem;margin:0 0 1rem}
.bb-head{display:flex;align-items:center;justify-content:space-between;gap:1rem}
a.bb-button{display:inline-block;border-radius:4px;padding:.4rem 1rem;background:#0b4f9c;
  color:#fff;text-decoration:none}
.bb-filters{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1rem;margin:1rem 0}
.bb-filters label{display:inline;margin:0 .25rem 0 0}
select{padding:.4rem;border:1px solid #aab4c0;border-radius:4px;font-size:1rem;background:#fff}
select[multiple]{width:100%}
/* position: the visually hidden header inside (操作) is clipped by the wrapper, not the page */
.bb-table-wrap{overflow-x:auto;position:relative;max-width:100%}
table.bb-table{width:100%;border-collapse:collapse;font-size:.95rem}
.bb-table th,.bb-table td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #eef1f4;
  vertical-align:top}
.bb-table th{color:#52606d;font-weight:500;white-space:nowrap}
.bb-off{color:#b42318}
fieldset{border:0;padding:0;margin:.75rem 0 0}
legend{font-weight:500;padding:0;margin-bottom:.25rem}
label.bb-check{display:inline-flex;align-items:center;gap:.3rem;margin:0 1.25rem .25rem 0;
  font-weight:400}
.bb-field-error{color:#b42318;margin:.25rem 0 0;font-size:.9rem}
input[aria-invalid=true],select[aria-invalid=true]{border-color:#b42318}
.bb-actions{margin-top:1.25rem}
.bb-actions a{margin-left:1rem}
button.bb-danger{background:#b42318}
.bb-sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;border:0;overflow:hidden;
  clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}
@media (max-width:600px){
  .bb-card{padding:1rem}
  .bb-head{flex-wrap:wrap}
  table.bb-table{font-size:.9rem}
}
"""


# -- what the forms and the query string may carry (the boundary) -----------------------------


class _Form(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_max_length=4096)


class PasswordForm(_Form):
    password: str = ""
    password2: str = ""


class RolesForm(_Form):
    roles: list[str] = Field(default=[], max_length=20)
    units: list[str] = Field(default=[], max_length=200)


class AddUserForm(PasswordForm, RolesForm):
    username: str = ""
    display_name: str = ""


F = TypeVar("F", bound=_Form)


class UserFilter(BaseModel):
    """The list's filters; a value that is not one of ours means "all" (old bookmarks work)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    unit: str = ""
    role: str = ""
    status: str = ""

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        return v if v in ROLES else ""

    @field_validator("status")
    @classmethod
    def _status(cls, v: str) -> str:
        return v if v in STATUS_LABELS else ""

    def matches(self, user: StaffUser) -> bool:
        return ((not self.unit or self.unit in user.units)
                and (not self.role or self.role in user.roles)
                and (not self.status or (self.status == "active") == user.active))


# -- rendering --------------------------------------------------------------------------------


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _when(dt) -> str:
    return f"{dt.astimezone(SHANGHAI):%Y-%m-%d %H:%M}" if dt else "从未登录"


def _units_text(units: list[str]) -> str:
    return "、".join(f"{unit_name(u)}（{u}）" for u in units) or "无"


def _unit_choices(extra: Iterable[str] = ()) -> dict[str, str]:
    choices = dict(load_codes().department)
    for code in extra:  # units on accounts that codes.yaml no longer lists
        choices.setdefault(code, code)
    return choices


def _options(choices: dict[str, str], selected: list[str] | str, blank: str | None = None) -> str:
    chosen = {selected} if isinstance(selected, str) else set(selected)
    out = [f'<option value="">{_e(blank)}</option>'] if blank is not None else []
    for value, label in choices.items():
        mark = " selected" if value in chosen else ""
        out.append(f'<option value="{_e(value)}"{mark}>{_e(label)}</option>')
    return "".join(out)


def _error(errors: dict[str, str], field: str) -> tuple[str, str]:
    """The attributes for an input, and the message to put after it."""
    if field not in errors:
        return "", ""
    return (f' aria-invalid="true" aria-describedby="err-{field}"',
            f'<p class="bb-field-error" id="err-{field}">{_e(errors[field])}</p>')


def _page(session: StaffSession, title: str, crumbs: list[tuple[str, str | None]], body: str,
          flash: str | None = None) -> str:
    trail = " › ".join(f'<a href="{_e(h)}">{_e(t)}</a>' if h else _e(t) for t, h in crumbs)
    note = f'<p class="bb-flash" role="status">{_e(flash)}</p>' if flash else ""
    main = f'<nav class="bb-crumbs" aria-label="位置">{trail}</nav>\n{note}\n{body}'
    return _layout(title, main, session=session,
                   head=f'<link rel="stylesheet" href="{ADMIN_CSS}">\n')


def _csrf(session: StaffSession) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{_e(session.csrf_token)}">'


def _roles_units_fields(roles: list[str], units: list[str], errors: dict[str, str]) -> str:
    boxes = "".join(
        f'<label class="bb-check"><input type="checkbox" name="roles" value="{_e(r)}"'
        f'{" checked" if r in roles else ""}> {_e(ROLE_LABELS[r])}</label>' for r in ROLES)
    roles_attr, roles_err = _error(errors, "roles")
    units_attr, units_err = _error(errors, "units")
    # the chosen units first: a multi-select shows only its first rows without scrolling
    known = _unit_choices(units)
    choices = {c: f"{known[c]}（{c}）" for c in [*units, *known] if c in known}
    return f"""<fieldset{roles_attr}><legend>角色</legend>{boxes}{roles_err}</fieldset>
    <label for="units">所属单位</label>
    <select id="units" name="units" multiple size="8"{units_attr}>
      {_options(choices, units)}</select>
    {units_err}
    <p class="bb-hint">按住 Ctrl（Mac 为 ⌘）可多选。坐席和班长至少选一个单位，管理员和知识库编辑可不选。</p>"""


def _password_fields(errors: dict[str, str], label: str) -> str:
    attr1, err1 = _error(errors, "password")
    attr2, err2 = _error(errors, "password2")
    return f"""<label for="password">{_e(label)}</label>
    <input type="password" id="password" name="password" maxlength="{MAX_PASSWORD_LENGTH}"
           autocomplete="new-password" required{attr1}>{err1}
    <label for="password2">再次输入密码</label>
    <input type="password" id="password2" name="password2" maxlength="{MAX_PASSWORD_LENGTH}"
           autocomplete="new-password" required{attr2}>{err2}
    <p class="bb-hint">至少 {MIN_PASSWORD_LENGTH} 个字符，不能与用户名相同。</p>"""


def _alert(errors: dict[str, str]) -> str:
    return '<p class="bb-error" role="alert">请更正下面标出的问题。</p>' if errors else ""


def list_page(session: StaffSession, users: list[StaffUser], chosen: UserFilter,
              flash: str | None) -> str:
    units = _unit_choices(sorted({c for u in users for c in u.units}))
    if chosen.unit not in units:  # a unit nobody could choose here: the filter shows "all"
        chosen = chosen.model_copy(update={"unit": ""})
    shown = [u for u in users if chosen.matches(u)]
    rows = []
    for u in shown:
        me = "（您）" if u.id == session.user.id else ""
        status = STATUS_LABELS["active"] if u.active else \
            f'<span class="bb-off">{STATUS_LABELS["disabled"]}</span>'
        rows.append(
            f'<tr data-username="{_e(u.username)}"><td>{_e(u.username)}{me}</td>'
            f'<td>{_e(u.display_name)}</td><td>{_e(role_names(u.roles))}</td>'
            f'<td>{_e(_units_text(u.units))}</td><td>{status}</td>'
            f'<td>{_e(_when(u.last_login_at))}</td>'
            f'<td><a href="{BASE}/{_e(u.username)}" aria-label="管理 {_e(u.username)}">管理</a>'
            f'</td></tr>')
    table = ("<p>没有符合条件的账号。</p>" if not shown else f"""<div class="bb-table-wrap">
  <table class="bb-table"><caption class="bb-sr">员工账号</caption>
    <thead><tr><th scope="col">用户名</th><th scope="col">姓名</th><th scope="col">角色</th>
      <th scope="col">所属单位</th><th scope="col">状态</th><th scope="col">最近登录</th>
      <th scope="col"><span class="bb-sr">操作</span></th></tr></thead>
    <tbody>{"".join(rows)}</tbody>
  </table></div>""")
    count = f"共 {len(users)} 个账号" + (f"，符合条件的 {len(shown)} 个" if chosen != UserFilter()
                                       else "")
    body = f"""<section class="bb-card" aria-labelledby="users-title">
  <div class="bb-head"><h1 id="users-title">用户管理</h1>
    <a class="bb-button" href="{NEW_USER}">新增用户</a></div>
  <form method="get" action="{BASE}" class="bb-filters" role="search" aria-label="筛选账号">
    <span><label for="f-unit">单位</label>
      <select id="f-unit" name="unit">{_options(units, chosen.unit, "全部单位")}</select></span>
    <span><label for="f-role">角色</label>
      <select id="f-role" name="role">{_options(ROLE_LABELS, chosen.role, "全部角色")}</select></span>
    <span><label for="f-status">状态</label>
      <select id="f-status" name="status">{_options(STATUS_LABELS, chosen.status, "全部")}</select>
    </span>
    <button type="submit">筛选</button> <a href="{BASE}">清除筛选</a>
  </form>
  <p class="bb-hint">{_e(count)}</p>
  {table}
</section>"""
    return _page(session, "用户管理", [("首页", "/console/"), ("用户管理", None)], body, flash)


def new_user_page(session: StaffSession, form: AddUserForm | None = None,
                  errors: dict[str, str] | None = None) -> str:
    form = form or AddUserForm()
    errors = errors or {}
    user_attr, user_err = _error(errors, "username")
    name_attr, name_err = _error(errors, "display_name")
    body = f"""<section class="bb-card" aria-labelledby="new-title">
  <h1 id="new-title">新增用户</h1>
  {_alert(errors)}
  <form method="post" action="{NEW_USER}" novalidate>
    {_csrf(session)}
    <label for="username">用户名</label>
    <input type="text" id="username" name="username" value="{_e(form.username)}" maxlength="64"
           autocomplete="off" autocapitalize="none" spellcheck="false" required{user_attr}>
    {user_err}
    <p class="bb-hint">登录用，2–64 个字符：小写字母、数字、“.”“_”“-”（可用工号）。</p>
    <label for="display_name">姓名</label>
    <input type="text" id="display_name" name="display_name" value="{_e(form.display_name)}"
           maxlength="64" required{name_attr}>{name_err}
    {_password_fields(errors, "初始密码")}
    {_roles_units_fields(form.roles, form.units, errors)}
    <div class="bb-actions"><button type="submit">添加用户</button>
      <a href="{BASE}">取消</a></div>
  </form>
</section>"""
    return _page(session, "新增用户", [("首页", "/console/"), ("用户管理", BASE),
                                   ("新增用户", None)], body)


def user_page(session: StaffSession, user: StaffUser, *, flash: str | None = None,
              roles: list[str] | None = None, units: list[str] | None = None,
              errors: dict[str, str] | None = None) -> str:
    errors = errors or {}
    url = f"{BASE}/{_e(user.username)}"
    roles_errors = {k: v for k, v in errors.items() if k in ("roles", "units")}
    password_errors = {k: v for k, v in errors.items() if k in ("password", "password2")}
    status_attr, status_err = _error(errors, "status")
    if not user.active:
        status_form = f"""<p>该账号已停用，不能登录。</p>
  <form method="post" action="{url}/enable">{_csrf(session)}
    <button type="submit">启用账号</button></form>"""
    elif user.id == session.user.id:
        status_form = f"<p>这是您自己的账号，不能在此停用。</p>{status_err}"
    else:
        status_form = f"""<p class="bb-hint">停用后该用户立即退出登录且不能再登录；账号保留，可随时重新启用。</p>
  <form method="post" action="{url}/disable">{_csrf(session)}
    <button type="submit" class="bb-danger"{status_attr}>停用账号</button>{status_err}</form>"""
    body = f"""<section class="bb-card" aria-labelledby="user-title">
  <h1 id="user-title">{_e(user.display_name)}</h1>
  <dl class="bb-facts">
    <dt>用户名</dt><dd>{_e(user.username)}</dd>
    <dt>角色</dt><dd>{_e(role_names(user.roles))}</dd>
    <dt>所属单位</dt><dd>{_e(_units_text(user.units))}</dd>
    <dt>状态</dt><dd>{STATUS_LABELS["active" if user.active else "disabled"]}</dd>
    <dt>最近登录</dt><dd>{_e(_when(user.last_login_at))}</dd>
    <dt>创建时间</dt><dd>{_e(_when(user.created_at))}</dd>
  </dl>
</section>
<section class="bb-card" aria-labelledby="roles-title">
  <h2 id="roles-title">角色与所属单位</h2>
  {_alert(roles_errors)}
  <form method="post" action="{url}/roles" novalidate>{_csrf(session)}
    {_roles_units_fields(user.roles if roles is None else roles,
                         user.units if units is None else units, roles_errors)}
    <div class="bb-actions"><button type="submit">保存角色与单位</button></div>
  </form>
</section>
<section class="bb-card" aria-labelledby="password-title">
  <h2 id="password-title">重置密码</h2>
  <p class="bb-hint">重置后该用户的所有登录会话立即结束，需用新密码重新登录。请通过安全渠道告知新密码。</p>
  {_alert(password_errors)}
  <form method="post" action="{url}/password" novalidate>{_csrf(session)}
    {_password_fields(password_errors, "新密码")}
    <div class="bb-actions"><button type="submit">重置密码</button></div>
  </form>
</section>
<section class="bb-card" aria-labelledby="status-title">
  <h2 id="status-title">账号状态</h2>
  {status_form}
</section>"""
    return _page(session, f"用户 {user.username}",
                 [("首页", "/console/"), ("用户管理", BASE), (user.username, None)], body, flash)


