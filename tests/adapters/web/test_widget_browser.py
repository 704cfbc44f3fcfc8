"""The 小申 widget in Debian's chromium (Playwright), against the real server.

The server runs in this test's event loop (AppRunner + TCPSite on a free port) and Playwright's
async API drives the browser from the same loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from adapters.web import WebAdapter
from core.appkeys import HUB
from core.dialog.models import Inbound

from .conftest import web_settings

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"
SCREENSHOT = Path("/tmp/widget.png")
DESKTOP_SCREENSHOT = Path("/tmp/widget-desktop.png")
#: the running service's application, by URL (for reaching into the hub mid-test)
SERVICE_APPS: dict[str, web.Application] = {}



async def _serve(app: web.Application):
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def embedder():
    """Another origin's portal page embedding the widget with one tag and no CSP. It is
    reached as http://localhost:PORT — loopback, like the service, so Chrome's local-network
    protection does not apply, yet another site than http://127.0.0.1."""
    holder: dict[str, str] = {}

    async def page(_request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            '<title>区政务服务门户</title></head><body><h1>区政务服务门户</h1>'
            f'<script src="{holder["service"]}/widget.js" defer></script></body></html>'))

    app = web.Application()
    app.router.add_get("/", page)
    runner, port = await _serve(app)
    holder["origin"] = f"http://localhost:{port}"
    try:
        yield holder
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(settings, redis, seeded, embedder):
    from core.app import create_app

    app = create_app(web_settings(settings, allowed_origins=[embedder["origin"]]),
                     adapters={"web": WebAdapter})
    runner, port = await _serve(app)
    embedder["service"] = f"http://127.0.0.1:{port}"
    SERVICE_APPS[embedder["service"]] = app
    try:
        yield embedder["service"]
    finally:
        SERVICE_APPS.pop(embedder["service"], None)
        await runner.cleanup()



def watch(page) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"dialogs": [], "errors": []}

    def on_dialog(dialog) -> None:
        seen["dialogs"].append(dialog.message)
        asyncio.ensure_future(dialog.dismiss())

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    return seen


async def seqs(log) -> list[int]:
    return await log.locator(".bb-msg[data-seq]").evaluate_all(
        "els => els.map(e => Number(e.dataset.seq))")


