"""A whole conversation through the Alipay channel, as a citizen lives it: signed notifications
in, every reply out by custom.send (an RQ job, a real worker) to the local stand-in, which checks
each request's signature with the app's public key. The bot answers, the citizen picks numbered
options by typing digits, asks for a person, an agent (a real staff account, on the desk the
app built) answers, sends a picture (an image-text message whose link this server serves) and
closes, the citizen rates 1-5 — and every stored message reaches the citizen exactly once,
however many processes get it from the bus."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from adapters.alipay import AlipayAdapter
from core import jobs
from core.app import create_app
from core.appkeys import HUB
from core.db.schema import ratings
from core.dialog.models import Outbound, QueueStatus
from core.kb.seed import load_seed_if_empty
from core.kb.store import KbStore
from core.staff import StaffStore
from tests.support import always_open_units

from .conftest import (
    APP_ID, FORM, PATH, PNG, app_config, message_xml, notification, run_worker, with_alipay,
)

CITIZEN = "2088102122524333"
USER = f"{APP_ID}:{CITIZEN}"


class Phone:
    """The citizen's Alipay: posts signed notifications, reads what custom.send delivered."""

    def __init__(self, client, keys, standin, rq_redis, queue_name) -> None:
        self.client, self.keys, self.standin = client, keys, standin
        self.hub = client.app[HUB]
        self.queue = jobs.queue(queue_name, rq_redis)
        self.rq = rq_redis
        self.seen = 0
        self.n = 0

    async def say(self, text: str | None = None, **kw) -> None:
        self.n += 1
        kw.setdefault("msg_id", f"{time.time_ns()}{self.n}")
        body = notification(self.keys, message_xml(CITIZEN, text, **kw))
        resp = await self.client.post(PATH, data=body, headers=FORM)
        assert resp.status == 200, await resp.text()
        assert "<MsgType><![CDATA[ack]]></MsgType>" in await resp.text()

    async def stored(self) -> list[Outbound]:
        return (await self.hub.history("alipay", USER))[1]

    async def received(self) -> list[str | dict[str, str]]:
        """Wait until every stored reply is queued or sent, run the worker, return what
        reached the phone since the last call (texts, and pictures as their article)."""
        prefix = self.hub.settings.redis.prefix
        deadline = time.monotonic() + 15
        while True:
            want = {m.message_id for m in await self.stored() if m.sender != "citizen"}
            queued = {p["message_id"] for job in self.queue.get_jobs()
                      for p in job.args[0]["parts"]}
            done = {w for w in want if await self.hub.redis.keys(f"{prefix}alipay:done:{w}*")}
            if want <= queued | done:
                break
            assert time.monotonic() < deadline, f"not queued: {want - queued - done}"
            await asyncio.sleep(0.05)
        run_worker(self.queue, self.rq)
        got = self.standin.standin.received(CITIZEN)
        new, self.seen = got[self.seen:], len(got)
        return new


@pytest.fixture
async def phone(aiohttp_client, settings, engine, redis, rq_redis, queue_name, keys, standin,
                tmp_path):
    await load_seed_if_empty(KbStore(engine), settings.kb_seed_dir)
    cfg = with_alipay(settings, app_config(keys, standin.gateway, queue=queue_name,
                                           retry_intervals=[0]))
    cfg = cfg.model_copy(update={"handoff": cfg.handoff.model_copy(
        update={"units_file": always_open_units(tmp_path)})})
    client = await aiohttp_client(create_app(cfg, adapters={"alipay": AlipayAdapter}))
    # the worker makes pictures' links from server.public_url: here, this very server
    public = cfg.server.model_copy(update={"public_url": str(client.make_url("")).rstrip("/")})
    client.app[HUB].adapters["alipay"].job_settings = cfg.model_copy(
        update={"server": public}).model_dump(mode="json")
    return Phone(client, keys, standin, rq_redis, queue_name)


