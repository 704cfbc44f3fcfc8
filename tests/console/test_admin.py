"""用户管理 (console.admin) through the real application over HTTP, on the test DB and Redis."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from console.admin import LAST_ADMIN, SELF_DEMOTE, SELF_DISABLE, lockout_problem
from core.staff import StaffStore, StaffUser
from tests.core.test_app import MALFORMED_FORMS, refused_cleanly

from .test_auth import PASSWORD, login, page_csrf

BASE = "/console/admin/users"
NEW = "/console/admin/new-user"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
async def console(aiohttp_client, settings, engine, redis) -> TestClient:
    from core.app import create_app

    return await aiohttp_client(create_app(settings, adapters={}))


@pytest.fixture
async def users(engine) -> StaffStore:
    store = StaffStore(engine)
    await store.add_user("admin1", PASSWORD, roles=["admin"], display_name="管理员甲")
    await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police", "district-310115"],
                         display_name="张三")
    await store.add_user("wangwu", PASSWORD, roles=["supervisor", "agent"], units=["hrss"],
                         display_name="王五")
    return store


@pytest.fixture
async def browser_like(console) -> AsyncIterator[Callable[[], Awaitable[aiohttp.ClientSession]]]:
    """More clients of the same server, each with its own cookies (another person's browser)."""
    made: list[aiohttp.ClientSession] = []

    async def make() -> aiohttp.ClientSession:
        made.append(aiohttp.ClientSession(base_url=str(console.make_url("/")),
                                          cookie_jar=aiohttp.CookieJar(unsafe=True)))
        return made[-1]

    yield make
    for session in made:
        await session.close()


async def as_admin(console, name: str = "admin1") -> str:
    """Sign ``console`` in as an admin; the session's CSRF token."""
    assert (await login(console, name)).status == 303
    return await page_csrf(console)


async def post(client, path: str, csrf: str | None, **fields) -> aiohttp.ClientResponse:
    data = [(k, v) for k, vs in fields.items() for v in (vs if isinstance(vs, list) else [vs])]
    if csrf is not None:
        data.append(("csrf_token", csrf))
    return await client.post(path, data=data, allow_redirects=False)


def field_error(page: str, field: str) -> str:
    """The message shown next to ``field`` (and tied to it for screen readers)."""
    if field != "status":  # one's own account has no 停用 button to tie it to
        assert f'aria-describedby="err-{field}"' in page, field
    return re.search(rf'<p class="bb-field-error" id="err-{field}">([^<]*)</p>', page).group(1)


def row(page: str, username: str) -> str:
    found = re.search(rf'<tr data-username="{re.escape(username)}">(.*?)</tr>', page, re.S)
    return found.group(1) if found else ""


# -- the list ---------------------------------------------------------------------------------


async def test_admin_sees_every_account_from_the_landing_page(console, users):
    await as_admin(console)
    home = await (await console.get("/console/")).text()
    assert f'<a href="{BASE}">用户管理</a>' in home and "命令行" not in home
    resp = await console.get("/console/admin", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == BASE

    resp = await console.get(BASE)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    page = await resp.text()
    assert "<script" not in page and "共 3 个账号" in page
    zhang = row(page, "zhangsan")
    assert "张三" in zhang and "坐席" in zhang and "市公安局（police）" in zhang
    assert "浦东新区（district-310115）" in zhang and "启用" in zhang and "从未登录" in zhang
    assert "班长" in row(page, "wangwu") and "市人力资源社会保障局" in row(page, "wangwu")
    me = row(page, "admin1")
    assert "（您）" in me and "管理员" in me and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", me)
    assert f'href="{BASE}/zhangsan"' in zhang
    css = await console.get("/console/static/admin.css")
    assert css.status == 200 and css.content_type == "text/css"


async def test_the_list_filters_by_unit_role_and_status(console, users):
    await users.disable("wangwu")
    await as_admin(console)

    async def shown(query: str) -> set[str]:
        page = await (await console.get(BASE + query)).text()
        return set(re.findall(r'<tr data-username="([^"]+)">', page))

    assert await shown("") == {"admin1", "zhangsan", "wangwu"}
    assert await shown("?unit=police") == {"zhangsan"}
    assert await shown("?role=agent") == {"zhangsan", "wangwu"}
    assert await shown("?role=agent&status=active") == {"zhangsan"}
    assert await shown("?status=disabled") == {"wangwu"}
    assert await shown("?unit=hrss&role=admin") == set()
    # values that are not ours mean "all" rather than an error
    assert await shown("?role=boss&status=maybe&unit=" + "x" * 100) == {"admin1", "zhangsan",
                                                                        "wangwu"}
    page = await (await console.get(BASE + "?unit=police&role=agent")).text()
    assert '<option value="police" selected>' in page and '<option value="agent" selected>' in page
    assert "符合条件的 1 个" in page


# -- who may ----------------------------------------------------------------------------------


async def test_non_admins_are_refused_every_page_and_change(console, users):
    anonymous = await console.get(BASE, allow_redirects=False)
    assert anonymous.status == 302
    assert anonymous.headers["Location"] == "/console/login?next=%2Fconsole%2Fadmin%2Fusers"
    assert (await post(console, f"{BASE}/zhangsan/disable", None)).status == 303

    for name in ("zhangsan", "wangwu"):  # an agent, and a supervisor
        assert (await login(console, name)).status == 303
        csrf = await page_csrf(console)
        assert f'href="{BASE}"' not in await (await console.get("/console/")).text()
        for path in (BASE, NEW, f"{BASE}/admin1", "/console/admin"):
            resp = await console.get(path, allow_redirects=False)
            assert resp.status == 403, (name, path)
            assert "没有访问此功能的权限" in await resp.text()
        # with the session's own, valid CSRF token: refused all the same, nothing changed
        attempts = [(NEW, {"username": "mole", "display_name": "内鬼", "password": NEW_PASSWORD,
                           "password2": NEW_PASSWORD, "roles": "admin"}),
                    (f"{BASE}/admin1/disable", {}),
                    (f"{BASE}/admin1/password", {"password": NEW_PASSWORD,
                                                 "password2": NEW_PASSWORD}),
                    (f"{BASE}/{name}/roles", {"roles": ["admin", "agent"], "units": "police"})]
        for path, fields in attempts:
            assert (await post(console, path, csrf, **fields)).status == 403, (name, path)
        await post(console, "/console/logout", csrf)

    assert [u.username for u in await users.list_users()] == ["admin1", "wangwu", "zhangsan"]
    admin = await users.get_user("admin1")
    assert admin.active and await users.authenticate("admin1", PASSWORD) is not None
    assert (await users.get_user("zhangsan")).roles == ["agent"]


async def test_changes_without_the_csrf_token_are_refused(console, users):
    csrf = await as_admin(console)
    fields = {"username": "lisi", "display_name": "李四", "password": NEW_PASSWORD,
              "password2": NEW_PASSWORD, "roles": "agent", "units": "police"}
    for token in (None, "", "x" * 43):
        resp = await post(console, NEW, token, **fields)
        assert resp.status == 403 and "安全令牌" in await resp.text()
        assert (await post(console, f"{BASE}/zhangsan/disable", token)).status == 403
    # the right token from another site's page is refused too
    cross = await console.post(f"{BASE}/zhangsan/disable", data={"csrf_token": csrf},
                               headers={"Origin": "https://evil.example"},
                               allow_redirects=False)
    assert cross.status == 403
    assert [u.username for u in await users.list_users()] == ["admin1", "wangwu", "zhangsan"]
    assert (await users.get_user("zhangsan")).active


# -- adding -----------------------------------------------------------------------------------


async def test_an_added_user_can_sign_in_with_their_roles_and_units(console, users, browser_like):
    csrf = await as_admin(console)
    form = await (await console.get(NEW)).text()
    assert 'name="username"' in form and 'type="password"' in form
    assert 'name="units" multiple' in form and '<option value="police">市公安局（police）' in form
    assert 'name="roles" value="kb_editor"' in form

    resp = await post(console, NEW, csrf, username="LiSi", display_name=" 李四 ",
                      password=NEW_PASSWORD, password2=NEW_PASSWORD, roles="agent",
                      units=["police", "district-310104"])
    assert resp.status == 303 and resp.headers["Location"] == BASE
    page = await (await console.get(BASE)).text()
    assert '<p class="bb-flash" role="status">已添加用户 lisi（李四）。</p>' in page
    assert "市公安局（police）、徐汇区（district-310104）" in row(page, "lisi")
    assert "bb-flash" not in await (await console.get(BASE)).text()  # said once

    lisi = await browser_like()
    assert (await login(lisi, "lisi", NEW_PASSWORD)).status == 303
    home = await (await lisi.get("/console/")).text()
    assert "您好，李四" in home and "坐席" in home and "徐汇区" in home
    assert (await lisi.get(BASE, allow_redirects=False)).status == 403


async def test_a_weak_password_is_refused_with_its_reason_and_nothing_is_saved(console, users):
    csrf = await as_admin(console)
    base = {"username": "lisi", "display_name": "李四", "roles": "agent", "units": "police"}

    resp = await post(console, NEW, csrf, **base, password="short123", password2="short123")
    assert resp.status == 400
    page = await resp.text()
    assert field_error(page, "password") == "密码太短：至少需要 10 个字符。"
    assert "请更正下面标出的问题" in page
    assert 'value="lisi"' in page and 'value="李四"' in page  # what was typed is kept …
    assert "short123" not in page  # … except the password
    assert '<option value="police" selected>' in page

    for password, password2, field, reason in (
            ("Lisi", "Lisi", "password", "密码太短"),
            ("          ", "          ", "password", "不能全是空格"),
            ("x" * 1025, "x" * 1025, "password", "密码太长"),
            (NEW_PASSWORD, NEW_PASSWORD + "!", "password2", "两次输入的密码不一致")):
        page = await (await post(console, NEW, csrf, **base, password=password,
                                 password2=password2)).text()
        assert reason in field_error(page, field), (password, field)
    same = {**base, "username": "lisi12345678"}
    page = await (await post(console, NEW, csrf, **same, password="LISI12345678",
                             password2="LISI12345678")).text()
    assert field_error(page, "password") == "密码不能与用户名相同。"
    assert [u.username for u in await users.list_users()] == ["admin1", "wangwu", "zhangsan"]


async def test_every_problem_of_the_form_is_shown_next_to_its_field(console, users):
    csrf = await as_admin(console)
    resp = await post(console, NEW, csrf, username="张三", display_name="  ", password="short",
                      password2="short", roles="agent")
    assert resp.status == 400
    page = await resp.text()
    assert "用户名须为 2–64 个字符" in field_error(page, "username")
    assert field_error(page, "display_name") == "请填写姓名，最多 64 个字符。"
    assert "密码太短" in field_error(page, "password")

    page = await (await post(console, NEW, csrf, username="lisi", display_name="李四",
                             password=NEW_PASSWORD, password2=NEW_PASSWORD, roles="agent")).text()
    assert field_error(page, "units") == "坐席和班长至少要选择一个所属单位。"
    page = await (await post(console, NEW, csrf, username="lisi", display_name="李四",
                             password=NEW_PASSWORD, password2=NEW_PASSWORD)).text()
    assert "至少选择一个角色" in field_error(page, "roles")
    page = await (await post(console, NEW, csrf, username="lisi", display_name="李四",
                             password=NEW_PASSWORD, password2=NEW_PASSWORD,
                             roles=["agent", "boss"], units=["police", "atlantis"])).text()
    assert "角色" in field_error(page, "roles") and "单位" in field_error(page, "units")
    taken = await post(console, NEW, csrf, username="ZhangSan", display_name="另一个张三",
                       password=NEW_PASSWORD, password2=NEW_PASSWORD, roles="agent",
                       units="police")
    assert taken.status == 400
    assert field_error(await taken.text(), "username") == "用户名 zhangsan 已被使用，请换一个。"
    assert [u.username for u in await users.list_users()] == ["admin1", "wangwu", "zhangsan"]
    assert (await users.get_user("zhangsan")).display_name == "张三"
    # an admin or KB editor may have no unit
    ok = await post(console, NEW, csrf, username="editor", display_name="编辑",
                    password=NEW_PASSWORD, password2=NEW_PASSWORD, roles="kb_editor")
    assert ok.status == 303 and (await users.get_user("editor")).units == []


# -- changing ---------------------------------------------------------------------------------


async def test_disabling_a_user_ends_their_live_session_at_once(console, users, browser_like):
    zhang = await browser_like()
    assert (await login(zhang, "zhangsan")).status == 303
    assert (await zhang.get("/console/", allow_redirects=False)).status == 200

    csrf = await as_admin(console)
    resp = await post(console, f"{BASE}/zhangsan/disable", csrf)
    assert resp.status == 303 and resp.headers["Location"] == f"{BASE}/zhangsan"
    page = await (await console.get(f"{BASE}/zhangsan")).text()
    assert "已停用 zhangsan，其登录会话已全部结束。" in page and "启用账号" in page

    # the very next request of the disabled user is refused, page and API alike
    refused = await zhang.get("/console/", allow_redirects=False)
    assert refused.status == 302 and refused.headers["Location"].startswith("/console/login")
    assert (await zhang.get("/console/api/me")).status == 401
    assert (await login(zhang, "zhangsan")).status == 200  # and they cannot sign in again
    assert "已停用" in row(await (await console.get(BASE)).text(), "zhangsan")

    assert (await post(console, f"{BASE}/zhangsan/enable", csrf)).status == 303
    assert "已启用 zhangsan" in await (await console.get(f"{BASE}/zhangsan")).text()
    assert (await login(zhang, "zhangsan")).status == 303


async def test_a_password_reset_ends_the_users_sessions(console, users, browser_like):
    zhang = await browser_like()
    assert (await login(zhang, "zhangsan")).status == 303
    csrf = await as_admin(console)

    weak = await post(console, f"{BASE}/zhangsan/password", csrf, password="zhangsan",
                      password2="zhangsan")
    assert weak.status == 400 and "密码太短" in field_error(await weak.text(), "password")
    assert (await zhang.get("/console/", allow_redirects=False)).status == 200  # nothing done

    resp = await post(console, f"{BASE}/zhangsan/password", csrf, password=NEW_PASSWORD,
                      password2=NEW_PASSWORD)
    assert resp.status == 303
    assert "已重置 zhangsan 的密码" in await (await console.get(resp.headers["Location"])).text()
    assert (await zhang.get("/console/", allow_redirects=False)).status == 302
    assert (await login(zhang, "zhangsan", PASSWORD)).status == 200
    assert (await login(zhang, "zhangsan", NEW_PASSWORD)).status == 303


async def test_roles_and_units_change_for_the_users_next_request(console, users, browser_like):
    wang = await browser_like()
    assert (await login(wang, "wangwu")).status == 303
    assert "班组监控" in await (await wang.get("/console/")).text()
    csrf = await as_admin(console)

    page = await (await console.get(f"{BASE}/wangwu")).text()
    assert 'name="roles" value="supervisor" checked' in page
    assert '<option value="hrss" selected>' in page

    refused = await post(console, f"{BASE}/wangwu/roles", csrf, roles="agent")
    assert refused.status == 400
    page = await refused.text()
    assert field_error(page, "units") == "坐席和班长至少要选择一个所属单位。"
    assert 'name="roles" value="supervisor" checked' not in page  # the choice made is kept
    assert (await users.get_user("wangwu")).roles == ["agent", "supervisor"]

    resp = await post(console, f"{BASE}/wangwu/roles", csrf, roles="agent",
                      units=["medicare", "hrss"])
    assert resp.status == 303
    assert "已更新 wangwu 的角色与所属单位" in await (await console.get(f"{BASE}/wangwu")).text()
    user = await users.get_user("wangwu")
    assert user.roles == ["agent"] and user.units == ["medicare", "hrss"]
    home = await (await wang.get("/console/")).text()  # same session, new roles
    assert "班组监控" not in home and "市医保局" in home

    same = await post(console, f"{BASE}/wangwu/roles", csrf, roles="agent",
                      units=["medicare", "hrss"])
    assert "没有变化" in await (await console.get(same.headers["Location"])).text()
    missing = await console.get(f"{BASE}/nobody")
    assert missing.status == 404 and "没有用户名为 nobody 的账号" in await missing.text()
    assert (await post(console, f"{BASE}/nobody/disable", csrf)).status == 404


async def test_an_admin_cannot_lock_themselves_out(console, users):
    csrf = await as_admin(console)
    page = await (await console.get(f"{BASE}/admin1")).text()
    assert f'action="{BASE}/admin1/disable"' not in page and "不能在此停用" in page

    resp = await post(console, f"{BASE}/admin1/disable", csrf)
    assert resp.status == 400 and field_error(await resp.text(), "status") == SELF_DISABLE
    resp = await post(console, f"{BASE}/admin1/roles", csrf, roles="kb_editor")
    assert resp.status == 400 and field_error(await resp.text(), "roles") == SELF_DEMOTE
    me = await users.get_user("admin1")
    assert me.active and me.roles == ["admin"]
    assert (await console.get(BASE, allow_redirects=False)).status == 200  # still in

    # keeping the admin role, one's own roles and units may change
    ok = await post(console, f"{BASE}/admin1/roles", csrf, roles=["admin", "kb_editor"],
                    units="bigdata")
    assert ok.status == 303
    assert (await users.get_user("admin1")).roles == ["kb_editor", "admin"]
    # another admin may be disabled or demoted, though
    await users.add_user("admin2", PASSWORD, roles=["admin"])
    assert (await post(console, f"{BASE}/admin2/roles", csrf, roles="kb_editor")).status == 303
    assert (await post(console, f"{BASE}/admin2/disable", csrf)).status == 303
    assert not (await users.get_user("admin2")).active


async def test_two_admins_disabling_each_other_at_once_leave_one(console, users, browser_like):
    await users.add_user("admin2", PASSWORD, roles=["admin"])
    other = await browser_like()
    assert (await login(other, "admin2")).status == 303
    other_csrf = await page_csrf(other)
    csrf = await as_admin(console)

    for _ in range(3):
        results = await asyncio.gather(
            post(console, f"{BASE}/admin2/disable", csrf),
            post(other, f"{BASE}/admin1/disable", other_csrf))
        done = [r for r in results
                if r.status == 303 and r.headers["Location"].startswith(BASE)]
        assert len(done) == 1, [(r.status, r.headers.get("Location")) for r in results]
        # the other one was refused: its admin is disabled, whatever step noticed first
        assert {r.status for r in results if r not in done} <= {303, 403}
        admins = [u for u in await users.list_users() if u.active and u.has_role("admin")]
        assert len(admins) == 1  # the console still has an admin
        # put things back, both signed in again, and race once more
        winner = admins[0].username
        loser = "admin1" if winner == "admin2" else "admin2"
        await users.enable(loser)
        loser_client = console if loser == "admin1" else other
        assert (await login(loser_client, loser)).status == 303
        if loser == "admin1":
            csrf = await page_csrf(console)
        else:
            other_csrf = await page_csrf(other)


def test_the_last_active_admin_is_kept_whoever_asks():
    def user(uid: str, *roles: str, active: bool = True) -> StaffUser:
        now = datetime.now(UTC)
        return StaffUser(id=uid, username=uid, display_name=uid, roles=list(roles), units=[],
                         active=active, created_at=now, updated_at=now)

    only = user("a", "admin")
    old = user("b", "admin", active=False)
    editor = user("c", "kb_editor")
    accounts = [only, old, editor]
    # the actor here is no admin any more (changed a moment ago); the invariant still holds
    assert lockout_problem(accounts, "c", only, active=False, roles=["admin"]) == LAST_ADMIN
    assert lockout_problem(accounts, "c", only, active=True, roles=["agent"]) == LAST_ADMIN
    assert lockout_problem(accounts, "a", only, active=False, roles=["admin"]) == SELF_DISABLE
    assert lockout_problem(accounts, "a", only, active=True, roles=["kb_editor"]) == SELF_DEMOTE
    assert lockout_problem(accounts, "a", editor, active=False, roles=["kb_editor"]) is None
    assert lockout_problem(accounts, "a", old, active=True, roles=["admin"]) is None
    # demoting oneself is fine while another admin is active — but the page still refuses it
    assert lockout_problem(accounts, "a", old, active=False, roles=["admin"]) is None


async def test_a_form_that_cannot_be_read_is_400_and_changes_nothing(console, users, caplog):
    csrf = await as_admin(console)
    for path in (f"{BASE}/wangwu/roles", f"{BASE}/wangwu/password", NEW):
        for content_type, body in MALFORMED_FORMS:
            caplog.clear()
            resp = await console.post(path, data=body, allow_redirects=False,
                                      headers={"Content-Type": content_type,
                                               "X-CSRF-Token": csrf})
            await refused_cleanly(resp, caplog)
    wang = await users.get_user("wangwu")
    assert (wang.roles, wang.units) == (["agent", "supervisor"], ["hrss"])
    assert await users.authenticate("wangwu", PASSWORD) is not None
    assert len(await users.list_users()) == 3


# -- safety and records -----------------------------------------------------------------------


async def test_markup_in_names_is_shown_as_text(console, users):
    csrf = await as_admin(console)
    evil = '<script>alert("x")</script>&'
    resp = await post(console, NEW, csrf, username="mallory", display_name=evil,
                      password=NEW_PASSWORD, password2=NEW_PASSWORD, roles="agent",
                      units="police")
    assert resp.status == 303
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
    for path in (BASE, f"{BASE}/mallory"):
        page = await (await console.get(path)).text()
        assert "<script" not in page and escaped in page, path
    # typed values that come back in a refused form are escaped too
    page = await (await post(console, NEW, csrf, username='"><script>x</script>',
                             display_name=evil, password="short", password2="")).text()
    assert "<script" not in page and escaped in page


async def test_every_change_is_in_the_audit_log_without_passwords(console, users, caplog):
    csrf = await as_admin(console)
    caplog.set_level(logging.INFO, logger="console.admin")
    await post(console, NEW, csrf, username="lisi", display_name="李四", password=NEW_PASSWORD,
               password2=NEW_PASSWORD, roles="agent", units="police")
    await post(console, f"{BASE}/lisi/roles", csrf, roles=["agent", "supervisor"],
               units="police")
    await post(console, f"{BASE}/lisi/password", csrf, password=NEW_PASSWORD + "2",
               password2=NEW_PASSWORD + "2")
    await post(console, f"{BASE}/lisi/disable", csrf)
    await post(console, f"{BASE}/lisi/enable", csrf)
    await post(console, f"{BASE}/admin1/disable", csrf)  # refused: not a change, no record

    records = [r for r in caplog.records if r.name == "console.admin" and hasattr(r, "audit")]
    assert [r.audit["action"] for r in records] == [
        "user.add", "user.roles", "user.password", "user.disable", "user.enable"]
    assert all(r.audit["actor"] == "admin1" and r.audit["target"] == "lisi" for r in records)
    assert records[1].audit["roles_before"] == ["agent"]
    assert records[1].audit["roles"] == ["agent", "supervisor"]
    line = records[0].getMessage()
    assert line.startswith('audit action="user.add" actor="admin1" target="lisi"')
    assert NEW_PASSWORD not in caplog.text
    assert csrf not in caplog.text
