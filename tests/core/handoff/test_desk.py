"""The agent's side of human help (core.handoff.desk) on real SQL and Redis: which question 纳入知识库
files with an answer, and what acting on a conversation that has ended says."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db.schema import kb_candidates
from core.errors import Conflict, Forbidden, ValidationFailed
from tests.core.handoff.conftest import citizen
from tests.core.handoff.test_service import ask_for_person, served

PARCEL = "我的快递一直没送到怎么办？"  # no matter the bot knows: 转人工 offers the department menu


async def menu_then_tap(hd, user: str, unit: str) -> None:
    """转人工, then the department ``unit`` tapped in the menu (its label is what is stored)."""
    menu = (await hd.say(user, "转人工"))[-1].quick_replies
    [pick] = [q for q in menu if q.payload == f"handoff:unit:{unit}"]
    replies = await hd.say(user, pick.label, kind="quick_reply", payload=pick.payload)
    assert replies[-1].queue.state == "waiting"


async def candidate_question(engine, candidate: int) -> str:
    async with engine.connect() as conn:
        return (await conn.execute(select(kb_candidates.c.question)
                                   .where(kb_candidates.c.id == candidate))).scalar_one()


async def test_the_kb_candidate_gets_the_citizens_question_not_how_they_reached_a_person(
        hd, engine):
    user = citizen()
    await hd.say(user, PARCEL)
    await menu_then_tap(hd, user, "market")  # 转人工, then 市市场监管局 from the menu
    agent = await hd.agent("m", ["market"])
    await hd.desk.heartbeat(agent)
    hid = (await hd.desk.board(agent))["mine"][0]["id"]
    await hd.say(user, "在吗？")
    await hd.say(user, "2")  # a stray menu number
    answer = await hd.desk.send(agent, hid, "可以向寄件地的邮政管理部门申诉。")
    cid = await hd.desk.propose(agent, hid, answer.message_id)
    assert await candidate_question(engine, cid) == PARCEL

    # a real follow-up is the question of the answers after it
    await hd.say(user, "那申诉要准备什么材料？")
    await hd.say(user, "谢谢！")
    answer = await hd.desk.send(agent, hid, "快递单号和沟通记录。")
    cid = await hd.desk.propose(agent, hid, answer.message_id)
    assert await candidate_question(engine, cid) == "那申诉要准备什么材料？"

    # the agent's own wording wins
    answer = await hd.desk.send(agent, hid, "申诉可在国家邮政局网站提交。")
    cid = await hd.desk.propose(agent, hid, answer.message_id, "快递丢失如何申诉？")
    assert await candidate_question(engine, cid) == "快递丢失如何申诉？"


async def test_a_request_for_a_person_in_any_words_is_not_the_question(hd, engine):
    # no pattern knows this wording; 小申 understood it and handed off, and that is what counts
    user = citizen()
    await hd.say(user, PARCEL)
    menu = (await hd.say(user, "機器人別回了，叫人來"))[-1].quick_replies
    [pick] = [q for q in menu if q.payload == "handoff:unit:market"]
    await hd.say(user, pick.label, kind="quick_reply", payload=pick.payload)
    agent = await hd.agent("m", ["market"])
    await hd.desk.heartbeat(agent)
    hid = (await hd.desk.board(agent))["mine"][0]["id"]
    answer = await hd.desk.send(agent, hid, "可以向寄件地的邮政管理部门申诉。")
    cid = await hd.desk.propose(agent, hid, answer.message_id)
    assert await candidate_question(engine, cid) == PARCEL


async def test_with_nothing_but_requests_for_a_person_the_agent_must_write_the_question(hd):
    user = citizen()
    await hd.say(user, "我要转人工")
    await menu_then_tap(hd, user, "market")
    agent = await hd.agent("m", ["market"])
    await hd.desk.heartbeat(agent)
    hid = (await hd.desk.board(agent))["mine"][0]["id"]
    answer = await hd.desk.send(agent, hid, "您好，请问有什么可以帮您？")
    with pytest.raises(ValidationFailed, match="请填写这条答复对应的问题"):
        await hd.desk.propose(agent, hid, answer.message_id)


async def test_acting_on_an_ended_conversation_says_it_has_ended(hd):
    """A second tab closes (or dispatches) what the first already ended: the holder is told the
    conversation has ended, as a supervisor is, not that they may not do it."""
    user = citizen()
    agent, hid = await served(hd, user, "p")
    await hd.desk.close(agent, hid, "resolved")
    for act in (hd.desk.close(agent, hid, "resolved"), hd.desk.transfer(agent, hid, "tax"),
                hd.desk.dispatch(agent, hid, summary="无犯罪记录证明")):
        with pytest.raises(Conflict, match="这个会话已经结束"):
            await act
    # on an open conversation someone else holds, it is still a matter of rights
    await hd.desk.heartbeat(agent, "away")
    colleague = await hd.agent("q", ["police"])
    await hd.desk.heartbeat(colleague)
    await ask_for_person(hd, citizen())
    [theirs] = [h["id"] for h in (await hd.desk.board(colleague))["mine"]]
    with pytest.raises(Forbidden):
        await hd.desk.close(agent, theirs, "resolved")
