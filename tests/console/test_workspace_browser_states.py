"""坐席工作台's states in Debian's chromium (Playwright), against the real server: which controls
show when, the 派单 draft as the citizen writes, the SLA list's labels, and a phone's width.

Citizens are driven through the hub (as a channel adapter would) in the test's event loop; the
agent in the browser. Every unit is open around the clock (see test_workspace.desk_settings).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import pytest
from sqlalchemy import select

from core.appkeys import HUB
from core.db.schema import kb_candidates

from .test_two_party_browser import server  # noqa: F401 - the same real server, web channel on
from .test_workspace import NO_CRIME, PASSWORD, ask_for_person, say, staff_store  # noqa: F401

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}


class Watched:
    """A signed-in page, and what went wrong on it: script errors, dialogs, CSP reports, and
    any request for a conversation without an id (…/handoffs/null/…)."""

    def __init__(self, page) -> None:
        self.page = page
        self.problems: list[str] = []
        self.posts: list[str] = []

        def on_request(req) -> None:
            if "/handoffs/null" in req.url or "/handoffs/undefined" in req.url:
                self.problems.append(f"request without an id: {req.method} {req.url}")
            if req.method == "POST":
                self.posts.append(req.url)

        def on_dialog(dialog) -> None:
            self.problems.append(f"dialog: {dialog.message}")
            asyncio.ensure_future(dialog.dismiss())

        page.on("request", on_request)
        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: self.problems.append(msg.text)
                if "Content Security Policy" in msg.text else None)


async def signed_in(browser, url: str, username: str, path: str, viewport=DESKTOP) -> Watched:
    from playwright.async_api import expect

    context = await browser.new_context(locale="zh-CN", viewport=viewport)
    page = await context.new_page()
    watched = Watched(page)
    await page.goto(url + path)
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page).to_have_url(url + path)
    watched.posts.clear()  # the sign-in's own
    return watched


async def left_message(app, question: str = NO_CRIME):
    """A 留言 as left outside hours (every unit is open in these tests): (citizen, handoff)."""
    citizen = f"citizen-{secrets.token_hex(4)}"
    await say(app, citizen, question)
    conv = (await app[HUB].history("web", citizen))[0]
    h = await app[HUB].desk.store.open(conversation_id=conv, channel="web", channel_user=citizen,
                                       unit="police", matter="M06", reason="matter",
                                       state="message")
    return citizen, h


async def action_bar_is_hidden(page) -> None:
    from playwright.async_api import expect

    for sel in ("#ws-actions", "#ws-close", "#ws-transfer", "#ws-dispatch-box"):
        await expect(page.locator(sel)).to_be_hidden()
    for name in ("结案", "转办"):
        await expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    await expect(page.locator("#ws-dispatch-box summary")).to_be_hidden()


async def test_the_actions_show_only_on_a_conversation_the_agent_can_manage(server, browser,
                                                                            staff_store):
    from playwright.async_api import expect

    url, app = server
    agent = await staff_store.add_user("zhangjing", PASSWORD, roles=["agent"], units=["police"],
                                       display_name="张警官")
    _, note = await left_message(app)
    w = await signed_in(browser, url, agent.username, "/console/workspace")
    page = w.page
    await expect(page.locator("#ws-messages .ws-pick")).to_have_count(1)

    # nothing selected: no reply box, no action bar; a forced submit sends nothing
    await expect(page.locator("#ws-title")).to_have_text("请从左侧选择一个会话")
    await action_bar_is_hidden(page)
    await expect(page.locator("#ws-reply")).to_be_hidden()
    assert await page.locator("#ws-actions").evaluate("e => getComputedStyle(e).display") == "none"
    for form in ("ws-close", "ws-transfer", "ws-dispatch", "ws-claim"):
        await page.evaluate(f"document.getElementById('{form}').requestSubmit()")
    await expect(page.get_by_role("alert")).to_have_text("请先从左侧选择一个会话")
    assert w.posts == []

    # a 留言 not yet claimed: only 接待这条留言
    await page.locator("#ws-messages .ws-pick").click()
    await expect(page.locator("#ws-title")).to_contain_text("· 留言")
    await expect(page.get_by_role("button", name="接待这条留言")).to_be_visible()
    for sel in ("#ws-close", "#ws-transfer", "#ws-dispatch-box", "#ws-reply"):
        await expect(page.locator(sel)).to_be_hidden()
    await page.evaluate("document.getElementById('ws-close').requestSubmit()")
    await expect(page.get_by_role("alert")).to_have_text("这个会话当前不能执行此操作")
    assert w.posts == []

    # claimed: the agent's own conversation, all of it
    await page.get_by_role("button", name="接待这条留言").click()
    await expect(page.locator("#ws-title")).to_contain_text("· 接待中")
    await expect(page.get_by_role("button", name="接待这条留言")).to_be_hidden()
    for sel in ("#ws-close", "#ws-transfer", "#ws-dispatch-box", "#ws-reply"):
        await expect(page.locator(sel)).to_be_visible()

    # closed: nothing left to act on
    await page.get_by_label("结案", exact=True).select_option(label="已解决")
    await page.get_by_role("button", name="结案", exact=True).click()
    await expect(page.locator("#ws-title")).to_contain_text("· 已结束")
    await action_bar_is_hidden(page)
    await expect(page.locator("#ws-reply")).to_be_hidden()

    # transferred away: the same
    await page.get_by_role("button", name="上线").click()
    await expect(page.locator("#ws-status")).to_have_text("在线")
    await ask_for_person(app)
    mine = page.locator("#ws-mine .ws-pick")
    await expect(mine).to_have_count(1)
    await mine.click()
    await expect(page.locator("#ws-close")).to_be_visible()
    await page.get_by_label("转办", exact=True).select_option("hrss")
    await page.get_by_label("转办说明").fill("社保问题，转人社局")
    await page.get_by_role("button", name="转办", exact=True).click()
    await expect(page.locator("#ws-title")).to_contain_text("· 已转办")
    await action_bar_is_hidden(page)
    await expect(page.locator("#ws-reply")).to_be_hidden()

    assert all(p.rstrip("/").split("/")[-2] not in ("null", "undefined") for p in w.posts)
    assert w.problems == [], w.problems
    await page.context.close()


async def serving_one(browser, url: str, app, agent):  # noqa: ANN001 - fixtures' objects
    """The agent's workspace, online, with one citizen (NO_CRIME, then 转人工) taken and open."""
    from playwright.async_api import expect

    w = await signed_in(browser, url, agent.username, "/console/workspace")
    await w.page.get_by_role("button", name="上线").click()
    await expect(w.page.locator("#ws-status")).to_have_text("在线")
    citizen = await ask_for_person(app)
    mine = w.page.locator("#ws-mine .ws-pick")
    await expect(mine).to_have_count(1)
    await mine.click()
    return w, citizen


