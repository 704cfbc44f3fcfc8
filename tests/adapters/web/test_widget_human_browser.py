"""线上人工帮办 in the 小申 widget, in Debian's chromium (Playwright), against the real server.

The handoff service's side is played by the test through the core's own notifier (stored
messages) and bus (transient status updates), exactly the paths the service uses.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.appkeys import ENGINE, HUB
from core.db.schema import attachments, conversations, messages
from core.dialog.models import Outbound, QueueStatus, utcnow
from core.handoff.rating import rating_request
from core.handoff.service import CANCEL
from core.ratings import LEVELS

from ...core.test_attachments import HTML, png, wav
from .test_widget_browser import (  # noqa: F401  (fixtures)
    SERVICE_APPS, XSS, embedder, server, watch,
)

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/widget-human.png"
SCREENSHOT_SERVING = "/tmp/widget-human-serving.png"
SCREENSHOT_LEFT = "/tmp/widget-human-left.png"
#: the text of AgentDesk's rating request (what text-only channels show)
RATING_TEXT = "请为本次服务评价：5 非常满意，4 满意，3 基本满意，2 不满意，1 非常不满意。"


async def natural_width(img) -> int:
    """The loaded picture's width in pixels (0 if it failed to decode)."""
    return await img.evaluate("""el => new Promise((resolve, reject) => {
        if (el.complete && el.src) return resolve(el.naturalWidth);
        el.addEventListener('load', () => resolve(el.naturalWidth));
        el.addEventListener('error', () => reject(new Error('image failed: ' + el.src)));
    })""")


async def open_widget(page, url: str):
    await page.goto(url)
    await page.get_by_role("button", name="打开智能客服小申").click()
    log = page.get_by_role("log", name="对话记录")
    box = page.get_by_role("textbox", name="输入您的问题")
    await box.fill("你好")
    await box.press("Enter")
    from playwright.async_api import expect
    await expect(log.locator(".bb-msg[data-seq='2']")).to_be_visible()
    return log, box


async def choose_file(page, name: str, mime: str, data: bytes) -> None:
    async with page.expect_file_chooser() as chooser:
        await page.get_by_role("button", name="发送图片或语音").click()
    await (await chooser.value).set_files(files=[{"name": name, "mimeType": mime,
                                                   "buffer": data}])


async def last_citizen_payload(engine, conv: str) -> str | None:
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(messages.c.body).where(messages.c.conversation_id == conv,
                                          messages.c.sender == "citizen")
            .order_by(messages.c.seq.desc()).limit(1))).first()
    return row[0].get("payload")


async def set_status(engine, conv: str, status: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(conversations).where(conversations.c.id == conv)
                           .values(status=status))


