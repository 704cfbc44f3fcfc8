"""转人工帮办 on the kiosk page, in Debian's chromium (Playwright) at 1080×1920 portrait with
touch, against the real server and the real handoff service: an agent takes the citizen from
the line, then closes and asks for a rating; out of hours, a 留言.

What the screen must get right: one rating prompt with its buttons (not also the text
channels' "5 非常满意，4 满意…"), no 取消排队 left to tap once an agent serves, a status line
that says a 留言 was submitted once it was written — and none of it for the next person.
"""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from adapters.kiosk import KioskAdapter
from adapters.kiosk.devices import bootstrap_token
from core.appkeys import HUB
from core.db.schema import handoffs
from core.ratings import LEVELS
from core.staff import StaffStore
from tests.support import serving
from tests.core.handoff.conftest import SATURDAY_10

from .conftest import DEVICE, KEY, kiosk_settings

pytestmark = pytest.mark.browser

SCREENSHOT_RATING = "/tmp/kiosk-human-rating.png"
SCREENSHOT_LEFT = "/tmp/kiosk-human-left.png"
HOTLINE = "hotline-12345"  # open 7×24: a line and an agent whatever the time of day
#: what AgentDesk's rating request says on text-only channels
RATING_TEXT = "请为本次服务评价：5 非常满意"


@pytest.fixture
async def server(settings, redis, seeded):
    from core.app import create_app

    # the default idle time (120 s): no wipe while the test reads
    app = create_app(kiosk_settings(settings), adapters={"kiosk": KioskAdapter})
    async with serving(app) as url:
        yield url, app


async def open_kiosk(browser, url: str):
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1080, "height": 1920},
                                        has_touch=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{url}/kiosk?device={DEVICE}&token={bootstrap_token(KEY, DEVICE)}")
    from playwright.async_api import expect
    await expect(page.locator("body[data-session]")).to_have_count(1)
    return context, page, errors


async def current_handoff(app, conversation_id: str) -> dict:
    async with app[HUB].engine.connect() as db:
        row = (await db.execute(select(handoffs).where(
            handoffs.c.conversation_id == conversation_id)
            .order_by(handoffs.c.requested_at.desc()).limit(1))).mappings().one()
    return dict(row)


async def add_agent(engine):
    staff = StaffStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    return await staff.add_user("kiosk-agent", "correct horse battery 42", roles=("agent",),
                                units=[HOTLINE], display_name="李敏")


async def ask_for_the_hotline(page, hub) -> None:
    """转人工帮办 → the department menu → 12345."""
    await page.get_by_role("button", name="转人工帮办").tap()
    await page.get_by_role("log", name="对话记录").get_by_role(
        "button", name=hub.handoff.unit_name(HOTLINE)).tap()


async def test_cancel_buttons_are_disabled_once_an_agent_serves(server, browser, engine):
    from playwright.async_api import expect

    url, app = server
    hub = app[HUB]
    agent = await add_agent(engine)
    context, page, errors = await open_kiosk(browser, url)
    log = page.get_by_role("log", name="对话记录")
    status = page.get_by_role("status", name="服务状态")
    status_text = status.locator(".kq-status-text")
    typing = page.locator(".kq-typing")
    box = page.get_by_role("textbox", name="也可以直接输入您的问题")

    # nobody is online yet: the line, with 取消排队 in the status line and under the message
    await ask_for_the_hotline(page, hub)
    await expect(status_text).to_contain_text("排队中")
    await expect(status_text).to_contain_text("下一位就是您")
    in_log = log.get_by_role("button", name="取消排队")
    await expect(in_log).to_have_count(1)
    await expect(in_log).to_be_enabled()
    await expect(status.get_by_role("button", name="取消排队")).to_be_visible()

    # a line written while waiting goes to the person: no "小申正在查找答案…" left showing
    await box.fill("我想问居住证的事")
    await box.press("Enter")
    await expect(log.locator(".kq-from-citizen").last).to_contain_text("我想问居住证的事")
    await page.wait_for_timeout(500)
    await expect(typing).to_be_hidden()

    # the agent comes online and takes the citizen: nothing is left to cancel
    await hub.desk.heartbeat(agent)
    await expect(status_text).to_have_text(
        f"{hub.handoff.unit_name(HOTLINE)} · 工作人员 李敏 为您服务")
    await expect(status.get_by_role("button", name="取消排队")).to_be_hidden()
    await expect(in_log).to_be_disabled()
    # a tap on it sends nothing (the agent would only get a stray 取消排队)
    sent = await log.locator(".kq-from-citizen").count()
    await in_log.tap(force=True)
    await page.wait_for_timeout(300)
    assert await log.locator(".kq-from-citizen").count() == sent

    # a reload during the service replays the conversation: the old button stays disabled
    await page.reload()
    await expect(log.locator(".kq-from-citizen", has_text="我想问居住证的事")).to_have_count(1)
    await expect(in_log).to_have_count(1)
    await expect(status_text).to_contain_text("工作人员 李敏 为您服务")
    await expect(in_log).to_be_disabled()
    await expect(status.get_by_role("button", name="取消排队")).to_be_hidden()

    # the service ends: still nothing to cancel
    session = await page.locator("body").get_attribute("data-session")
    conv = (await hub.conversations.current("kiosk", f"{DEVICE}:{session}")).id
    await hub.desk.close(agent, (await current_handoff(app, conv))["id"], "resolved")
    await expect(log.get_by_role("group", name="请为", exact=False)).to_have_count(1)
    await expect(status_text).to_have_text("")
    await expect(in_log).to_be_disabled()
    assert errors == []
    await context.close()