async def test_the_dispatch_draft_leaves_out_commands_and_follows_the_citizen(server, browser,
                                                                             staff_store):
    from playwright.async_api import expect

    url, app = server
    agent = await staff_store.add_user("lijing", PASSWORD, roles=["agent"], units=["police"],
                                       display_name="李警官")
    sent: dict[str, Any] = {}

    async def dispatcher(**kw: Any) -> dict[str, Any]:
        sent.update(kw)
        return {"id": "T20261130001", "status": "created"}

    app[HUB].desk.dispatcher = dispatcher
    w, citizen = await serving_one(browser, url, app, agent)
    page = w.page
    log = page.get_by_role("log", name="会话记录")
    await expect(log.locator(".ws-from-citizen").last).to_have_text(re.compile("转人工"))
    summary = page.locator("#ws-summary")
    await page.locator("#ws-dispatch-box summary").click()
    await expect(summary).to_have_value(NO_CRIME)

    # newer lines come in; the steering ones (a menu number, 在吗, 人工) stay out
    for line in ("2", "在吗？", "人工！", "我是本人，户籍在徐汇区 <b>急</b>"):
        await say(app, citizen, line)
    await expect(log.locator(".ws-from-citizen").last).to_contain_text("户籍在徐汇区")
    await expect(summary).to_have_value(f"{NO_CRIME}\n我是本人，户籍在徐汇区 <b>急</b>")
    assert await log.locator("b").count() == 0  # citizen text is text

    # once the agent writes the summary themselves, it is theirs
    await summary.fill("群众咨询无犯罪记录证明开具，本人，户籍徐汇。")
    await say(app, citizen, "另外护照怎么办？")
    await expect(log.locator(".ws-from-citizen").last).to_contain_text("护照怎么办")
    await expect(summary).to_have_value("群众咨询无犯罪记录证明开具，本人，户籍徐汇。")
    await page.get_by_role("button", name="派单", exact=True).click()
    await expect(page.locator("#ws-facts")).to_contain_text("T20261130001")
    assert sent["summary"] == "群众咨询无犯罪记录证明开具，本人，户籍徐汇。"
    await action_bar_is_hidden(page)

    assert w.problems == [], w.problems
    await page.context.close()


