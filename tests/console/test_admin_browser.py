"""用户管理 in Debian's chromium (Playwright), against the real server.

The server runs in this test's event loop (AppRunner + TCPSite on a free port) and Playwright's
async API drives the browser from the same loop, as in the web channel's browser test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.staff import StaffStore
from tests.support import serving

from .test_auth import PASSWORD

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/console-admin.png")
FORM_SCREENSHOT = Path("/tmp/console-admin-form.png")
USER_SCREENSHOT = Path("/tmp/console-admin-user.png")
AGENT_PASSWORD = "xuhui agent passphrase"



@pytest.fixture
async def server(settings, engine, redis):
    from core.app import create_app

    await StaffStore(engine).add_user("admin1", PASSWORD, roles=["admin"],
                                      display_name="管理员甲")
    async with serving(create_app(settings, adapters={})) as url:
        yield url



async def sign_in(page, server: str, username: str, password: str) -> None:
    await page.goto(server + "/console/login")
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(password)
    await page.get_by_role("button", name="登录").click()


async def test_admin_adds_an_agent_sees_them_listed_and_disables_them(server, browser):
    from playwright.async_api import expect

    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    # e.g. a CSP violation; a refused form answers 400 and /favicon.ico is 404, which Chrome
    # reports as "Failed to load resource": those are expected
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error"
            and not msg.text.startswith("Failed to load resource") else None)

    await sign_in(page, server, "admin1", PASSWORD)
    await expect(page.get_by_role("heading", name="您好，管理员甲")).to_be_visible()
    await page.get_by_role("link", name="用户管理").click()
    await expect(page).to_have_url(server + "/console/admin/users")
    await expect(page.get_by_role("heading", name="用户管理")).to_be_visible()
    # the page's own stylesheet (linked from the body) is allowed by the CSP and applied
    table = page.get_by_role("table")
    assert await table.evaluate("t => getComputedStyle(t).borderCollapse") == "collapse"

    await page.get_by_role("link", name="新增用户").click()
    await page.get_by_label("用户名").fill("xuhui.agent01")
    await page.get_by_label("姓名").fill("徐汇坐席<一号>")
    await page.get_by_label("初始密码").fill("short")
    await page.get_by_label("再次输入密码").fill("short")
    await page.get_by_role("checkbox", name="坐席").check()
    await page.get_by_label("所属单位").select_option(["district-310104", "police"])
    await page.get_by_role("button", name="添加用户").click()
    # refused: the reason next to the password, everything else as typed
    password = page.get_by_label("初始密码")
    await expect(password).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#err-password")).to_have_text("密码太短：至少需要 10 个字符。")
    await expect(page.get_by_label("用户名")).to_have_value("xuhui.agent01")
    await expect(page.get_by_role("checkbox", name="坐席")).to_be_checked()
    await expect(password).to_have_value("")
    await page.screenshot(path=str(FORM_SCREENSHOT), full_page=True)

    await password.fill(AGENT_PASSWORD)
    await page.get_by_label("再次输入密码").fill(AGENT_PASSWORD)
    await page.get_by_role("button", name="添加用户").click()
    await expect(page).to_have_url(server + "/console/admin/users")
    await expect(page.get_by_role("status")).to_have_text("已添加用户 xuhui.agent01（徐汇坐席<一号>）。")
    agent_row = page.locator('tr[data-username="xuhui.agent01"]')
    await expect(agent_row).to_contain_text("徐汇坐席<一号>")
    await expect(agent_row).to_contain_text("坐席")
    await expect(agent_row).to_contain_text("市公安局（police）、徐汇区（district-310104）")
    await expect(agent_row).to_contain_text("启用")

    # the filter by unit finds them; another unit does not
    await page.get_by_label("单位").select_option("district-310104")
    await page.get_by_role("button", name="筛选").click()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await page.get_by_label("单位").select_option("hrss")
    await page.get_by_role("button", name="筛选").click()
    await expect(page.get_by_text("没有符合条件的账号。")).to_be_visible()
    await page.get_by_role("link", name="清除筛选").click()

    # the new agent signs in, in a browser of their own
    agent_context = await browser.new_context(locale="zh-CN")
    agent = await agent_context.new_page()
    await sign_in(agent, server, "xuhui.agent01", AGENT_PASSWORD)
    await expect(agent.get_by_role("heading", name="您好，徐汇坐席<一号>")).to_be_visible()
    await expect(agent.get_by_text("徐汇区（district-310104）")).to_be_visible()

    # the admin disables them …
    await page.get_by_role("link", name="管理 xuhui.agent01").click()
    await page.get_by_role("button", name="停用账号").click()
    await expect(page.get_by_role("status")).to_have_text(
        "已停用 xuhui.agent01，其登录会话已全部结束。")
    await expect(page.get_by_role("button", name="启用账号")).to_be_visible()
    await page.screenshot(path=str(USER_SCREENSHOT), full_page=True)
    await page.get_by_role("link", name="用户管理").click()
    await expect(agent_row).to_contain_text("已停用")
    await page.screenshot(path=str(SCREENSHOT), full_page=True)

    # … and the agent's next page is the login page; signing in again is refused
    await agent.reload()
    await expect(agent).to_have_url(server + "/console/login")
    await sign_in(agent, server, "xuhui.agent01", AGENT_PASSWORD)
    await expect(agent.get_by_role("alert")).to_have_text("用户名或密码错误。")

    assert problems == []
    await agent_context.close()
    await context.close()
