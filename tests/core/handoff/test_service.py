"""Human help end to end on real SQL and Redis: routing, the line, caps, SLA, overflow, 留言,
cancel, rebuild after Redis loses its data, and ratings of the agent's service."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db.schema import conversations, handoffs, ratings
from core.dialog.models import Inbound
from core.errors import Conflict, Forbidden
from tests.core.handoff.conftest import MONDAY_10, SATURDAY_10, citizen

NO_CRIME = "无犯罪记录证明怎么开？"  # M06, police only


async def ask_for_person(hd, user: str, question: str = NO_CRIME):
    await hd.say(user, question)
    return await hd.say(user, "转人工")


async def served(hd, user: str, agent_name: str, units: tuple[str, ...] = ("police",)):
    """An agent of ``units``, online, holding ``user``'s request for a person (NO_CRIME, then
    转人工): (the agent, the handoff id)."""
    agent = await hd.agent(agent_name, list(units))
    await hd.desk.heartbeat(agent)
    await ask_for_person(hd, user)
    return agent, (await hd.desk.board(agent))["mine"][0]["id"]


async def state_of(engine, user: str) -> tuple[str, str | None, str | None]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(handoffs.c.state, handoffs.c.unit, handoffs.c.agent)
                                  .where(handoffs.c.channel_user == user)
                                  .order_by(handoffs.c.requested_at.desc()).limit(1))).first()
    return tuple(row) if row else (None, None, None)


async def test_request_joins_the_units_line_with_position_and_wait(hd, engine):
    first, second = citizen(), citizen()
    replies = await ask_for_person(hd, first)
    # nobody ahead is said the way the widget's banner says it
    assert "市公安局" in replies[-1].text and "下一位就是您" in replies[-1].text
    assert "前面还有0位" not in replies[-1].text
    assert replies[-1].queue.state == "waiting" and replies[-1].queue.position == 1
    assert any(q.payload == "handoff:cancel" for q in replies[-1].quick_replies)
    replies = await ask_for_person(hd, second)
    assert replies[-1].queue.position == 2 and "前面还有1位" in replies[-1].text
    assert await state_of(engine, second) == ("waiting", "police", None)
    # the bot is quiet while the citizen waits: the message is kept for the agent
    assert await hd.say(second, "请问还要等多久") == []
    assert hd.of_type("citizen_message")[-1]["message"]["text"] == "请问还要等多久"


async def test_an_online_agent_gets_the_oldest_citizen_and_both_are_told(hd, engine):
    user = citizen()
    await ask_for_person(hd, user)
    agent = await hd.agent("zhang", ["police"], name="张警官")
    await hd.desk.heartbeat(agent)
    assert await state_of(engine, user) == ("assigned", "police", agent.id)
    told = [o for u, o in hd.pushed if u == user and o.queue and o.queue.state == "assigned"]
    assert told and "张警官" in told[-1].text and told[-1].seq > 0
    assert hd.of_type("assigned")[-1]["agent"] == agent.id
    async with engine.connect() as conn:
        status = (await conn.execute(select(conversations.c.status).where(
            conversations.c.channel_user == user))).scalar()
    assert status == "agent"


async def test_caps_hold_with_two_agents_and_closing_frees_a_place(hd, engine):
    a = await hd.agent("a", ["police"])
    b = await hd.agent("b", ["police"])
    await hd.desk.heartbeat(a, cap=1)
    await hd.desk.heartbeat(b, cap=1)
    users = [citizen() for _ in range(3)]
    for u in users:
        await ask_for_person(hd, u)
    states = [await state_of(engine, u) for u in users]
    assert [s[0] for s in states] == ["assigned", "assigned", "waiting"]
    assert {states[0][2], states[1][2]} == {a.id, b.id}  # one each: least loaded first
    holder = next(x for x in (a, b) if x.id == states[0][2])
    h = (await hd.desk.board(holder))["mine"][0]
    await hd.desk.close(holder, h["id"], "resolved")
    assert await state_of(engine, users[2]) == ("assigned", "police", holder.id)


async def test_sla_breach_is_detected_once_and_shown(hd, engine):
    user = citizen()
    agent = await hd.agent("slow", ["police"])
    await hd.desk.heartbeat(agent)
    await ask_for_person(hd, user)
    hd.clock.advance(59)
    await hd.service.sweep()
    assert hd.of_type("sla_breach") == []
    hd.clock.advance(2)
    await hd.desk.heartbeat(agent)  # still online, just slow to answer
    await hd.service.sweep()
    await hd.service.sweep()
    breaches = hd.of_type("sla_breach")
    assert len(breaches) == 1 and breaches[0]["unit"] == "police"
    assert breaches[0]["agent"] == agent.id and breaches[0]["late_s"] >= 1
    board = await hd.desk.board(agent)
    assert [b["channel_user"] for b in board["breaches"]] == [user]


async def test_first_reply_within_the_sla_stops_the_clock(hd, engine):
    user = citizen()
    agent, hid = await served(hd, user, "quick")
    hd.clock.advance(20)
    out = await hd.desk.send(agent, hid, "您好，请问您是本人办理吗？")
    assert out.sender == "agent" and out.sender_name == "quick"
    hd.clock.advance(120)
    await hd.desk.heartbeat(agent)
    await hd.service.sweep()
    assert hd.of_type("sla_breach") == []
    async with engine.connect() as conn:
        row = (await conn.execute(select(handoffs).where(handoffs.c.id == hid))).mappings().one()
    assert row["first_response_at"] is not None and not row["sla_breached"]


async def test_the_sla_is_timed_from_the_request_as_the_figures_time_it(hd, engine):
    """50 s in the line, then assigned and not answered: the figures count the first
    response from the request, so the alert comes 60 s after the request, not 60 s after the
    assignment."""
    user = citizen()
    await ask_for_person(hd, user)  # nobody online yet
    hd.clock.advance(50)
    await hd.service.sweep()
    agent = await hd.agent("late", ["police"])
    await hd.desk.heartbeat(agent)
    assert await state_of(engine, user) == ("assigned", "police", agent.id)
    hd.clock.advance(9)  # 59 s since the request
    await hd.desk.heartbeat(agent)
    await hd.service.sweep()
    assert hd.of_type("sla_breach") == []
    hd.clock.advance(2)  # 61 s since the request, 11 s since the assignment
    await hd.desk.heartbeat(agent)
    await hd.service.sweep()
    [breach] = hd.of_type("sla_breach")
    assert (breach["state"], breach["agent"], breach["late_s"]) == ("assigned", agent.id, 1)
    assert [b["channel_user"] for b in (await hd.desk.board(agent))["breaches"]] == [user]
    hd.clock.advance(60)  # the agent's own 60 s pass too: still one alert
    await hd.desk.heartbeat(agent)
    await hd.service.sweep()
    assert len(hd.of_type("sla_breach")) == 1


async def test_a_first_reply_past_the_sla_between_two_sweeps_is_a_breach(hd, engine):
    user = citizen()
    agent, hid = await served(hd, user, "slow")
    hd.clock.advance(59)
    await hd.desk.heartbeat(agent)
    await hd.service.sweep()
    hd.clock.advance(1.5)  # no sweep before the reply
    await hd.desk.send(agent, hid, "您好，久等了。")
    assert [b["handoff"] for b in hd.of_type("sla_breach")] == [hid]
    async with engine.connect() as conn:
        row = (await conn.execute(select(handoffs).where(handoffs.c.id == hid))).mappings().one()
    assert (row["first_response_at"] - row["requested_at"]).total_seconds() > 60
    assert row["sla_breached"]


async def test_a_claimed_message_left_is_not_timed_against_the_live_sla(hd, engine):
    hd.clock.t = SATURDAY_10
    user = citizen()
    await ask_for_person(hd, user)
    assert (await state_of(engine, user))[0] == "message"
    hd.clock.t = MONDAY_10 + 7 * 86400
    agent = await hd.agent("mon", ["police"])
    hid = (await hd.desk.board(agent))["messages"][0]["id"]
    await hd.desk.claim(agent, hid)
    await hd.service.sweep()
    await hd.desk.send(agent, hid, "您好，已看到您的留言。")
    assert hd.of_type("sla_breach") == []


async def test_a_citizen_left_waiting_too_long_overflows(hd, engine):
    user = citizen()
    await ask_for_person(hd, user)  # police: nobody online
    hd.clock.advance(hd.service.units["police"].overflow_after_s + 1)
    await hd.service.sweep()
    assert await state_of(engine, user) == ("waiting", "hotline-12345", None)
    told = [o for u, o in hd.pushed if u == user and o.seq > 0][-1]
    assert "12345" in told.text and told.queue.unit == "hotline-12345"


async def test_cancel_leaves_the_line_and_the_bot_answers_again(hd, engine):
    user = citizen()
    await ask_for_person(hd, user)
    replies = await hd.say(user, "", kind="quick_reply", payload="handoff:cancel")
    assert replies[-1].queue.state == "cancelled"
    assert await state_of(engine, user) == ("cancelled", "police", None)
    agent = await hd.agent("late", ["police"])
    await hd.desk.heartbeat(agent)
    assert (await hd.desk.board(agent))["mine"] == []  # nobody was assigned a gone citizen
    again = await hd.say(user, NO_CRIME)
    assert again and again[-1].sender == "bot"


async def test_outside_hours_the_citizen_leaves_a_message_answered_next_working_day(hd, engine):
    hd.clock.t = SATURDAY_10
    user = citizen()
    replies = await ask_for_person(hd, user)
    assert replies[-1].queue.state == "message"
    assert "服务时间" in replies[-1].text and "留言" in replies[-1].text
    await hd.say(user, "我想问无犯罪记录证明能不能代办")
    assert await state_of(engine, user) == ("message", "police", None)
    hd.clock.t += 2 * 86400  # Monday
    agent = await hd.agent("monday", ["police"])
    await hd.desk.heartbeat(agent)
    board = await hd.desk.board(agent)
    assert board["mine"] == [] and len(board["messages"]) == 1
    h = await hd.desk.claim(agent, board["messages"][0]["id"])
    with pytest.raises(Conflict):
        await hd.desk.claim(agent, h.id)
    await hd.desk.send(agent, h.id, "可以代办，需要携带委托书。")
    got = [o.text for u, o in hd.pushed if u == user and o.sender == "agent"]
    assert got == ["可以代办，需要携带委托书。"]


async def test_a_message_left_is_acknowledged_once_not_line_by_line(hd, engine):
    hd.clock.t = SATURDAY_10
    user = citizen()
    await ask_for_person(hd, user)
    conv = await _conv(engine, user)
    status = await hd.service.live_status(conv)
    assert status.queue.state == "message" and "请直接输入您的留言内容" in status.text

    # the first line is acknowledged, with when the unit answers (Monday 9:00)
    replies = await hd.say(user, "我想问无犯罪记录证明能不能代办")
    assert len(replies) == 1 and replies[0].sender == "bot"
    assert "您的留言已提交" in replies[0].text and "市公安局" in replies[0].text
    assert "11月30日（周一）9:00" in replies[0].text and "继续输入" in replies[0].text
    # later lines typed in a row go to the 留言 without an answer each
    assert await hd.say(user, "代办人需要带什么？") == []
    assert await hd.say(user, "谢谢") == []
    # after a quiet spell, a short note that the addition arrived (not the whole text again)
    hd.clock.advance(31 * 60)
    replies = await hd.say(user, "补充：是给单位开的")
    assert len(replies) == 1 and "已收到您的补充" in replies[0].text
    assert "您的留言已提交" not in replies[0].text
    assert await hd.say(user, "还有一个问题") == []

    lines = [e["message"]["text"] for e in hd.of_type("citizen_message")
             if e["conversation"] == conv]
    assert lines == ["我想问无犯罪记录证明能不能代办", "代办人需要带什么？", "谢谢",
                     "补充：是给单位开的", "还有一个问题"]
    assert await state_of(engine, user) == ("message", "police", None)
    status = await hd.service.live_status(conv)  # what a reconnecting channel is told
    assert status.queue.state == "message" and "您的留言已提交" in status.text

    # 取消留言 still cancels; a new 留言 is acknowledged afresh
    replies = await hd.say(user, "取消留言")
    assert replies[-1].queue.state == "cancelled"
    await ask_for_person(hd, user)
    replies = await hd.say(user, "重新留言：证明能代办吗")
    assert "您的留言已提交" in replies[0].text


async def test_a_stale_cancel_while_an_agent_serves_is_answered_not_swallowed(hd, engine):
    user = citizen()
    await ask_for_person(hd, user)
    agent = await hd.agent("zhao", ["police"], name="赵警官")
    await hd.desk.heartbeat(agent)
    assert await state_of(engine, user) == ("assigned", "police", agent.id)
    conv = await _conv(engine, user)

    # the 取消排队 button of the queue message, tapped after the agent took over
    replies = await hd.say(user, "取消排队", kind="quick_reply", payload="handoff:cancel")
    assert len(replies) == 1 and "赵警官已在为您服务" in replies[0].text
    assert "告诉工作人员" in replies[0].text and replies[0].queue.state == "assigned"
    assert await state_of(engine, user) == ("assigned", "police", agent.id)
    # the agent still sees what the citizen did (they may want to stop)
    assert hd.of_type("citizen_message")[-1]["message"]["text"] == "取消排队"
    assert hd.of_type("citizen_message")[-1]["agent"] == agent.id
    # typed on a text channel: the same answer
    replies = await hd.say(user, "取消排队。")
    assert len(replies) == 1 and "已在为您服务" in replies[0].text
    # a bare "取消" may answer the agent's question: it goes to the agent only
    assert await hd.say(user, "取消") == []
    assert hd.of_type("citizen_message")[-1]["message"]["text"] == "取消"
    assert await state_of(engine, user) == ("assigned", "police", agent.id)

    # a transfer's message offers 取消排队 too: stale as well once the new unit's agent serves
    hid = (await hd.desk.board(agent))["mine"][0]["id"]
    hd.clock.advance(60)
    await hd.desk.transfer(agent, hid, "tax")
    tax = await hd.agent("qian", ["tax"], name="钱科员")
    await hd.desk.heartbeat(tax)
    assert await state_of(engine, user) == ("assigned", "tax", tax.id)
    replies = await hd.say(user, "取消排队", kind="quick_reply", payload="handoff:cancel")
    assert "钱科员已在为您服务" in replies[0].text and "市税务局" in replies[0].text
    assert await state_of(engine, user) == ("assigned", "tax", tax.id)
    assert (await hd.service.live_status(conv)).queue.state == "assigned"


async def test_districts_are_asked_and_a_numbered_reply_works(hd, engine):
    user = citizen()
    await hd.say(user, "食品经营许可证怎么申请")  # M22: market + districts
    replies = await hd.say(user, "转人工")
    labels = [q.label for q in replies[-1].quick_replies]
    assert "浦东新区" in labels and len(labels) == 17
    pick = labels.index("徐汇区") + 1
    replies = await hd.say(user, str(pick))  # as typed on a text-only channel
    assert replies[-1].queue.state == "waiting"
    assert await state_of(engine, user) == ("waiting", "district-310104", None)


async def test_unknown_matter_offers_departments(hd, engine):
    user = citizen()
    replies = await hd.say(user, "我要转人工")
    payloads = [q.payload for q in replies[-1].quick_replies]
    assert "handoff:unit:tax" in payloads and "handoff:unit:bigdata" in payloads
    await hd.say(user, "", kind="quick_reply", payload="handoff:unit:tax")
    assert await state_of(engine, user) == ("waiting", "tax", None)


async def test_a_department_is_taken_only_from_the_menu_offered(hd, engine):
    """A crafted quick reply cannot skip routing: with no menu offered, or for a unit the menu
    did not offer, it is not understood and the bot reads its label as any other line."""
    user = citizen()
    replies = await hd.say(user, "我要投诉临港", kind="quick_reply",
                           payload="handoff:unit:lingang")
    assert await state_of(engine, user) == (None, None, None)
    assert not any("已为您接入" in r.text for r in replies)

    menu = (await hd.say(user, "我要转人工"))[-1].quick_replies
    offered = [q.payload.removeprefix("handoff:unit:") for q in menu]
    assert "lingang" not in offered and "police" in offered
    await hd.say(user, "我要投诉临港", kind="quick_reply", payload="handoff:unit:lingang")
    assert await state_of(engine, user) == (None, None, None)
    # the menu still stands, even after the bot answered something in between
    await hd.say(user, "查询一下")
    replies = await hd.say(user, "市公安局", kind="quick_reply", payload="handoff:unit:police")
    assert replies[-1].queue.state == "waiting"
    assert await state_of(engine, user) == ("waiting", "police", None)


async def test_agent_cannot_touch_another_units_conversation(hd, engine):
    user = citizen()
    await ask_for_person(hd, user)
    police = await hd.agent("p", ["police"])
    await hd.desk.heartbeat(police)
    hid = (await hd.desk.board(police))["mine"][0]["id"]
    tax = await hd.agent("t", ["tax"], roles=("agent", "supervisor"))
    for action in (hd.desk.get(tax, hid), hd.desk.transcript(tax, hid),
                   hd.desk.send(tax, hid, "hi"), hd.desk.close(tax, hid, "resolved"),
                   hd.desk.transfer(tax, hid, "tax"), hd.desk.claim(tax, hid)):
        with pytest.raises(Forbidden):
            await action
    board = await hd.desk.board(tax)
    assert all(not board[k] for k in ("mine", "waiting", "messages", "breaches"))


async def test_transfer_moves_to_the_other_units_line_with_a_note(hd, engine):
    user = citizen()
    await ask_for_person(hd, user)
    police = await hd.agent("p", ["police"])
    await hd.desk.heartbeat(police)
    hid = (await hd.desk.board(police))["mine"][0]["id"]
    new = await hd.desk.transfer(police, hid, "tax", "群众问的是个税证明")
    assert new.unit == "tax" and new.previous_id == hid and new.note == "群众问的是个税证明"
    assert (await hd.desk.board(police))["mine"] == []
    tax = await hd.agent("t", ["tax"])
    await hd.desk.heartbeat(tax)
    assert (await hd.desk.board(tax))["mine"][0]["id"] == new.id


async def test_no_transfer_to_a_closed_unit_from_a_channel_that_cannot_take_the_answer(hd):
    """At 12:00 on a working day the district offices are at lunch: a transfer there becomes a
    留言, answered later on the citizen's channel; a kiosk's session is gone by then, so the
    agent is told instead (docs/adapters.md, answers_later)."""
    hd.clock.t = MONDAY_10 + 2 * 3600
    hd.service.answers_later = lambda channel: channel != "kiosk"
    police = await hd.agent("p", ["police"])
    await hd.desk.heartbeat(police)
    for channel in ("kiosk", "web"):
        user = citizen()
        await hd.dialog.handle(Inbound(channel=channel, channel_user=user, text=NO_CRIME))
        await hd.dialog.handle(Inbound(channel=channel, channel_user=user, text="转人工"))
        hid = next(h["id"] for h in (await hd.desk.board(police))["mine"]
                   if h["channel_user"] == user)
        if channel == "kiosk":
            with pytest.raises(Conflict, match="自助终端"):
                await hd.desk.transfer(police, hid, "district-310115", "浦东的事")
            assert (await hd.desk.get(police, hid)).state == "assigned"  # still being served
        else:
            new = await hd.desk.transfer(police, hid, "district-310115", "浦东的事")
            assert new.state == "message"


async def test_close_asks_for_a_rating_that_text_channels_answer_with_numbers(hd, engine):
    user = citizen()
    agent, hid = await served(hd, user, "r")
    await hd.desk.send(agent, hid, "已为您查询，证明可在线开具。")
    await hd.desk.close(agent, hid, "resolved")
    request = [o for u, o in hd.pushed if u == user and o.rating][-1]
    assert request.rating.segment == "agent" and request.rating.target == hid
    assert "回复 1、2、3、4、5" in request.plain_text()
    replies = await hd.say(user, "5")
    assert "非常满意" in replies[-1].text
    await hd.say(user, "1")  # the menu now offers 1 已解决 / 2 未解决
    await hd.say(user, "态度很好，谢谢")
    async with engine.connect() as conn:
        row = (await conn.execute(select(ratings).where(ratings.c.target == hid))
               ).mappings().one()
    assert (row["segment"], row["level"], row["resolved"], row["comment"]) == \
        ("agent", 5, True, "态度很好，谢谢")
    assert (row["unit"], row["agent"]) == ("police", agent.id)
    # after the rating the bot answers again
    assert (await hd.say(user, NO_CRIME))[-1].sender == "bot"


async def test_redis_losing_the_queue_loses_nobody(hd, engine, redis):
    waiting, held = citizen(), citizen()
    agent = await hd.agent("keep", ["police"])
    await hd.desk.heartbeat(agent, cap=1)
    await ask_for_person(hd, held)
    await ask_for_person(hd, waiting)
    assert await state_of(engine, waiting) == ("waiting", "police", None)
    await redis.flushdb()  # what a restart of a Redis without persistence leaves
    assert await hd.service.queue.position(await _conv(engine, waiting)) is None
    await hd.service.sweep()  # any process's sweep notices and rebuilds from SQL
    assert await hd.service.queue.position(await _conv(engine, waiting)) == 1
    await hd.desk.heartbeat(agent, cap=1)
    await hd.service.sweep()
    # the cap still counts the conversation the agent held before the outage
    assert await state_of(engine, waiting) == ("waiting", "police", None)
    hid = (await hd.desk.board(agent))["mine"][0]["id"]
    await hd.desk.close(agent, hid, "resolved")
    assert await state_of(engine, waiting) == ("assigned", "police", agent.id)


async def _conv(engine, user: str) -> str:
    async with engine.connect() as conn:
        return (await conn.execute(select(handoffs.c.conversation_id)
                                   .where(handoffs.c.channel_user == user))).scalar()


async def test_an_assigned_citizen_nobody_answers_overflows_too(hd, engine):
    user = citizen()
    agent = await hd.agent("gone", ["police"])
    await hd.desk.heartbeat(agent)
    await ask_for_person(hd, user)
    assert await state_of(engine, user) == ("assigned", "police", agent.id)
    hd.clock.advance(hd.service.units["police"].overflow_after_s + 1)
    await hd.service.sweep()
    assert await state_of(engine, user) == ("waiting", "hotline-12345", None)
    assert (await hd.desk.board(agent))["mine"] == []  # the place under the cap is free again
    assert hd.of_type("sla_breach")  # supervisors were alerted before it came to this


async def test_a_reconnecting_channel_gets_the_current_status(hd, engine):
    first, second = citizen(), citizen()
    await ask_for_person(hd, first)
    await ask_for_person(hd, second)
    status = await hd.service.live_status(await _conv(engine, second))
    assert (status.seq, status.queue.state, status.queue.position) == (0, "waiting", 2)
    agent = await hd.agent("li", ["police"], name="李警官")
    await hd.desk.heartbeat(agent)
    status = await hd.service.live_status(await _conv(engine, first))
    assert status.queue.state == "assigned" and status.queue.agent_name == "李警官"


async def test_an_agent_gone_for_good_gives_their_citizens_back_to_the_line(hd, engine, redis):
    user = citizen()
    gone = await hd.agent("gone", ["police"], name="王警官")
    await hd.desk.heartbeat(gone)
    await ask_for_person(hd, user)
    h = (await hd.desk.board(gone))["mine"][0]
    await hd.desk.send(gone, h["id"], "您好，请问需要开具哪一年的证明？")  # answered: no overflow
    stays = await hd.agent("stays", ["police"], name="李警官")
    await hd.desk.heartbeat(stays)

    # the browser closes: a short absence (a network blip, a Redis restart) takes nothing away
    hd.clock.advance(hd.service.queue.heartbeat_ttl_s + 1)
    await hd.desk.heartbeat(stays)
    await hd.service.sweep()
    hd.clock.advance(hd.service.release_after_s / 2)
    await hd.desk.heartbeat(stays)
    await hd.service.sweep()
    assert await state_of(engine, user) == ("assigned", "police", gone.id)

    # gone for release_after_s: the citizen goes to the agent who is there, with a note
    hd.clock.advance(hd.service.release_after_s / 2 + 16)
    await hd.desk.heartbeat(stays)
    await hd.service.sweep()
    assert await state_of(engine, user) == ("assigned", "police", stays.id)
    assert (await hd.desk.board(gone))["mine"] == []
    mine = (await hd.desk.board(stays))["mine"]
    assert len(mine) == 1 and "王警官" in (mine[0].get("note") or "")
    told = [o.text for u, o in hd.pushed if u == user]
    assert any("重新排队" in t for t in told) and "李警官" in told[-1]
    moved = hd.of_type("transferred")[-1]
    assert (moved["unit"], moved["to"]) == ("police", "police")


async def test_an_online_agent_keeps_their_citizens_however_long(hd, engine):
    user = citizen()
    agent = await hd.agent("here", ["police"])
    await hd.desk.heartbeat(agent)
    await ask_for_person(hd, user)
    h = (await hd.desk.board(agent))["mine"][0]
    await hd.desk.send(agent, h["id"], "您好")
    for _ in range(4):
        hd.clock.advance(hd.service.release_after_s / 2)
        await hd.desk.heartbeat(agent)
        await hd.service.sweep()
    assert await state_of(engine, user) == ("assigned", "police", agent.id)
