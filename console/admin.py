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
from collections.abc import AsyncIterator
from typing import get_origin

from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import LockError

from core.bodies import read_form
from core.appkeys import HUB, SETTINGS
from core.errors import Conflict, NotFound, ValidationFailed
from core.staff import (USERNAME, NewStaffUser, StaffUser, check_password,
                        normalise_username)

from .admin_pages import (ADMIN_CSS, BASE, CSS, FIELD_ERRORS, FLASH_TTL_S, LAST_ADMIN,
                          LOCK_TIMEOUT_S, LOCK_WAIT_S, NEW_USER, NOT_ADMIN_NOW, PASSWORD_REASONS,
                          SELF_DEMOTE, SELF_DISABLE, AddUserForm, F, PasswordForm, RolesForm,
                          UserFilter, _html, list_page, new_user_page, user_page)
from .auth import STAFF, login_required, staff_session
from .pages import message_page

log = logging.getLogger(__name__)

async def _read_form(request: web.Request, model: type[F]) -> F:
    form = await read_form(request)
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


def _as_now(users: list[StaffUser], actor_id: str, target: StaffUser
            ) -> tuple[StaffUser | None, StaffUser]:
    """Under the accounts lock: the acting admin as the database has them now (None when no
    longer an active admin), and the target account as it is now."""
    fresh = {u.id: u for u in users}
    actor = fresh.get(actor_id)
    if actor is not None and not (actor.active and actor.has_role("admin")):
        actor = None
    return actor, fresh.get(target.id, target)


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
                actor, target = _as_now(users, session.user.id, target)
                if actor is None:
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
            actor, target = _as_now(users, session.user.id, target)
            if actor is None:
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