async def test_an_agent_rating_is_asked_once_with_its_buttons(server, browser, engine):
    from playwright.async_api import expect

    url, app = server
    hub = app[HUB]
    agent = await add_agent(engine)
    await hub.desk.heartbeat(agent)  # online: takes the citizen at once
    context, page, errors = await open_kiosk(browser, url)
    log = page.get_by_role("log", name="对话记录")
    status_text = page.get_by_role("status", name="服务状态").locator(".kq-status-text")

    await ask_for_the_hotline(page, hub)
    await expect(status_text).to_contain_text("工作人员 李敏 为您服务")
    session = await page.locator("body").get_attribute("data-session")
    conv = (await hub.conversations.current("kiosk", f"{DEVICE}:{session}")).id
    h = await current_handoff(app, conv)
    await hub.desk.send(agent, h["id"], "您好，请问有什么可以帮您？")
    await expect(log.locator(".kq-from-agent").last).to_contain_text("请问有什么可以帮您")

    # the agent closes: one prompt, with the five buttons
    await hub.desk.close(agent, h["id"], "resolved")
    prompt = f"请为{hub.handoff.unit_name(HOTLINE)}本次人工服务评价："
    rating = log.get_by_role("group", name=prompt)
    await expect(rating.get_by_role("button")).to_have_count(5)
    asked = log.locator(".kq-msg").filter(has=page.get_by_role("group", name=prompt))
    await expect(asked.locator(".kq-text")).to_have_text(prompt)
    assert await asked.locator(".kq-prompt").count() == 0
    said = await asked.inner_text()
    assert said.count(prompt) == 1
    assert RATING_TEXT not in said and "5 非常满意" not in said
    assert await rating.get_by_role("button").all_inner_texts() == [LEVELS[n] for n in range(1, 6)]
    await page.screenshot(path=SCREENSHOT_RATING)

    await rating.get_by_role("button", name="非常满意").tap()
    await expect(log.locator(".kq-from-citizen").last).to_contain_text("非常满意")
    await expect(log.locator(".kq-msg").last).to_contain_text("已记录您的评价：非常满意")
    await expect(rating.get_by_role("button", name="非常满意")).to_be_disabled()
    # answered, the levels are still legible (they were white on white)
    bg, fg = await rating.get_by_role("button", name="满意", exact=True).evaluate(
        "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]")
    assert bg != "rgb(255, 255, 255)" and bg != fg
    assert errors == []
    await context.close()


async def test_out_of_hours_a_kiosk_offers_no_message_it_could_not_deliver(server, browser):
    """A 留言 is answered the next working day on the channel it was left on, and a kiosk's
    session ends when the person walks away: so the kiosk says when the unit is back and where
    help is now (随申办, 12345), and leaves no 留言 that would only be cancelled."""
    from playwright.async_api import expect

    url, app = server
    service = app[HUB].handoff
    clock = service.clock
    service.clock = lambda: SATURDAY_10  # 市公安局 is closed on Saturday morning
    try:
        context, page, errors = await open_kiosk(browser, url)
        log = page.get_by_role("log", name="对话记录")
        status = page.get_by_role("status", name="服务状态")
        await page.get_by_role("tab", name="市公安局").tap()
        await page.get_by_role("button", name="居住证签注", exact=True).tap()
        answer = log.locator(".kq-from-bot").first
        await expect(answer).to_contain_text("申请材料")
        # 小申's own rating keeps its prompt under the answer (only the agent's is its text)
        await expect(answer.locator(".kq-prompt")).to_have_text("这个回答解决您的问题了吗？")
        await page.get_by_role("button", name="转人工帮办").tap()
        reply = log.locator(".kq-from-bot").last
        await expect(reply).to_contain_text("现在不在服务时间")
        await expect(reply).to_contain_text("自助终端无法接收之后的答复")
        await expect(reply).to_contain_text("12345")
        await expect(reply).not_to_contain_text("您可以留言")
        await expect(status.get_by_role("button", name="取消留言")).to_be_hidden()
        await page.screenshot(path=SCREENSHOT_LEFT)
        async with app[HUB].engine.connect() as db:
            assert (await db.execute(select(func.count()).select_from(handoffs))).scalar() == 0
        assert errors == []
        await context.close()
    finally:
        service.clock = clock