async def test_queue_banner_agent_messages_pictures_and_rating(server, browser):
    from playwright.async_api import expect

    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    seen = watch(page)
    log, box = await open_widget(page, server + "/")
    app = SERVICE_APPS[server]
    hub, engine = app[HUB], app[ENGINE]
    [uid] = list(hub.adapters["web"].connections)
    conv = (await hub.conversations.current("web", uid)).id
    banner = page.get_by_role("status", name="人工帮办状态")
    await expect(banner).to_be_hidden()

    # -- the citizen joins the line: a stored message carrying the status ---------------------
    waiting = QueueStatus(state="waiting", unit="U1", unit_name="市人社局", position=3,
                          wait_s=250, can_cancel=True)
    await hub.notifier.tell(conv, "已为您接入市人社局线上人工帮办。您前面还有2位，预计等待约5分钟。",
                            action="handoff", body={"queue": waiting.model_dump(), "quick_replies": [
                                {"label": "取消排队", "payload": "handoff:cancel"}]})
    await expect(banner).to_contain_text("市人社局")
    await expect(banner).to_contain_text("您前面还有 2 位")
    await expect(banner).to_contain_text("预计等待 5 分钟")
    cancel = banner.get_by_role("button", name="取消排队")
    await expect(cancel).to_be_visible()
    rows = await log.locator(".bb-msg").count()

    # -- transient updates change the banner in place --------------------------------------------
    await hub.notifier.status("web", uid, conv, waiting.model_copy(
        update={"position": 2, "wait_s": 100}), "您前面还有1位")
    await expect(banner).to_contain_text("您前面还有 1 位")
    await expect(banner).to_contain_text("预计等待 2 分钟")
    # a status older than the one shown (delivered late) does not move it back; the stored
    # message after it shows that it has been handled (the bus keeps order)
    await hub.bus.publish("web", uid, [Outbound(
        conversation_id=conv, seq=0, sender="system", action="system", text="您前面还有5位",
        queue=waiting.model_copy(update={"position": 6}),
        created_at=utcnow() - timedelta(seconds=30))])
    await hub.notifier.tell(conv, "工作人员正在为您安排，请稍候。")
    await expect(log.locator(".bb-msg").nth(rows)).to_contain_text("正在为您安排")
    await expect(banner).to_contain_text("您前面还有 1 位")
    rows += 1
    await hub.notifier.status("web", uid, conv, waiting.model_copy(
        update={"position": 1, "wait_s": 20}), "下一位就是您")
    await expect(banner).to_contain_text("下一位就是您")
    await expect(banner).to_contain_text("预计等待 1 分钟")
    assert await log.locator(".bb-msg").count() == rows, "transient updates add no message"

    # -- 取消排队 sends the cancel payload; the core's cancelled status hides the banner -----------
    await cancel.click()
    await expect(log.locator(".bb-from-citizen").last).to_contain_text("取消排队")
    assert await last_citizen_payload(engine, conv) == "handoff:cancel"
    await hub.notifier.tell(conv, "已为您取消。", body={"queue": {"state": "cancelled"}})
    await expect(banner).to_be_hidden()

    # -- waiting again, then an agent takes it ---------------------------------------------------
    await hub.notifier.tell(conv, "已为您重新排队。", body={"queue": waiting.model_dump(),
                                                       "quick_replies": [CANCEL.model_dump()]})
    await expect(banner).to_contain_text("您前面还有 2 位")
    requeued = await log.locator(".bb-msg").last.get_attribute("data-seq")
    stale = log.locator(f".bb-msg[data-seq='{requeued}']").get_by_role("button", name="取消排队")
    await expect(stale).to_be_enabled()
    await set_status(engine, conv, "agent")  # as the handoff service does: the bot is quiet
    await hub.notifier.tell(conv, "市人社局工作人员李华已为您接入，请描述您的问题。", body={
        "queue": QueueStatus(state="assigned", unit="U1", unit_name="市人社局",
                             agent_name="李华").model_dump()})
    await expect(banner).to_contain_text("工作人员 李华 为您服务")
    await expect(cancel).to_be_hidden()
    # a person serves: the 取消排队 left in the log has nothing to cancel any more
    await expect(stale).to_be_disabled()
    system_row = log.locator(".bb-from-system").last
    await expect(system_row).to_contain_text("已为您接入")
    # system notices look different from 小申's answers
    bubble_bg = "el => getComputedStyle(el.querySelector('.bb-bubble')).backgroundColor"
    assert await system_row.evaluate(bubble_bg) != await log.locator(".bb-from-bot").first.evaluate(
        bubble_bg)

    # the citizen writes to the person: no "小申正在输入…" while a person serves
    await box.fill("我的居住证材料被退回了")
    await box.press("Enter")
    await expect(log.locator(".bb-from-citizen").last).to_contain_text("材料被退回")
    await expect(page.locator(".bb-typing")).to_be_hidden()

    # the agent answers with a picture; name and text are shown as text
    store = hub.adapters["web"].attachments
    pic = await store.save(conv, "agent", "staff-7", png(40, 30), name="示意图.png")
    await hub.notifier.tell(conv, f"请按图示位置上传材料。{XSS}", sender="agent", action="agent",
                            body={"sender_name": "李华<b>", "attachments": [
                                pic.to_attachment().model_dump()]})
    agent = log.locator(".bb-from-agent").last
    await expect(agent).to_contain_text("工作人员 李华<b>")
    await expect(agent).to_contain_text(XSS)
    thumb = agent.locator("img.bb-thumb")
    await expect(thumb).to_have_count(1)
    assert await natural_width(thumb) == 40
    assert await agent.locator("img").count() == 1 and await agent.locator("b").count() == 0

    # -- the citizen sends a screenshot and a voice note through the widget ----------------------
    await choose_file(page, "截图.png", "image/png", png(30, 20))
    mine = log.locator(".bb-from-citizen").last
    await expect(mine.locator("img.bb-thumb")).to_have_count(1)
    assert await natural_width(mine.locator("img.bb-thumb")) == 30
    await choose_file(page, "语音.wav", "audio/wav", wav(800))
    voice = log.locator(".bb-from-citizen").last.locator("audio")
    await expect(voice).to_have_count(1)
    duration = await voice.evaluate("""el => new Promise((resolve, reject) => {
        if (el.readyState >= 1) return resolve(el.duration);
        el.addEventListener('loadedmetadata', () => resolve(el.duration));
        el.addEventListener('error', () => reject(new Error('audio failed')));
        el.load();
    })""")
    assert duration == pytest.approx(0.1, abs=0.02)
    await page.screenshot(path=SCREENSHOT_SERVING)
    _, history = await hub.history("web", uid)
    sent = [m for m in history if m.sender == "citizen" and m.attachments]
    assert [(m.attachments[0].kind, m.attachments[0].mime) for m in sent] == [
        ("image", "image/png"), ("voice", "audio/wav")]

    # refusals are explained in the status line and store nothing
    async with engine.connect() as conn:
        before = (await conn.execute(select(attachments.c.id))).all()
    await choose_file(page, "截图.png", "image/png", HTML)
    status = page.locator(".bb-status")
    await expect(status).to_contain_text("仅支持发送 PNG")
    await choose_file(page, "大图.png", "image/png", png(8, 8) + b"\x00" * (6 * 1024 * 1024))
    await expect(status).to_contain_text("图片过大，请控制在 5 MB 以内")
    async with engine.connect() as conn:
        assert (await conn.execute(select(attachments.c.id))).all() == before

    # -- the service ends: the banner goes, and the agent rating works like the bot's -------------
    await set_status(engine, conv, "bot")
    await hub.notifier.tell(conv, "本次服务已结束。", body={"queue": {"state": "closed"}})
    await expect(banner).to_be_hidden()
    # as AgentDesk sends it: the text for text-only channels, the prompt and the buttons
    await hub.notifier.tell(conv, RATING_TEXT, action="rating",
                            body=rating_request("h-test", "市人社局"))
    rating = log.get_by_role("group", name="请为市人社局本次人工服务评价：")
    await expect(rating.get_by_role("button")).to_have_count(5)  # pushed: wait, don't race it
    # one prompt: the buttons' levels are not listed again as "5 非常满意，4 满意…"
    asked = log.locator(".bb-msg").last
    assert await asked.locator(".bb-text").inner_text() == "请为市人社局本次人工服务评价："
    assert await asked.locator(".bb-prompt").count() == 0
    assert "回复" not in await asked.inner_text() and "5 非常满意" not in await asked.inner_text()
    levels = await rating.get_by_role("button").all_inner_texts()
    assert levels == [LEVELS[n] for n in (1, 2, 3, 4, 5)]
    assert levels[0] == "非常不满意" and levels[-1] == "非常满意"
    await rating.get_by_role("button", name="满意", exact=True).click()
    await expect(log.locator(".bb-from-citizen").last).to_contain_text("满意")
    assert await last_citizen_payload(engine, conv) == "rate:4"
    await expect(rating.get_by_role("button", name="非常满意")).to_be_disabled()

    await page.screenshot(path=SCREENSHOT)
    assert seen["dialogs"] == [] and seen["errors"] == []
    await context.close()


