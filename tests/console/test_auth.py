"""Signing in to the staff console, through the real application (create_app) over HTTP."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from console import login_required, staff_session
from console.auth import COOKIE, LOGIN_COOKIE, LOGIN_MAX_FAILURES
from core.staff import StaffStore
from tests.core.test_app import MALFORMED_FORMS, refused_cleanly

PASSWORD = "correct horse battery"
HIDDEN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- routes the tests mount beside the console's own, to exercise the guards ------------------


@login_required(roles=("supervisor",))
async def supervisors_api(request: web.Request) -> web.Response:
    return web.json_response({"user": staff_session(request).user.username})


@login_required(roles=("admin",))
async def admins_page(_request: web.Request) -> web.Response:
    return web.Response(text="admins only", content_type="text/html")


@login_required
async def echo_api(request: web.Request) -> web.Response:
    return web.json_response({"got": await request.json()})


async def unguarded_page(_request: web.Request) -> web.Response:
    # no decorator: the console middleware must still demand a session
    return web.Response(text="secret", content_type="text/html")


def console_app(settings):
    from core.app import create_app

    app = create_app(settings, adapters={})
    app.router.add_get("/console/api/supervise", supervisors_api)
    app.router.add_get("/console/admin-only", admins_page)
    app.router.add_post("/console/api/echo", echo_api)
    app.router.add_get("/console/unguarded", unguarded_page)
    return app


@pytest.fixture
async def console(aiohttp_client, settings, engine, redis) -> TestClient:
    return await aiohttp_client(console_app(settings))


@pytest.fixture
async def users(engine) -> StaffStore:
    store = StaffStore(engine)
    await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police", "district-310115"],
                         display_name="张三")
    await store.add_user("wangwu", PASSWORD, roles=["supervisor", "agent"], units=["hrss"],
                         display_name="王五")
    return store


# -- helpers ----------------------------------------------------------------------------------


async def login_form_token(client: TestClient, path: str = "/console/login") -> str:
    resp = await client.get(path)
    assert resp.status == 200
    return HIDDEN_CSRF.search(await resp.text()).group(1)


async def login(client: TestClient, username: str, password: str = PASSWORD, **extra: str):
    token = await login_form_token(client)
    data = {"username": username, "password": password, "csrf_token": token, **extra}
    return await client.post("/console/login", data=data, allow_redirects=False)


def set_cookies(resp) -> dict[str, SimpleCookie]:
    """The Set-Cookie headers of one response, by cookie name."""
    out = {}
    for header in resp.headers.getall("Set-Cookie", []):
        cookie = SimpleCookie()
        cookie.load(header)
        out.update({name: cookie for name in cookie})
    return out


def session_cookie(client: TestClient) -> str | None:
    for cookie in client.session.cookie_jar:
        if cookie.key == COOKIE:
            return cookie.value
    return None


async def page_csrf(client: TestClient) -> str:
    resp = await client.get("/console/", allow_redirects=False)
    assert resp.status == 200
    return HIDDEN_CSRF.search(await resp.text()).group(1)


# -- the login page ---------------------------------------------------------------------------


async def test_login_page_renders_in_chinese_with_a_strict_policy(console):
    resp = await console.get("/console/login")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert '<html lang="zh-CN">' in page and "帮办工作台登录" in page
    assert 'name="username"' in page and 'type="password"' in page and ">登录<" in page
    assert HIDDEN_CSRF.search(page)
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "<script" not in page
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    assert LOGIN_COOKIE in set_cookies(resp)
    css = await console.get("/console/static/console.css")
    assert css.status == 200 and css.content_type == "text/css"


async def test_wrong_password_shows_the_page_again_without_a_session(console, users):
    resp = await login(console, "zhangsan", "wrong password!")
    assert resp.status == 200
    page = await resp.text()
    assert "用户名或密码错误" in page and 'value="zhangsan"' in page
    assert COOKIE not in set_cookies(resp) and session_cookie(console) is None
    # an unknown user gets exactly the same answer
    unknown = await login(console, "nobody", PASSWORD)
    assert unknown.status == 200 and "用户名或密码错误" in await unknown.text()
    assert session_cookie(console) is None


async def test_disabled_user_cannot_sign_in(console, users):
    await users.disable("zhangsan")
    resp = await login(console, "zhangsan")
    assert resp.status == 200 and "用户名或密码错误" in await resp.text()
    assert session_cookie(console) is None


async def test_right_password_sets_a_strict_cookie_and_redirects(console, users):
    resp = await login(console, "zhangsan")
    assert resp.status == 303 and resp.headers["Location"] == "/console/"
    cookie = set_cookies(resp)[COOKIE][COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert not cookie["secure"]  # plain http in this test; see the https test below
    assert int(cookie["max-age"]) == 12 * 3600

    home = await console.get("/console/", allow_redirects=False)
    assert home.status == 200
    page = await home.text()
    assert "您好，张三" in page and "zhangsan" in page
    assert "坐席" in page and "市公安局" in page and "浦东新区" in page
    assert 'href="/console/workspace">坐席工作台' in page
    assert "班组监控" not in page  # a supervisor's entry; 张三 is an agent
    assert 'action="/console/logout"' in page

    me = await console.get("/console/api/me")
    assert me.status == 200
    assert (await me.json())["units"] == ["police", "district-310115"]


async def test_secure_cookie_when_the_public_url_is_https(aiohttp_client, settings, engine,
                                                          redis, users):
    https = settings.model_copy(update={"server": settings.server.model_copy(
        update={"public_url": "https://bangban.example.gov.cn"})})
    client = await aiohttp_client(console_app(https))
    token_page = await client.get("/console/login")
    assert set_cookies(token_page)[LOGIN_COOKIE][LOGIN_COOKIE]["secure"]
    token = HIDDEN_CSRF.search(await token_page.text()).group(1)
    # the test client will not send back a Secure cookie over http; hand it over
    resp = await client.post("/console/login", allow_redirects=False,
                             data={"username": "zhangsan", "password": PASSWORD,
                                   "csrf_token": token},
                             headers={"Cookie": f"{LOGIN_COOKIE}={token}"})
    assert resp.status == 303
    cookie = set_cookies(resp)[COOKIE][COOKIE]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"


async def test_login_returns_to_the_page_asked_for_but_never_off_site(console, users):
    resp = await console.get("/console/admin-only?tab=1", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/console/login?next=%2Fconsole%2Fadmin-only%3Ftab%3D1"
    page = await (await console.get(resp.headers["Location"])).text()
    assert 'name="next" value="/console/admin-only?tab=1"' in page
    back = await login(console, "zhangsan", next="/console/admin-only?tab=1")
    assert back.headers["Location"] == "/console/admin-only?tab=1"
    for evil in ("https://evil.example/", "//evil.example/console/", "/console/\\evil",
                 "/console/login"):
        await console.post("/console/logout", headers={"X-CSRF-Token": await page_csrf(console)})
        resp = await login(console, "zhangsan", next=evil)
        assert resp.status == 303 and resp.headers["Location"] == "/console/", evil


async def test_login_form_without_its_token_is_refused(console, users):
    resp = await console.post("/console/login", allow_redirects=False,
                              data={"username": "zhangsan", "password": PASSWORD})
    assert resp.status == 403 and "登录页面已过期" in await resp.text()
    assert session_cookie(console) is None
    forged = await console.post("/console/login", allow_redirects=False,
                                data={"username": "zhangsan", "password": PASSWORD,
                                      "csrf_token": "made-up.token"})
    assert forged.status == 403 and session_cookie(console) is None


async def test_a_login_body_that_cannot_be_read_is_400_without_a_traceback(console, users,
                                                                           caplog):
    # the login form needs no session: anyone could fill the log with 500s' tracebacks
    await login_form_token(console)  # a browser that has the page and its cookie
    for content_type, body in MALFORMED_FORMS:
        caplog.clear()
        resp = await console.post("/console/login", data=body, allow_redirects=False,
                                  headers={"Content-Type": content_type})
        await refused_cleanly(resp, caplog)
        assert session_cookie(console) is None
    assert (await login(console, "zhangsan")).status == 303  # the form itself still works


async def test_a_form_carrying_the_csrf_token_that_cannot_be_read_is_400(console, users,
                                                                         caplog):
    # without the header the token is looked for in the form, which must be read first
    await login(console, "zhangsan")
    for content_type, body in MALFORMED_FORMS:
        caplog.clear()
        resp = await console.post("/console/logout", data=body, allow_redirects=False,
                                  headers={"Content-Type": content_type})
        await refused_cleanly(resp, caplog)
    assert (await console.get("/console/", allow_redirects=False)).status == 200  # still in


# -- pages and the API without a session ------------------------------------------------------


async def test_console_without_a_session_redirects_to_login(console):
    for path in ("/console/", "/console/unguarded"):
        resp = await console.get(path, allow_redirects=False)
        assert resp.status == 302, path
        assert resp.headers["Location"].startswith("/console/login"), path
    root = await console.get("/console", allow_redirects=False)
    assert root.status == 302 and root.headers["Location"] == "/console/"
    # a made-up session cookie is no session either, and is cleared
    console.session.cookie_jar.update_cookies({COOKIE: "A" * 43})
    forged = await console.get("/console/", allow_redirects=False)
    assert forged.status == 302 and COOKIE in set_cookies(forged)


async def test_api_without_a_session_answers_401_json(console):
    for method, path in (("GET", "/console/api/me"), ("GET", "/console/api/supervise"),
                         ("POST", "/console/api/echo"), ("GET", "/console/api/no-such-thing")):
        resp = await console.request(method, path, json={} if method == "POST" else None,
                                     allow_redirects=False)
        assert resp.status == 401, path
        body = await resp.json()
        assert body["error"] == "unauthenticated" and "登录" in body["message"]


async def test_roles_are_enforced(console, users):
    await login(console, "zhangsan")  # an agent
    api = await console.get("/console/api/supervise")
    assert api.status == 403 and (await api.json())["error"] == "forbidden"
    page = await console.get("/console/admin-only", allow_redirects=False)
    assert page.status == 403 and "无权访问" in await page.text()

    await console.post("/console/logout", headers={"X-CSRF-Token": await page_csrf(console)})
    await login(console, "wangwu")  # a supervisor
    api = await console.get("/console/api/supervise")
    assert api.status == 200 and await api.json() == {"user": "wangwu"}
    assert "班组监控" in await (await console.get("/console/")).text()


def test_login_required_refuses_unknown_roles():
    with pytest.raises(ValueError, match="'boss'"):
        login_required(roles=("boss",))


# -- CSRF -------------------------------------------------------------------------------------


async def test_unsafe_requests_need_the_sessions_csrf_token(console, users):
    await login(console, "zhangsan")
    csrf = await page_csrf(console)

    no_token = await console.post("/console/logout", allow_redirects=False)
    assert no_token.status == 403 and "安全令牌" in await no_token.text()
    wrong = await console.post("/console/logout", data={"csrf_token": "x" * 43},
                               allow_redirects=False)
    assert wrong.status == 403
    api = await console.post("/console/api/echo", json={"a": 1})
    assert api.status == 403 and (await api.json())["error"] == "csrf"
    assert (await console.get("/console/", allow_redirects=False)).status == 200  # still in

    ok = await console.post("/console/api/echo", json={"a": 1}, headers={"X-CSRF-Token": csrf})
    assert ok.status == 200 and await ok.json() == {"got": {"a": 1}}
    # the right token from another site's page is refused all the same
    cross = await console.post("/console/api/echo", json={"a": 1},
                               headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert cross.status == 403 and (await cross.json())["error"] == "bad_origin"
    same = await console.post("/console/api/echo", json={"a": 2},
                              headers={"X-CSRF-Token": csrf,
                                       "Origin": str(console.make_url("")).rstrip("/")})
    assert same.status == 200


async def test_logout_with_the_form_token_revokes_the_session(console, users):
    await login(console, "zhangsan")
    token = session_cookie(console)
    resp = await console.post("/console/logout", data={"csrf_token": await page_csrf(console)},
                              allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/login"
    assert set_cookies(resp)[COOKIE][COOKIE].value == ""
    assert session_cookie(console) in (None, "")
    # the old token, replayed, opens nothing: it was revoked on the server, not just forgotten
    console.session.cookie_jar.update_cookies({COOKIE: token})
    again = await console.get("/console/", allow_redirects=False)
    assert again.status == 302 and again.headers["Location"].startswith("/console/login")


async def test_disabling_a_user_ends_their_console_session(console, users):
    await login(console, "zhangsan")
    assert (await console.get("/console/", allow_redirects=False)).status == 200
    await users.disable("zhangsan")
    assert (await console.get("/console/", allow_redirects=False)).status == 302
    assert (await console.get("/console/api/me")).status == 401


# -- brute force ------------------------------------------------------------------------------


async def test_repeated_failures_are_rate_limited(console, users, redis):
    for attempt in range(LOGIN_MAX_FAILURES):
        resp = await login(console, "zhangsan", f"wrong password {attempt}")
        assert resp.status == 200, attempt
    blocked = await login(console, "zhangsan", PASSWORD)  # even the right password now
    assert blocked.status == 429
    page = await blocked.text()
    assert "登录失败次数过多" in page and "15 分钟" in page
    assert 0 < int(blocked.headers["Retry-After"]) <= 15 * 60
    assert session_cookie(console) is None
    # the counter is per user (and address): another account still signs in
    other = await login(console, "wangwu")
    assert other.status == 303
    # one key in Redis, expiring with the window, not naming the user
    keys = [k.decode() for k in await redis.keys("*console:login-fail:*")]
    assert len(keys) == 1 and "zhangsan" not in keys[0]
    assert 0 < await redis.ttl(keys[0]) <= 15 * 60
    # when the window is over the user may try again
    await redis.delete(keys[0])
    await console.post("/console/logout", headers={"X-CSRF-Token": await page_csrf(console)})
    assert (await login(console, "zhangsan")).status == 303


async def test_a_successful_login_clears_the_failures(console, users, redis):
    for attempt in range(LOGIN_MAX_FAILURES - 1):
        await login(console, "zhangsan", f"wrong password {attempt}")
    assert (await login(console, "zhangsan")).status == 303
    assert await redis.keys("*console:login-fail:*") == []


# -- escaping ---------------------------------------------------------------------------------


async def test_every_value_on_the_page_is_escaped(console, users):
    await users.add_user("mallory", PASSWORD, roles=["agent"], units=["police"],
                         display_name='<script>alert("x")</script>&')
    await login(console, "mallory")
    page = await (await console.get("/console/")).text()
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    # and what was typed into the login form comes back escaped too
    await console.post("/console/logout", headers={"X-CSRF-Token": await page_csrf(console)})
    resp = await login(console, '"><script>x</script>', "wrong password!")
    assert "<script>x" not in await resp.text()