async def test_kb_candidate_offers_the_citizens_question_for_the_agent_to_correct(
        server, browser, staff_store):
    from playwright.async_api import expect

    url, app = server
    agent = await staff_store.add_user("zhaojing", PASSWORD, roles=["agent"], units=["police"],
                                       display_name="赵警官")
    w, citizen = await serving_one(browser, url, app, agent)
    page = w.page
    await say(app, citizen, "在吗？")
    log = page.get_by_role("log", name="会话记录")
    await expect(log.locator(".ws-from-citizen").last).to_have_text(re.compile("在吗"))
    answer = "可在“一网通办”在线申请，本人持身份证办理。"
    await page.get_by_label("回复内容").fill(answer)
    await page.get_by_role("button", name="发送", exact=True).click()
    reply = log.locator(".ws-from-agent").last
    await expect(reply).to_contain_text(answer)

    # the question offered is what the citizen asked, not 转人工 or 在吗
    await reply.get_by_role("button", name="纳入知识库").click()
    question = reply.get_by_role("textbox", name="对应的问题")
    await expect(question).to_be_focused()
    await expect(question).to_have_value(NO_CRIME)
    # Escape closes it, back on the button
    await question.press("Escape")
    await expect(question).to_have_count(0)
    await expect(reply.get_by_role("button", name="纳入知识库")).to_be_focused()
    await reply.get_by_role("button", name="纳入知识库").click()
    await expect(question).to_have_value(NO_CRIME)
    # emptied, nothing is sent
    await question.fill("  ")
    await reply.get_by_role("button", name="提交候选").click()
    await expect(page.get_by_role("alert")).to_have_text("请填写这条答复对应的问题")
    assert not [p for p in w.posts if p.endswith("/propose")]
    # corrected, it is filed with the answer
    await question.fill("无犯罪记录证明在哪里申请？")
    await reply.get_by_role("button", name="提交候选").click()
    done = reply.get_by_role("button", name="已提交知识库候选")
    await expect(done).to_be_disabled()
    await expect(question).to_have_count(0)
    # the form's alert went with it, and the agent is back in the reply box
    await expect(page.locator("#ws-alert")).to_have_text("")
    await expect(page.get_by_label("回复内容")).to_be_focused()
    async with app[HUB].engine.connect() as conn:
        row = (await conn.execute(select(kb_candidates))).mappings().one()
    assert (row["question"], row["answer"]) == ("无犯罪记录证明在哪里申请？", answer)
    assert len([p for p in w.posts if p.endswith("/propose")]) == 1
    # after a reload it still says so, instead of offering it again
    await page.reload()
    await page.locator("#ws-mine .ws-pick").click()
    reply = page.get_by_role("log", name="会话记录").locator(".ws-from-agent").last
    await expect(reply).to_contain_text(answer)
    await expect(reply.get_by_role("button", name="已提交知识库候选")).to_be_disabled()

    assert w.problems == [], w.problems
    await page.context.close()


async def test_the_sla_list_says_served_for_a_served_conversation(server, browser, staff_store):
    from playwright.async_api import expect

    url, app = server
    desk = app[HUB].desk
    agent = await staff_store.add_user("wangjing", PASSWORD, roles=["agent"], units=["police"],
                                       display_name="王警官")
    await desk.heartbeat(agent, cap=1)
    await ask_for_person(app)
    [held] = (await desk.board(agent))["mine"]
    assert await desk.store.mark_breached(held["id"])
    _, note = await left_message(app)
    assert await desk.store.mark_breached(note.id)

    w = await signed_in(browser, url, agent.username, "/console/workspace")
    page = w.page
    late = page.locator("#ws-breaches .ws-pick")
    await expect(late).to_have_count(2)
    served = late.filter(has_text="接待中")
    await expect(served.locator(".ws-since")).to_have_text(re.compile(r"^已接待 \d"))
    waiting = late.filter(has_text="留言")
    await expect(waiting.locator(".ws-since")).to_have_text(re.compile(r"^已等待 \d"))
    # the same label as 我的会话
    await expect(page.locator("#ws-mine .ws-since")).to_have_text(
        re.compile(r"^已接待 \d"))
    assert w.problems == [], w.problems
    await page.context.close()


async def test_a_phone_gets_the_workspace_and_the_user_list_without_sideways_scrolling(
        server, browser, staff_store):
    from playwright.async_api import expect

    url, app = server
    admin = await staff_store.add_user("admin1", PASSWORD,
                                       roles=["admin", "agent", "supervisor"],
                                       units=["police", "district-310104", "hrss"],
                                       display_name="管理员甲")
    for i in range(3):
        await staff_store.add_user(f"xuhui.agent0{i}", PASSWORD, roles=["agent", "supervisor"],
                                   units=["police", "district-310104"],
                                   display_name=f"徐汇坐席{i}号")
    await app[HUB].desk.heartbeat(admin)
    await ask_for_person(app)

    w = await signed_in(browser, url, "admin1", "/console/workspace", viewport=PHONE)
    page = w.page
    mine = page.locator("#ws-mine .ws-pick")
    await expect(mine).to_have_count(1)
    await mine.click()
    await expect(page.locator("#ws-close")).to_be_visible()
    await page.locator("#ws-dispatch-box summary").click()
    await expect(page.locator("#ws-summary")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = await page.locator("#ws-actions").bounding_box()
    for form in ("#ws-close", "#ws-transfer", "#ws-dispatch-box"):
        inner = await page.locator(form).bounding_box()
        assert inner["x"] >= box["x"] and inner["x"] + inner["width"] <= box["x"] + box["width"] \
            + 0.5, (form, inner, box)
    await page.screenshot(path="/tmp/workspace-phone.png", full_page=True)

    await page.goto(url + "/console/admin/users")
    await expect(page.locator("tbody tr")).to_have_count(4)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    wrap = await page.locator(".bb-table-wrap").bounding_box()
    assert wrap["x"] + wrap["width"] <= PHONE["width"]
    await page.screenshot(path="/tmp/console-admin-phone.png", full_page=True)
    assert w.problems == [], w.problems
    await page.context.close()
