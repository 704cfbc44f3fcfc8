"""Sign-in to the staff console: sessions, CSRF, the login page and ``login_required``.

Everything under ``/console`` requires a signed-in staff user except the login page and the
stylesheet (deny by default: a page added later is protected even if its author forgets
``login_required``). Pages without a session redirect to the login page; ``/console/api/*``
answers 401 / 403 JSON instead.

* **Sessions**: a random token in the cookie ``bangban_console`` (HttpOnly, SameSite=Strict,
  Path=/console, Secure when ``server.public_url`` is https); the database keeps only its
  SHA-256 (see :mod:`core.staff`).
* **CSRF**: every unsafe request (POST, PUT, PATCH, DELETE …) under ``/console`` must carry the
  session's CSRF token, in the ``X-CSRF-Token`` header or a ``csrf_token`` form field, and must
  not come from another origin. The login form, made before there is a session, carries a
  signed token that must match a short-lived cookie of its own.
* **Brute force**: failed sign-ins are counted in Redis per username and client address; after
  ``LOGIN_MAX_FAILURES`` within ``LOGIN_WINDOW_S`` further attempts get 429 without a password
  check until the window ends.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import quote, urlsplit

from aiohttp import web

from core.bodies import read_form
from core.appkeys import ENGINE, HUB, SETTINGS
from core.security import instance_secret, sign, unsign
from core.staff import ROLES, StaffSession, StaffStore

from . import pages

log = logging.getLogger(__name__)

STAFF = web.AppKey("staff_store", StaffStore)

PREFIX = "/console"
API_PREFIX = "/console/api/"
COOKIE = "bangban_console"
LOGIN_COOKIE = "bangban_console_login"
#: how long a login page's form stays valid
LOGIN_FORM_TTL_S = 3600
LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_S = 15 * 60
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: paths under /console open without a session
PUBLIC_PATHS = frozenset({"/console", "/console/login", pages.STYLESHEET})

# request key of the cached session lookup (a typed key where aiohttp has them, from 3.14)
_SESSION = (web.RequestKey("bangban_console_session", object)  # type: ignore[attr-defined]
            if hasattr(web, "RequestKey") else "bangban.console.session")
_MISSING = object()
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

GENERIC_LOGIN_ERROR = "用户名或密码错误。"
TOO_MANY_FAILURES = "登录失败次数过多，为保护账号安全，请 15 分钟后再试。"
FORM_EXPIRED = "登录页面已过期，请重新输入用户名和密码。"


# -- the session of a request -----------------------------------------------------------------


def _in_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIX)


async def current_session(request: web.Request) -> StaffSession | None:
    """The live staff session of this request (looked up once per request), or None."""
    cached = request.get(_SESSION, _MISSING)
    if cached is _MISSING:
        token = request.cookies.get(COOKIE)
        cached = await request.config_dict[STAFF].get_session(token) if token else None
        request[_SESSION] = cached
    return cached  # type: ignore[return-value]


def staff_session(request: web.Request) -> StaffSession:
    """The session of a request that passed ``login_required`` (or the console middleware)."""
    session = request.get(_SESSION)
    if not isinstance(session, StaffSession):
        raise RuntimeError("staff_session() outside a signed-in console request")
    return session


def _secure_cookie(request: web.Request) -> bool | None:
    return (request.secure or request.config_dict[SETTINGS].public_url.startswith("https://")) \
        or None


def _same_origin(request: web.Request) -> bool:
    """False if the browser says the request comes from a page of another origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser, or an old one: the CSRF token still has to match
    origin = origin.strip().rstrip("/").lower()
    parts = urlsplit(origin)
    if origin == "null" or not parts.scheme or not parts.netloc:
        return False
    if parts.netloc == (request.host or "").lower():
        return True
    public = urlsplit(request.config_dict[SETTINGS].public_url)
    return origin == f"{public.scheme}://{public.netloc}".lower()