async def test_a_conversation_with_the_bot_a_person_and_a_rating(phone, engine):
    hub = phone.hub
    await phone.say(msg_type="event", event="follow", text=None, msg_id=None)
    [greeting] = await phone.received()
    assert "小申" in greeting

    # the bot answers from the KB, with links and its 已解决 / 未解决 as a numbered menu
    await phone.say("无犯罪记录证明怎么开？")
    [answer] = await phone.received()
    assert "无犯罪记录" in answer and "http" in answer
    assert "这个回答解决您的问题了吗？" in answer
    assert answer.endswith("1. 已解决\n2. 未解决\n（回复 1、2 选择）")

    # "2" picks 未解决: the core gets the quick reply, not the digit
    await phone.say("2")
    citizen_pick = [m for m in await phone.stored() if m.sender == "citizen"][-1]
    assert citizen_pick.text == "未解决"
    await phone.received()

    # a person: routed to the police, waiting
    await phone.say("转人工")
    waiting = await phone.received()
    assert any("排队" in t or "等待" in t or "接入" in t for t in waiting), waiting
    staff = StaffStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    agent = await staff.add_user(f"zhang{secrets.token_hex(2)}", "correct horse battery 42",
                                 roles=["agent"], units=["police"], display_name="张警官")
    await hub.desk.heartbeat(agent)
    # The message is handled past Alipay's ack, so the handoff may join the police's line
    # after its "waiting" reply went out (seen under load): it goes to the agent then.
    deadline = time.monotonic() + 15
    while not (mine := (await hub.desk.board(agent))["mine"]):
        assert time.monotonic() < deadline, "the waiting citizen never reached the online agent"
        await asyncio.sleep(0.05)
    [handoff] = mine
    assigned = await phone.received()
    assert any("张警官" in t for t in assigned), assigned

    await hub.desk.send(agent, handoff["id"], "您好，请问您是本市户籍吗？")
    assert await phone.received() == ["张警官：您好，请问您是本市户籍吗？"]
    # a digit typed to a person is a digit: the agent's message cleared the old menu
    await phone.say("1")
    assert [m.text for m in await phone.stored()][-1] == "1"
    await phone.say("是的，本市户籍")
    await hub.desk.send(agent, handoff["id"], "请携带身份证到户籍派出所申请即可。")
    assert await phone.received() == ["张警官：请携带身份证到户籍派出所申请即可。"]

    # the agent sends a picture: it arrives as one, and its link serves it from this server
    conversation_id = (await phone.stored())[0].conversation_id
    meta = await hub.attachments.save(conversation_id, "agent", agent.id, PNG, name="样例.png")
    await hub.desk.send(agent, handoff["id"], "", attachments=[meta.to_attachment()])
    [picture] = await phone.received()
    assert (picture["title"], picture["desc"]) == ("图片", "张警官发来的图片")
    resp = await phone.client.get(picture["url"].removeprefix(str(phone.client.make_url(""))
                                                               .rstrip("/")))
    assert resp.status == 200 and await resp.read() == PNG

    # the agent closes; the rating request says 回复1-5, and "5" then "1" answer it
    await hub.desk.close(agent, handoff["id"], "resolved")
    ended, rating = await phone.received()
    assert "人工服务已结束" in ended
    assert "5 非常满意" in rating and rating.endswith("（回复1-5评价）")
    await phone.say("5")
    [level] = await phone.received()
    assert "非常满意" in level and level.endswith("1. 已解决\n2. 未解决\n（回复 1、2 选择）")
    await phone.say("1")
    [thanks] = await phone.received()
    assert "感谢" in thanks
    async with engine.connect() as conn:
        row = (await conn.execute(select(ratings).where(
            ratings.c.segment == "agent", ratings.c.target == handoff["id"]))).mappings().one()
    assert (row["level"], row["resolved"], row["channel"]) == (5, True, "alipay")

    # every stored reply reached the phone exactly once, in order, all signed by the app
    replies = [m for m in await phone.stored() if m.sender != "citizen"]
    adapter = hub.adapters["alipay"]
    assert phone.standin.standin.texts(CITIZEN) == [t for m in replies if (t := adapter.render(m))]
    assert len(phone.standin.standin.articles(CITIZEN)) == 1
    assert phone.standin.standin.bad_signatures == 0 and phone.standin.standin.errors == []
    assert {m["chat"] for m in phone.standin.standin.messages} == {"1"}


async def test_push_in_two_processes_sends_each_message_once(phone):
    await phone.say("居住证签注怎么办？")
    [first] = await phone.received()
    stored = await phone.stored()
    # the bus already called push here; two more "processes" get the same messages
    other = AlipayAdapter(phone.hub, phone.hub.adapters["alipay"].config)  # shares hub.rq
    for adapter in (phone.hub.adapters["alipay"], other):
        await adapter.push(USER, stored)
        await adapter.push(USER, stored)
    assert phone.queue.count == 0

    # a fresh message pushed by two processes at once: one job between them
    news = Outbound(conversation_id=stored[0].conversation_id, message_id="m-pushed-twice",
                    seq=stored[-1].seq + 1, sender="agent", action="agent", text="您好",
                    sender_name="李")
    status = Outbound(conversation_id=stored[0].conversation_id, seq=0, sender="system",
                      action="system", text="您前面还有2位",
                      queue=QueueStatus(state="waiting", position=3))
    await asyncio.gather(phone.hub.adapters["alipay"].push(USER, [status, news]),
                         other.push(USER, [status, news]))
    assert phone.queue.count == 1
    run_worker(phone.queue, phone.rq)
    assert phone.standin.standin.texts(CITIZEN) == [first, "李：您好"]