async def test_widget_conversation_history_safety_and_phone_layout(server, browser):
    from playwright.async_api import expect

    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    seen = watch(page)
    await page.goto(server + "/")
    assert await page.locator("script").count() == 1

    # keyboard: the launcher is reachable and opens the panel with focus in the input
    launcher = page.get_by_role("button", name="打开智能客服小申")
    await launcher.focus()
    await page.keyboard.press("Enter")
    panel = page.get_by_role("dialog", name="智能客服小申")
    await expect(panel).to_be_visible()
    box = page.get_by_role("textbox", name="输入您的问题")
    await expect(box).to_be_focused()
    log = page.get_by_role("log", name="对话记录")
    await expect(log).to_have_attribute("aria-live", "polite")

    await box.fill("居住证签注需要带什么材料")
    await box.press("Enter")
    answer = log.locator(".bb-msg[data-seq='2']")
    await expect(answer).to_contain_text("申请材料")
    await expect(answer.get_by_role("button", name="已解决")).to_be_enabled()
    await answer.get_by_role("button", name="未解决").click()
    follow = log.locator(".bb-msg[data-seq='4']")
    await expect(follow.get_by_role("button", name="转人工帮办")).to_be_visible()
    await expect(answer.get_by_role("button", name="已解决")).to_be_disabled()
    assert await seqs(log) == [1, 2, 3, 4]
    await page.screenshot(path=str(DESKTOP_SCREENSHOT))

    # Escape closes and gives focus back to the launcher
    await box.focus()
    await page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(launcher).to_be_focused()

    # after a reload the history is back, in order, once
    await page.reload()
    await page.get_by_role("button", name="打开智能客服小申").click()
    await expect(log.locator(".bb-msg[data-seq='4']")).to_be_visible()
    assert await seqs(log) == [1, 2, 3, 4]
    texts = await log.locator(".bb-from-citizen").all_inner_texts()
    assert [t.split("：", 1)[-1].strip() for t in texts] == ["居住证签注需要带什么材料", "未解决"]
    await expect(log.locator(".bb-msg[data-seq='4']").get_by_role(
        "button", name="转人工帮办")).to_be_enabled()

    # markup typed by a citizen is shown as text and never runs
    await box.fill(XSS)
    await box.press("Enter")
    mine = log.locator(".bb-from-citizen[data-seq='5']")
    await expect(mine).to_contain_text(XSS)
    await expect(log.locator(".bb-msg[data-seq='6']")).to_be_visible()
    assert await mine.locator("img").count() == 0
    await page.wait_for_timeout(300)
    assert seen["dialogs"] == []

    # the connection drops (a server restart) while a reply is produced elsewhere (another
    # tab): the widget reconnects on its own, resumes from its last seq and shows it in order
    adapter = SERVICE_APPS[server][HUB].adapters["web"]
    [uid] = list(adapter.connections)
    for conn in list(adapter.connections[uid]):
        await conn.close()
    status = page.locator(".bb-status")
    await expect(status).to_contain_text("正在重新连接")
    await SERVICE_APPS[server][HUB].handle(
        Inbound(channel="web", channel_user=uid, text="居住证签注在哪里办"))
    await expect(log.locator(".bb-msg[data-seq='8']")).to_be_visible()
    await expect(status).to_be_empty()
    assert await seqs(log) == [1, 2, 3, 4, 5, 6, 7, 8]
    await expect(log.locator(".bb-msg[data-seq='7']")).to_contain_text("居住证签注在哪里办")

    # a 375 px phone: the open panel is the whole screen
    await page.set_viewport_size({"width": 375, "height": 740})
    await expect(log.locator(".bb-msg[data-seq='2']")).to_be_visible()
    await page.wait_for_timeout(200)
    box_ = await panel.bounding_box()
    assert box_ is not None
    assert (round(box_["x"]), round(box_["y"])) == (0, 0)
    assert (round(box_["width"]), round(box_["height"])) == (375, 740)
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 375
    send = await page.get_by_role("button", name="发送", exact=True).bounding_box()
    assert send["x"] + send["width"] <= 375 and send["y"] + send["height"] <= 740
    await log.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    await page.screenshot(path=str(SCREENSHOT))
    assert seen["errors"] == []
    await context.close()


async def test_widget_embedded_on_another_origin_uses_its_token(server, embedder, browser):
    """A portal on another site embeds the widget with one script tag and sets no CSP: the
    SameSite cookie does not travel, the token in localStorage keeps the citizen, and citizen
    markup still cannot run."""
    from playwright.async_api import expect

    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    seen = watch(page)
    await page.goto(embedder["origin"] + "/")
    await page.get_by_role("button", name="打开智能客服小申").click()
    log = page.get_by_role("log", name="对话记录")
    box = page.get_by_role("textbox", name="输入您的问题")
    await box.fill(XSS)
    await page.get_by_role("button", name="发送", exact=True).click()
    mine = log.locator(".bb-from-citizen[data-seq='1']")
    await expect(mine).to_contain_text(XSS)
    await expect(log.locator(".bb-msg[data-seq='2']")).to_be_visible()
    assert await mine.locator("img").count() == 0
    token = await page.evaluate("localStorage.getItem('bangban.web.token')")
    assert token
    # no first-party cookie of the service on this cross-site page: the token is the identity
    assert [c["name"] for c in await context.cookies(server)] == []

    await page.reload()
    await page.get_by_role("button", name="打开智能客服小申").click()
    await expect(log.locator(".bb-msg[data-seq='2']")).to_be_visible()
    assert await seqs(log) == [1, 2]
    await page.wait_for_timeout(300)
    assert seen["dialogs"] == [] and seen["errors"] == []
    await context.close()