async def test_embedded_widget_uploads_and_shows_pictures_with_its_token(server, embedder,
                                                                          browser):
    """On another site's page our cookie does not travel: the upload and the pictures go with
    the widget's token (CORS for that origin only), and pictures are shown from blobs."""
    from playwright.async_api import expect

    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    seen = watch(page)
    log, _ = await open_widget(page, embedder["origin"] + "/")
    assert [c["name"] for c in await context.cookies(server)] == []

    await choose_file(page, "截图.png", "image/png", png(12, 9))
    thumb = log.locator(".bb-from-citizen").last.locator("img.bb-thumb")
    await expect(thumb).to_have_count(1)
    assert await natural_width(thumb) == 12
    assert (await thumb.get_attribute("src")).startswith("blob:")

    hub = SERVICE_APPS[server][HUB]
    [uid] = list(hub.adapters["web"].connections)
    conv = (await hub.conversations.current("web", uid)).id
    pic = await hub.adapters["web"].attachments.save(conv, "agent", "staff-7", png(16, 16))
    await hub.notifier.tell(conv, "收到，请看这里。", sender="agent", action="agent",
                            body={"sender_name": "王芳",
                                  "attachments": [pic.to_attachment().model_dump()]})
    agent_thumb = log.locator(".bb-from-agent").last.locator("img.bb-thumb")
    await expect(agent_thumb).to_have_count(1)
    assert await natural_width(agent_thumb) == 16
    assert seen["dialogs"] == [] and seen["errors"] == []
    await context.close()


