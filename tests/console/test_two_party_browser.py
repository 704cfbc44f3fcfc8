"""The headline: a citizen in the 小申 widget and an agent in the workspace, two browsers, one
real server (Debian's chromium through Playwright).

The citizen asks, asks for a person; the agent signs in, goes online, gets the conversation
with the bot's part of the transcript, answers (text and a picture); the citizen sees it and
answers (text and a screenshot); the agent closes it as 已解决; the citizen rates it. Every unit
is open around the clock here, so the test does not depend on the hour it runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.web import WebAdapter
from core.appkeys import HUB
from core.banned import BannedPhrases
from tests.support import serving

from ..core.test_attachments import png, wav
from .test_workspace import NO_CRIME, PASSWORD, desk_settings, staff_store  # noqa: F401

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"
SCREENSHOT = Path("/tmp/workspace.png")
SUPERVISOR_SCREENSHOT = Path("/tmp/supervisor.png")



@pytest.fixture
async def server(settings, redis, engine, seeded, tmp_path):
    from core.app import create_app

    configured = desk_settings(settings, tmp_path).model_copy(update={"channels": {"web": {}}})
    app = create_app(configured, adapters={"web": WebAdapter})
    async with serving(app) as url:
        app[HUB].desk.banned = BannedPhrases.load(None)
        yield url, app



def watch(page) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"dialogs": [], "errors": [], "csp": []}

    def on_dialog(dialog) -> None:
        seen["dialogs"].append(dialog.message)
        asyncio.ensure_future(dialog.dismiss())

    def on_console(msg) -> None:
        if "Content Security Policy" in msg.text:
            seen["csp"].append(msg.text)

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    page.on("console", on_console)
    return seen


async def test_citizen_and_agent_talk_close_and_rate(server, browser, staff_store):
    from playwright.async_api import expect

    url, app = server
    agent = await staff_store.add_user("zhangjing", PASSWORD, roles=["agent", "supervisor"],
                                       units=["police"], display_name="张警官")

    # -- the citizen asks 小申, then for a person ---------------------------------------------
    citizen_ctx = await browser.new_context(locale="zh-CN", viewport={"width": 1200, "height": 860})
    citizen = await citizen_ctx.new_page()
    c_seen = watch(citizen)
    await citizen.goto(url + "/")
    await citizen.get_by_role("button", name="打开智能客服小申").click()
    c_log = citizen.get_by_role("log", name="对话记录")
    c_box = citizen.get_by_role("textbox", name="输入您的问题")
    await c_box.fill(NO_CRIME)
    await c_box.press("Enter")
    answer = c_log.locator(".bb-msg[data-seq='2']")
    await expect(answer).to_be_visible()
    bot_answer = (await answer.inner_text()).strip()
    await c_box.fill("转人工")
    await c_box.press("Enter")
    await expect(c_log).to_contain_text("已为您接入市公安局线上人工帮办")

    # -- the agent signs in, goes online and gets the conversation -----------------------------
    agent_ctx = await browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
    desk_page = await agent_ctx.new_page()
    a_seen = watch(desk_page)
    await desk_page.goto(url + "/console/workspace")
    await desk_page.get_by_label("用户名").fill(agent.username)
    await desk_page.get_by_label("密码").fill(PASSWORD)
    await desk_page.get_by_role("button", name="登录").click()
    await expect(desk_page).to_have_url(url + "/console/workspace")
    await expect(desk_page.locator("#ws-conn")).to_be_empty()
    await desk_page.get_by_role("button", name="上线").click()
    await expect(desk_page.locator("#ws-status")).to_have_text("在线")
    await expect(desk_page.get_by_role("button", name="上线")).to_have_attribute(
        "aria-pressed", "true")
    mine = desk_page.locator("#ws-mine .ws-pick")
    await expect(mine).to_have_count(1)
    await expect(mine).to_contain_text("新分配")  # the visual cue of a new assignment
    await expect(mine).to_contain_text("市公安局")
    # the citizen writes before the agent opens it: an unread count, in the tab title too
    await c_box.fill("请问在吗")
    await c_box.press("Enter")
    await expect(mine.get_by_label("1条未读")).to_be_visible()
    await expect(desk_page).to_have_title("（2）新消息 · 坐席工作台 · 帮办工作台")
    await mine.click()
    await expect(mine.get_by_label("1条未读")).to_have_count(0)
    await expect(desk_page).to_have_title("坐席工作台 · 帮办工作台")
    a_log = desk_page.get_by_role("log", name="会话记录")
    await expect(a_log.locator(".ws-from-citizen").first).to_contain_text(NO_CRIME)
    await expect(a_log.locator(".ws-from-bot").first).to_be_visible()
    # the bot's part is there, in plain text
    first_bot = await a_log.locator(".ws-from-bot .ws-text").first.inner_text()
    assert first_bot.strip()[:10] in bot_answer
    await expect(a_log).to_contain_text("张警官已为您接入")
    await expect(mine).not_to_contain_text("新分配")

    # a banned phrase stays in the box with the reason
    reply = desk_page.get_by_label("回复内容")
    await reply.fill("这个不归我们管")
    await desk_page.get_by_role("button", name="发送", exact=True).click()
    alert = desk_page.get_by_role("alert")
    await expect(alert).to_contain_text("禁语")
    await expect(alert).to_contain_text("首问负责")
    await expect(reply).to_have_value("这个不归我们管")

    # the official answer from the knowledge base, one click into the box
    await reply.fill("")
    await desk_page.get_by_role("searchbox", name="搜索知识库").fill("无犯罪记录证明")
    await desk_page.get_by_role("button", name="搜索", exact=True).click()
    hits = desk_page.locator("#ws-kb-hits .ws-kb-hit")
    await expect(hits.first).to_be_visible()
    await hits.first.get_by_role("button", name="插入答复").click()
    assert len(await reply.input_value()) > 20 and "<" not in await reply.input_value()

    # a canned reply, then the agent's own words
    await reply.fill("")
    await desk_page.get_by_role("button", name="问候").click()
    await expect(reply).to_have_value("您好，很高兴为您服务。请问有什么可以帮您？")
    await reply.fill("您好，无犯罪记录证明可以在随申办申请，请问您是本人办理吗？")
    await desk_page.get_by_role("button", name="发送", exact=True).click()
    await expect(alert).to_be_hidden()
    await expect(reply).to_have_value("")
    await expect(a_log.locator(".ws-from-agent")).to_contain_text("请问您是本人办理吗")

    # -- the citizen sees it and answers; the agent sees that live ------------------------------
    await expect(c_log.locator(".bb-from-agent").last).to_contain_text("请问您是本人办理吗")
    await expect(c_log.locator(".bb-from-agent").last).to_contain_text("工作人员 张警官")
    await c_box.fill("是本人，" + XSS)
    await c_box.press("Enter")
    said = a_log.locator(".ws-from-citizen").last
    await expect(said).to_contain_text("是本人，" + XSS)
    assert await a_log.locator("img").count() == 0  # shown as text, never run

    # pictures both ways: the agent's upload, the citizen's screenshot
    await desk_page.get_by_label("发送图片").set_input_files(files=[{
        "name": "示意图.png", "mimeType": "image/png", "buffer": png(40, 30)}])
    await expect(desk_page.locator("#ws-pending")).to_contain_text("示意图.png")
    await reply.fill("请参考示意图。")
    await desk_page.get_by_role("button", name="发送", exact=True).click()
    await expect(c_log.locator(".bb-from-agent").last.locator("img")).to_have_count(1)
    async with citizen.expect_file_chooser() as chooser:
        await citizen.get_by_role("button", name="发送图片或语音").click()
    await (await chooser.value).set_files(files=[{"name": "截图.png", "mimeType": "image/png",
                                                   "buffer": png(30, 20)}])
    shot = a_log.locator(".ws-from-citizen").last.locator("img")
    await expect(shot).to_have_count(1)
    width = await shot.evaluate("""el => new Promise((resolve, reject) => {
        if (el.complete && el.naturalWidth) return resolve(el.naturalWidth);
        el.addEventListener('load', () => resolve(el.naturalWidth));
        el.addEventListener('error', () => reject(new Error('image failed: ' + el.src)));
    })""")
    assert width == 30
    await desk_page.screenshot(path=str(SCREENSHOT))

    # a voice file from the agent plays in the citizen's widget
    await desk_page.get_by_label("发送图片或语音").set_input_files(files=[{
        "name": "说明.wav", "mimeType": "audio/wav", "buffer": wav(4000)}])  # 0.5 s at 8 kHz
    await expect(desk_page.locator("#ws-pending")).to_contain_text("已添加语音：说明.wav")
    await desk_page.get_by_role("button", name="发送", exact=True).click()
    audio = c_log.locator(".bb-from-agent").last.locator("audio")
    await expect(audio).to_have_count(1)
    seconds = await audio.evaluate("""el => new Promise((resolve, reject) => {
        if (el.readyState >= 1) return resolve(el.duration);
        el.addEventListener('loadedmetadata', () => resolve(el.duration));
        el.addEventListener('error', () => reject(new Error('audio failed: ' + el.src)));
        el.load();
    })""")
    assert abs(seconds - 0.5) < 0.05

    # -- the supervisor's view of the same moment ------------------------------------------------
    sv = await agent_ctx.new_page()
    sv_seen = watch(sv)
    await sv.goto(url + "/console/supervisor")
    await expect(sv.locator(".sv-unit")).to_contain_text("张警官")
    await expect(sv.locator(".sv-unit")).to_contain_text("1 / 5")
    await sv.screenshot(path=str(SUPERVISOR_SCREENSHOT))

    # -- closed as 已解决; the citizen rates it --------------------------------------------------
    await desk_page.bring_to_front()
    await desk_page.get_by_label("结案", exact=True).select_option(label="已解决")
    await desk_page.get_by_role("button", name="结案").click()
    await expect(desk_page.locator("#ws-title")).to_contain_text("已结束")
    await expect(desk_page.locator("#ws-reply")).to_be_hidden()
    await expect(desk_page.locator("#ws-mine .ws-pick")).to_have_count(0)
    # the supervisor's page follows live: nobody is being served any more
    await expect(sv.locator(".sv-unit")).to_contain_text("0 / 5")

    await expect(c_log).to_contain_text("本次人工服务已结束")
    rating = c_log.locator(".bb-msg").last
    await rating.get_by_role("button", name="非常满意").click()
    await expect(c_log.locator(".bb-msg").last).to_contain_text("已记录您的评价：非常满意")
    await c_log.locator(".bb-msg").last.get_by_role("button", name="已解决").click()
    await expect(c_log.locator(".bb-msg").last).to_contain_text("感谢您的反馈")

    for seen in (c_seen, a_seen, sv_seen):
        assert seen["dialogs"] == [] and seen["errors"] == [] and seen["csp"] == [], seen
    await citizen_ctx.close()
    await agent_ctx.close()
