"""用户管理: the administrators' page of staff accounts, under ``/console/admin``.

Admins only: ``login_required(roles=("admin",))`` gives other roles 403 and sends anyone not
signed in to the login page. Every change is a form POST carrying the session's CSRF token and
answered POST-redirect-GET; the confirmation waits in Redis for the next page of that session.

Lock-out protection: an admin cannot disable their own account or drop their own admin role, and
no change may leave the console without an active admin. Those checks read the accounts afresh
under a Redis lock that every app process takes, so two admins disabling each other at the same
moment cannot both succeed. ``bangban users`` on the server bypasses the lock; it is also the
way back in should the console ever be locked out.

Audit: core.staff keeps no history of account changes, so each change is one ``audit`` line in
this module's log with the acting admin, the action, the account and what changed (never a
password), and the same as a dict in the record's ``audit`` attribute for structured handlers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar, get_origin

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.exceptions import LockError

from core.appkeys import HUB, SETTINGS
from core.conversations import SHANGHAI
from core.errors import Conflict, NotFound, ValidationFailed
from core.reference import load_codes
from core.staff import (MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, ROLE_LABELS, ROLES, USERNAME,
                        NewStaffUser, StaffSession, StaffUser, check_password,
                        normalise_username)

from .auth import CSRF_FIELD, STAFF, login_required, staff_session
from .pages import _e, _layout, message_page, role_names, unit_name

log = logging.getLogger(__name__)

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
.bb-table-wrap{overflow-x:auto}
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
.bb-sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);
  white-space:nowrap}
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


async def _read_form(request: web.Request, model: type[F]) -> F:
    form = await request.post()
    data = {}
    for name, field in model.model_fields.items():
        values = form.getall(name, [])
        if get_origin(field.annotation) is list:
            data[name] = values
        elif values:
            data[name] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError:  # a file instead of text, or far too much: not our page's form
        raise web.HTTPBadRequest(text=message_page("请求无效", "提交的表单内容无效。",
                                                   session=staff_session(request)),
                                 content_type="text/html") from None


# -- checks -----------------------------------------------------------------------------------


def _new_user_errors(username: str, display_name: str, roles: list[str],
                     units: list[str]) -> tuple[NewStaffUser | None, dict[str, str]]:
    """core.staff's own validation, its problems keyed by form field and said in Chinese."""
    try:
        return NewStaffUser.create(username, roles=roles, units=units,
                                   display_name=display_name), {}
    except ValidationFailed as exc:
        errors: dict[str, str] = {}
        for _, field, _reason in exc.problems:
            key = field.split(".")[0]
            target = "units" if key == "user" else key
            errors.setdefault(target, FIELD_ERRORS.get(key, "输入有误，请检查。"))
        return None, errors


def _password_errors(form: PasswordForm, username: str) -> dict[str, str]:
    try:
        check_password(form.password, username)  # the rules of `bangban users add`
    except ValidationFailed as exc:
        reason = exc.problems[0][2] if exc.problems else ""
        return {"password": PASSWORD_REASONS.get(reason, "密码不符合要求。")}
    if form.password != form.password2:
        return {"password2": "两次输入的密码不一致。"}
    return {}


def lockout_problem(users: list[StaffUser], actor_id: str, target: StaffUser, *,
                    active: bool, roles: list[str]) -> str | None:
    """Why giving ``target`` this status and these roles would lock the console out, or None.

    ``users`` must be read afresh under the accounts lock (see ``_accounts_locked``).
    """
    if target.id == actor_id and not active:
        return SELF_DISABLE
    if target.id == actor_id and "admin" not in roles:
        return SELF_DEMOTE
    # implied by the two above while the actor is an active admin; kept as the invariant itself
    others = [u for u in users if u.id != target.id and u.active and u.has_role("admin")]
    if not others and not (active and "admin" in roles):
        return LAST_ADMIN
    return None


class _Busy(Exception):
    pass


@contextlib.asynccontextmanager
async def _accounts_locked(request: web.Request) -> AsyncIterator[list[StaffUser]]:
    """Every account, read afresh while holding the lock that every app process takes before
    a change that could lock the console out (so two such changes never interleave)."""
    name = f"{request.config_dict[SETTINGS].redis.prefix}console:admin:accounts-lock"
    lock = request.config_dict[HUB].redis.lock(name, timeout=LOCK_TIMEOUT_S,
                                               blocking_timeout=LOCK_WAIT_S)
    if not await lock.acquire():
        raise _Busy
    try:
        yield await request.config_dict[STAFF].list_users()
    finally:
        with contextlib.suppress(LockError):  # held past its timeout: nothing left to free
            await lock.release()