def _tokens_equal(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


async def _csrf_token_of(request: web.Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    if request.content_type in _FORM_TYPES:
        value = (await read_form(request)).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


# -- refusals ---------------------------------------------------------------------------------


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _redirect(location: str, status: int = 303) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def _refuse(request: web.Request, status: int, code: str, message: str,
            session: StaffSession | None = None) -> web.Response:
    if _is_api(request):
        return web.json_response({"error": code, "message": message}, status=status)
    title = {401: "请先登录", 403: "无权访问", 429: "请求过于频繁"}.get(status, "请求被拒绝")
    return _html(pages.message_page(title, message, session=session), status)


def _unauthenticated(request: web.Request) -> web.Response:
    if _is_api(request):
        resp = _refuse(request, 401, "unauthenticated", "请先登录帮办工作台。")
    else:
        target = "/console/login"
        if request.method in SAFE_METHODS and _safe_next(request.path_qs) != "/console/":
            target += "?next=" + quote(request.path_qs, safe="")
        resp = _redirect(target, 302 if request.method in SAFE_METHODS else 303)
    if COOKIE in request.cookies:  # expired, revoked or forged: drop it
        resp.del_cookie(COOKIE, path=PREFIX)
    return resp


async def check_request(request: web.Request, roles: Iterable[str] = ()
                        ) -> web.StreamResponse | None:
    """None if the request may go on; otherwise the response refusing it.

    Refuses: an unsafe method from another origin (403); no live session (redirect to the
    login page, or 401 for the API); an unsafe method without the session's CSRF token (403);
    a user holding none of ``roles`` (403).
    """
    unsafe = request.method not in SAFE_METHODS
    if unsafe and not _same_origin(request):
        return _refuse(request, 403, "bad_origin", "请求来源不被允许。")
    session = await current_session(request)
    if session is None:
        return _unauthenticated(request)
    if unsafe and not _tokens_equal(await _csrf_token_of(request), session.csrf_token):
        return _refuse(request, 403, "csrf", "页面已过期或请求缺少安全令牌，请刷新页面后重试。",
                       session)
    roles = tuple(roles)
    if roles and not session.user.has_role(*roles):
        return _refuse(request, 403, "forbidden", "您的账号没有访问此功能的权限。", session)
    return None


def login_required(handler: Handler | None = None, *, roles: Iterable[str] = ()):
    """Decorator of console handlers: a live session, the CSRF token on unsafe methods and,
    when ``roles`` are given, at least one of them. Use as ``@login_required`` or
    ``@login_required(roles=("supervisor", "admin"))``.
    """
    wanted = tuple(roles)
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r} (roles: {', '.join(ROLES)})")

    def decorate(func: Handler) -> Handler:
        @functools.wraps(func)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            refusal = await check_request(request, wanted)
            if refusal is not None:
                return refusal
            return await func(request)

        return wrapped

    return decorate(handler) if handler is not None else decorate


def _security_headers(resp: web.StreamResponse) -> None:
    headers = resp.headers
    headers.setdefault("Content-Security-Policy", pages.CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Guards every path under /console; any other path passes straight through."""
    if not _in_console(request.path):
        return await handler(request)
    try:
        if request.path in PUBLIC_PATHS:
            if request.method not in SAFE_METHODS and not _same_origin(request):
                resp = _refuse(request, 403, "bad_origin", "请求来源不被允许。")
            else:
                resp = await handler(request)
        else:
            refusal = await check_request(request)
            # (a response is a mapping, and an empty one is falsy: compare with None)
            resp = refusal if refusal is not None else await handler(request)
    except web.HTTPException as exc:
        _security_headers(exc)
        raise
    _security_headers(resp)
    return resp


# -- login form token (before there is a session) ---------------------------------------------


def _login_secret(request: web.Request) -> bytes:
    return instance_secret(request.config_dict[SETTINGS], "console-login")


def _login_form_token(request: web.Request) -> str:
    """The login form's token: the one in the browser's cookie if still valid, else a new one."""
    current = request.cookies.get(LOGIN_COOKIE)
    if current and len(current) < 200 and unsign(_login_secret(request), current):
        return current
    return sign(_login_secret(request), secrets.token_urlsafe(24))


def _set_login_cookie(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    resp.set_cookie(LOGIN_COOKIE, token, max_age=LOGIN_FORM_TTL_S, path="/console/login",
                    httponly=True, samesite="Strict", secure=_secure_cookie(request))


def _login_form_ok(request: web.Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE)
    if not cookie or len(cookie) > 200 or unsign(_login_secret(request), cookie) is None:
        return False
    return _tokens_equal(submitted, cookie)


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a console page of ours, never another site."""
    default = "/console/"
    if not value or len(value) > 512 or not value.startswith("/console/"):
        return default
    if "//" in value or "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
        return default
    if value.startswith(("/console/login", "/console/logout", API_PREFIX)):
        return default
    return value


def _login_response(request: web.Request, *, status: int = 200, username: str = "",
                    next_path: str = "", error: str | None = None) -> web.Response:
    token = _login_form_token(request)
    resp = _html(pages.login_page(token, username=username, next_path=next_path, error=error),
                 status)
    _set_login_cookie(request, resp, token)
    return resp


# -- failed sign-ins, in Redis ----------------------------------------------------------------


def _failure_key(request: web.Request, username: str) -> str:
    who = hashlib.sha256(f"{username}\0{request.remote or '-'}".encode()).hexdigest()[:32]
    return f"{request.config_dict[SETTINGS].redis.prefix}console:login-fail:{who}"


async def _failures(request: web.Request, key: str) -> int:
    value = await request.config_dict[HUB].redis.get(key)
    return int(value or 0)


async def _record_failure(request: web.Request, key: str) -> None:
    # the window starts at the first failure and does not slide; both steps in one transaction
    async with request.config_dict[HUB].redis.pipeline(transaction=True) as pipe:
        await pipe.set(key, 0, ex=LOGIN_WINDOW_S, nx=True).incr(key).execute()


# -- handlers ---------------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get("/console")
async def console_root(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


@routes.get("/console/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    next_path = _safe_next(request.query.get("next"))
    if await current_session(request) is not None:
        raise web.HTTPFound(next_path)
    return _login_response(request, next_path=next_path if next_path != "/console/" else "")


@routes.post("/console/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    username = str(form.get("username") or "").strip()[:64]
    password = str(form.get("password") or "")
    next_path = _safe_next(str(form.get("next") or ""))
    shown_next = next_path if next_path != "/console/" else ""
    if not _login_form_ok(request, str(form.get(CSRF_FIELD) or "")):
        return _login_response(request, status=403, username=username, next_path=shown_next,
                               error=FORM_EXPIRED)
    if not username or not password:
        return _login_response(request, username=username, next_path=shown_next,
                               error="请输入用户名和密码。")
    key = _failure_key(request, username.lower())
    if await _failures(request, key) >= LOGIN_MAX_FAILURES:
        log.warning("console login refused (too many failures): user %r from %s",
                    username, request.remote)
        resp = _login_response(request, status=429, username=username, next_path=shown_next,
                               error=TOO_MANY_FAILURES)
        ttl = await request.config_dict[HUB].redis.ttl(key)
        resp.headers["Retry-After"] = str(ttl if ttl and ttl > 0 else LOGIN_WINDOW_S)
        return resp
    store = request.config_dict[STAFF]
    user = await store.authenticate(username, password)
    if user is None:
        await _record_failure(request, key)
        log.warning("console login failed: user %r from %s", username, request.remote)
        return _login_response(request, username=username, next_path=shown_next,
                               error=GENERIC_LOGIN_ERROR)
    await request.config_dict[HUB].redis.delete(key)
    token, session = await store.create_session(
        user, user_agent=request.headers.get("User-Agent"))
    log.info("console login: %s from %s", user.username, request.remote)
    resp = _redirect(next_path)
    resp.set_cookie(COOKIE, token, max_age=int(store.session_ttl.total_seconds()), path=PREFIX,
                    httponly=True, samesite="Strict", secure=_secure_cookie(request))
    resp.del_cookie(LOGIN_COOKIE, path="/console/login")
    request[_SESSION] = session
    return resp


@routes.post("/console/logout")
@login_required
async def logout(request: web.Request) -> web.StreamResponse:
    session, store = staff_session(request), request.config_dict[STAFF]
    await store.revoke_session(request.cookies.get(COOKIE))
    log.info("console logout: %s", session.user.username)
    desk = request.config_dict[HUB].desk
    if desk is not None and session.user.has_role("agent") and \
            await store.count_sessions(session.user.id) == 0:
        # signing out of the last session is leaving: the citizens they serve must not wait
        # release_after_s for a person who is gone (another open session keeps them)
        await desk.sign_out(session.user)
    resp = _redirect("/console/login")
    resp.del_cookie(COOKIE, path=PREFIX)
    return resp


@routes.get("/console/")
@login_required
async def home(request: web.Request) -> web.StreamResponse:
    session = staff_session(request)
    portal = "web" in request.config_dict[HUB].adapters
    return _html(pages.home_page(session, pages.links_for(session, portal=portal)))


@routes.get("/console/api/me")
@login_required
async def me(request: web.Request) -> web.StreamResponse:
    """The signed-in user, for the console's scripts."""
    session = staff_session(request)
    user = session.user
    return web.json_response({
        "username": user.username, "display_name": user.display_name,
        "roles": user.roles, "units": user.units,
        "session_expires_at": session.expires_at.isoformat(),
    })


@routes.get(pages.STYLESHEET)
async def stylesheet(_request: web.Request) -> web.StreamResponse:
    resp = web.Response(text=pages.CSS, content_type="text/css", charset="utf-8")
    resp.headers["Cache-Control"] = "public, max-age=3600"
    return resp


# -- mounting ---------------------------------------------------------------------------------


async def staff_ctx(app: web.Application) -> AsyncIterator[None]:
    """The staff store, on the database the core opened (so after ``database_ctx``)."""
    app[STAFF] = StaffStore(app[ENGINE])
    yield


def mount(app: web.Application) -> None:
    app.cleanup_ctx.append(staff_ctx)
    app.middlewares.append(console_middleware)
    app.add_routes(routes)