async def test_a_message_left_out_of_hours_is_acknowledged_and_the_banner_says_so(server,
                                                                                   browser):
    """Outside working hours, on a phone: the 留言 prompt, the citizen's message acknowledged
    once, and a banner that says it was received — also after the page is reloaded."""
    from playwright.async_api import expect

    from tests.core.handoff.conftest import SATURDAY_10

    app = SERVICE_APPS[server]
    hub = app[HUB]
    service = hub.handoff
    clock = service.clock
    service.clock = lambda: SATURDAY_10  # every unit is closed on Saturday morning
    try:
        context = await browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844},
                                            is_mobile=True, has_touch=True)
        page = await context.new_page()
        seen = watch(page)
        log, box = await open_widget(page, server + "/")
        banner = page.get_by_role("status", name="人工帮办状态")
        await box.fill("无犯罪记录证明怎么开？")
        await box.press("Enter")
        await expect(log.locator(".bb-msg[data-seq='4']")).to_be_visible()
        await box.fill("转人工")
        await box.press("Enter")
        await expect(log.locator(".bb-msg").last).to_contain_text("请直接输入您的留言内容")
        await expect(banner).to_contain_text("市公安局 · 当前非工作时间，请留言")
        await expect(banner.get_by_role("button", name="取消留言")).to_be_visible()

        await box.fill("我想问无犯罪记录证明能不能代办")
        await box.press("Enter")
        ack = log.locator(".bb-from-bot", has_text="您的留言已提交")
        await expect(ack).to_have_count(1)
        await expect(ack).to_contain_text("市公安局工作人员将于11月30日（周一）9:00起通过本渠道答复您")
        await expect(banner).to_contain_text("市公安局 · 留言已提交，工作人员上班后将尽快回复")
        await expect(banner.get_by_role("button", name="取消留言")).to_be_visible()
        await expect(page.locator(".bb-typing")).to_be_hidden()

        # a second line right after is not answered again
        await box.fill("代办人需要带什么材料？")
        await box.press("Enter")
        await expect(log.locator(".bb-from-citizen").last).to_contain_text("代办人")
        await page.wait_for_timeout(800)
        await expect(ack).to_have_count(1)
        await expect(log.locator(".bb-msg").last).to_contain_text("代办人")

        # a reload replays the conversation: the banner still says the 留言 was received
        await page.reload()
        await page.get_by_role("button", name="打开智能客服小申").click()
        await expect(log.locator(".bb-from-citizen").last).to_contain_text("代办人")
        await expect(banner).to_contain_text("市公安局 · 留言已提交，工作人员上班后将尽快回复")
        await expect(log.locator(".bb-from-bot", has_text="您的留言已提交")).to_have_count(1)
        await page.screenshot(path=SCREENSHOT_LEFT)
        assert seen["dialogs"] == [] and seen["errors"] == []
        await context.close()
    finally:
        service.clock = clock