# -- audit and confirmations ------------------------------------------------------------------


def _audit(request: web.Request, action: str, target: str, **details: object) -> None:
    record = {"action": action, "actor": staff_session(request).user.username,
              "target": target, **details, "remote": request.remote}
    line = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in record.items())
    log.info("audit %s", line, extra={"audit": record})


def _flash_key(request: web.Request) -> str:
    who = hashlib.sha256(staff_session(request).id.encode()).hexdigest()[:32]
    return f"{request.config_dict[SETTINGS].redis.prefix}console:flash:{who}"


async def _done(request: web.Request, message: str, location: str) -> web.Response:
    """Redirect (303) after a change; the next page of this session says ``message``."""
    await request.config_dict[HUB].redis.set(_flash_key(request), message, ex=FLASH_TTL_S)
    return web.Response(status=303, headers={"Location": location})


async def _pop_flash(request: web.Request) -> str | None:
    async with request.config_dict[HUB].redis.pipeline(transaction=True) as pipe:
        value, _ = await pipe.get(_flash_key(request)).delete(_flash_key(request)).execute()
    return value.decode() if isinstance(value, bytes) else value


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
    main = (f'<link rel="stylesheet" href="{ADMIN_CSS}">\n'
            f'<nav class="bb-crumbs" aria-label="位置">{trail}</nav>\n{note}\n{body}')
    return _layout(title, main, session=session)


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


# -- handlers ---------------------------------------------------------------------------------

routes = web.RouteTableDef()
admins_only = login_required(roles=("admin",))


async def _target(request: web.Request) -> StaffUser:
    """The account named in the path, or a 404 page."""
    name = normalise_username(request.match_info["username"])
    try:
        if not USERNAME.match(name):
            raise NotFound(name)
        return await request.config_dict[STAFF].get_user(name)
    except NotFound:
        raise web.HTTPNotFound(text=message_page(
            "未找到该用户", f"没有用户名为 {name[:64]} 的账号。", session=staff_session(request),
            back=(BASE, "返回用户列表")), content_type="text/html") from None


def _busy(request: web.Request) -> web.Response:
    return _html(message_page("请稍后重试", "其他管理员正在修改账号，请稍后重试。",
                              session=staff_session(request), back=(BASE, "返回用户列表")), 503)


def _not_admin_now(request: web.Request) -> web.Response:
    return _html(message_page("无权访问", NOT_ADMIN_NOW, session=staff_session(request)), 403)


