"""The kiosk page in Debian's chromium (Playwright) at 1080×1920 portrait, with touch, against
the real server: tap a matter, read the answer and its QR code, then walk away and watch the
screen wipe itself — the previous conversation gone from the screen, from a reload, and
closed on the server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.kiosk import KioskAdapter
from adapters.kiosk.devices import bootstrap_token
from core.appkeys import HUB
from core.db.schema import conversations
from tests.support import serving

from .conftest import DEVICE, KEY, kiosk_settings

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/kiosk.png")
HOME_SCREENSHOT = Path("/tmp/kiosk-home.png")
IDLE_S, WARNING_S = 3, 2



@pytest.fixture
async def server(settings, redis, seeded):
    from core.app import create_app

    app = create_app(kiosk_settings(settings, idle_timeout_s=IDLE_S, idle_warning_s=WARNING_S),
                     adapters={"kiosk": KioskAdapter})
    async with serving(app) as url:
        yield url, app



@contextlib.asynccontextmanager
async def someone_at_the_screen(page):
    """A person using the kiosk (activity every 300 ms), so the short idle timeout of this
    test cannot strike while the test is still reading; leaving the block is walking away.

    The activity is a dispatched event, not a real key press: a real Shift held down while the
    test presses Enter would make it Shift+Enter (a new line, not a send) — a flaky test."""
    async def keep() -> None:
        while True:
            await page.evaluate(
                "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Shift'}))")
            await asyncio.sleep(0.3)

    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def poll(read, check=bool, timeout: float = 10):
    """``read()`` until ``check`` holds (the last value is returned either way)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if check(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def statuses(app, user: str) -> list[str]:
    async with app[HUB].engine.connect() as db:
        return list((await db.execute(select(conversations.c.status).where(
            conversations.c.channel == "kiosk", conversations.c.channel_user == user))).scalars())


async def test_tap_a_matter_read_the_answer_then_the_idle_wipe(server, browser):
    from playwright.async_api import expect

    url, app = server
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1080, "height": 1920},
                                        has_touch=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # the terminal starts with its bootstrap URL; the token does not stay in the address bar
    await page.goto(f"{url}/kiosk?device={DEVICE}&token={bootstrap_token(KEY, DEVICE)}")
    assert page.url == f"{url}/kiosk?device={DEVICE}"
    await expect(page.locator("body[data-session]")).to_have_count(1)
    first_session = await page.locator("body").get_attribute("data-session")
    await expect(page.get_by_role("heading", name="请选择您要咨询的事项")).to_be_visible()
    await page.screenshot(path=str(HOME_SCREENSHOT))

    log = page.get_by_role("log", name="对话记录")
    async with someone_at_the_screen(page):
        # large buttons: a department, then one of its matters
        await page.get_by_role("tab", name="市公安局").tap()
        matter = page.get_by_role("button", name="居住证签注", exact=True)
        box = await matter.bounding_box()
        assert box["height"] >= 88 and box["width"] >= 400
        await matter.tap()
        answer = log.locator(".kq-from-bot").first
        await expect(answer).to_contain_text("申请材料")
        qr = answer.get_by_role("img", name="手机扫码继续查看：【导办】居住证签注")
        await expect(qr).to_be_visible()
        assert await poll(lambda: qr.evaluate("img => img.complete && img.naturalWidth"))
        await expect(answer.get_by_role("button", name="打印办事指南")).to_be_visible()
        await expect(answer.get_by_role("button", name="已解决")).to_be_visible()
        assert await answer.locator("a").count() == 0  # no way off the kiosk

        # a popular question of the matter
        popular = page.get_by_role("region", name="这个事项的常见问题")
        question = popular.get_by_role("button", name="居住证快到期了，提前多久可以办理签注？")
        await question.tap()
        await expect(log.locator(".kq-from-bot")).to_have_count(2)
        await expect(log.locator(".kq-from-bot").nth(1)).to_contain_text("30日")

        # the large text box, typed with the terminal's IME
        text_box = page.get_by_role("textbox", name="也可以直接输入您的问题")
        tb = await text_box.bounding_box()
        assert tb["height"] >= 100
        await text_box.tap()
        await text_box.fill("那要带什么材料？")
        await text_box.press("Enter")
        await expect(log.locator(".kq-from-bot")).to_have_count(3)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 1080
        await page.screenshot(path=str(SCREENSHOT))
        session = await page.locator("body").get_attribute("data-session")
        assert session == first_session
        conv_user = f"{DEVICE}:{session}"
        assert await statuses(app, conv_user) == ["bot"]

    # nobody touches the screen: a countdown with 继续使用 ...
    dialog = page.get_by_role("alertdialog", name="您还在使用吗？")
    await expect(dialog).to_be_visible(timeout=IDLE_S * 1000 + 2000)
    seconds = int(await dialog.locator(".kq-count").inner_text())
    assert 1 <= seconds <= WARNING_S
    await dialog.get_by_role("button", name="继续使用").tap()
    await expect(dialog).to_be_hidden()
    await expect(log.locator(".kq-from-bot")).to_have_count(3)  # still there for them

    # ... and then, with nobody there, the wipe
    walked_away = time.monotonic()
    await expect(log.locator(".kq-msg")).to_have_count(0, timeout=IDLE_S * 1000 + 4000)
    assert time.monotonic() - walked_away >= IDLE_S - 1
    await expect(page.get_by_role("heading", name="请选择您要咨询的事项")).to_be_visible()
    await expect(page.locator(".kq-notice")).to_contain_text("已清除上一位的咨询内容")
    await expect(page.get_by_role("textbox", name="也可以直接输入您的问题")).to_have_value("")
    await expect(page.locator("body[data-session]")).to_have_count(1)
    new_session = await page.locator("body").get_attribute("data-session")
    assert new_session != session
    # the server closed the last person's conversation
    assert await poll(lambda: statuses(app, conv_user), lambda v: v == ["closed"])

    # a reload brings nothing back
    await page.reload()
    await expect(page.locator("body[data-session]")).to_have_count(1)
    await page.wait_for_timeout(500)
    assert await log.locator(".kq-msg").count() == 0
    assert "申请材料" not in await page.content()
    assert await page.locator("body").get_attribute("data-session") not in (session, None)

    # the print view: its buttons do not print
    await page.goto(f"{url}/kiosk/print/M03-faq-01")
    await expect(page.get_by_role("heading", name="居住证快到期了，提前多久可以办理签注？")
                 ).to_be_visible()
    await expect(page.get_by_role("button", name="打印")).to_be_visible()
    await page.emulate_media(media="print")
    await expect(page.get_by_role("button", name="打印")).to_be_hidden()
    await expect(page.locator(".kp-qr img")).to_be_visible()
    assert errors == []
    await context.close()


async def test_a_terminal_is_registered_by_typing_its_key_into_the_form(server, browser):
    """docs/channels/kiosk.md's registration by hand, in the kiosk's own browser: the form's
    POST must pass the same-origin check (a no-referrer policy made Chromium send Origin: null,
    and every key, right or wrong, was refused as a request from elsewhere)."""
    from playwright.async_api import expect

    from .conftest import OTHER, OTHER_KEY

    url, _ = server
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1080, "height": 1920})
    page = await context.new_page()
    await page.goto(f"{url}/kiosk/register?device={OTHER}")
    await page.get_by_label("终端密钥").fill("x" * 40)
    await page.get_by_role("button", name="注册").click()
    await expect(page.locator("body")).to_contain_text("终端编号或密钥不正确。")
    await page.get_by_label("终端密钥").fill(OTHER_KEY)
    await page.get_by_role("button", name="注册").click()
    await expect(page).to_have_url(f"{url}/kiosk?device={OTHER}")
    await expect(page.locator("body[data-session]")).to_have_count(1)
    await context.close()