@routes.get("/console/admin")
@admins_only
async def admin_root(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(BASE)


@routes.get(BASE)
@admins_only
async def users_list(request: web.Request) -> web.StreamResponse:
    chosen = UserFilter.model_validate(dict(request.query))
    users = await request.config_dict[STAFF].list_users()
    return _html(list_page(staff_session(request), users, chosen, await _pop_flash(request)))


@routes.get(NEW_USER)
@admins_only
async def new_user_form(request: web.Request) -> web.StreamResponse:
    return _html(new_user_page(staff_session(request)))


@routes.post(NEW_USER)
@admins_only
async def new_user_submit(request: web.Request) -> web.StreamResponse:
    session = staff_session(request)
    form = await _read_form(request, AddUserForm)
    new, errors = _new_user_errors(form.username, form.display_name, form.roles, form.units)
    username = new.username if new else normalise_username(form.username)
    errors |= _password_errors(form, username)
    if new is not None and not errors:
        try:
            user = await request.config_dict[STAFF].add_user(
                new.username, form.password, roles=new.roles, units=new.units,
                display_name=new.display_name)
        except Conflict:
            errors["username"] = f"用户名 {new.username} 已被使用，请换一个。"
        else:
            _audit(request, "user.add", user.username, roles=user.roles, units=user.units,
                   display_name=user.display_name)
            return await _done(request, f"已添加用户 {user.username}（{user.display_name}）。",
                               BASE)
    return _html(new_user_page(session, form, errors), 400)


@routes.get(BASE + "/{username}")
@admins_only
async def user_detail(request: web.Request) -> web.StreamResponse:
    user = await _target(request)
    return _html(user_page(staff_session(request), user, flash=await _pop_flash(request)))


@routes.post(BASE + "/{username}/roles")
@admins_only
async def user_roles(request: web.Request) -> web.StreamResponse:
    session = staff_session(request)
    target = await _target(request)
    form = await _read_form(request, RolesForm)
    checked, errors = _new_user_errors(target.username, target.display_name, form.roles,
                                       form.units)
    if checked is not None:
        try:
            async with _accounts_locked(request) as users:
                fresh = {u.id: u for u in users}
                actor, target = fresh.get(session.user.id), fresh.get(target.id, target)
                if actor is None or not (actor.active and actor.has_role("admin")):
                    return _not_admin_now(request)
                problem = lockout_problem(users, actor.id, target, active=target.active,
                                          roles=checked.roles)
                if problem:
                    errors["roles"] = problem
                elif (checked.roles, checked.units) == (target.roles, target.units):
                    return await _done(request, "角色和所属单位没有变化。",
                                       f"{BASE}/{target.username}")
                else:
                    user = await request.config_dict[STAFF].update_roles_units(
                        target.username, checked.roles, checked.units)
                    _audit(request, "user.roles", user.username,
                           roles_before=target.roles, roles=user.roles,
                           units_before=target.units, units=user.units)
                    return await _done(request, f"已更新 {user.username} 的角色与所属单位。",
                                       f"{BASE}/{user.username}")
        except _Busy:
            return _busy(request)
    return _html(user_page(session, target, roles=form.roles, units=form.units,
                           errors=errors), 400)


@routes.post(BASE + "/{username}/password")
@admins_only
async def user_password(request: web.Request) -> web.StreamResponse:
    target = await _target(request)
    form = await _read_form(request, PasswordForm)
    errors = _password_errors(form, target.username)
    if errors:
        return _html(user_page(staff_session(request), target, errors=errors), 400)
    await request.config_dict[STAFF].set_password(target.username, form.password)
    _audit(request, "user.password", target.username, sessions_ended=True)
    # resetting one's own password ended this session too: the redirect leads to the login page
    return await _done(request, f"已重置 {target.username} 的密码，其登录会话已全部结束。",
                       f"{BASE}/{target.username}")


@routes.post(BASE + "/{username}/disable")
@admins_only
async def user_disable(request: web.Request) -> web.StreamResponse:
    session = staff_session(request)
    target = await _target(request)
    try:
        async with _accounts_locked(request) as users:
            fresh = {u.id: u for u in users}
            actor, target = fresh.get(session.user.id), fresh.get(target.id, target)
            if actor is None or not (actor.active and actor.has_role("admin")):
                return _not_admin_now(request)
            if not target.active:
                return await _done(request, f"{target.username} 已是停用状态。",
                                   f"{BASE}/{target.username}")
            problem = lockout_problem(users, actor.id, target, active=False, roles=target.roles)
            if problem is None:
                # core.staff ends every session of the account in the same transaction
                user = await request.config_dict[STAFF].disable(target.username)
                _audit(request, "user.disable", user.username, sessions_ended=True)
                return await _done(request, f"已停用 {user.username}，其登录会话已全部结束。",
                                   f"{BASE}/{user.username}")
    except _Busy:
        return _busy(request)
    return _html(user_page(session, target, errors={"status": problem}), 400)


@routes.post(BASE + "/{username}/enable")
@admins_only
async def user_enable(request: web.Request) -> web.StreamResponse:
    target = await _target(request)
    if target.active:
        return await _done(request, f"{target.username} 已是启用状态。",
                           f"{BASE}/{target.username}")
    user = await request.config_dict[STAFF].enable(target.username)
    _audit(request, "user.enable", user.username)
    return await _done(request, f"已启用 {user.username}，该用户现在可以登录。",
                       f"{BASE}/{user.username}")


@routes.get(ADMIN_CSS)
async def stylesheet(_request: web.Request) -> web.StreamResponse:
    # behind the console's sign-in like every page here, so only private caches keep it
    resp = web.Response(text=CSS, content_type="text/css", charset="utf-8")
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


def mount(app: web.Application) -> None:
    """Add the admin pages' routes (the console middleware already guards /console)."""
    app.add_routes(routes)
