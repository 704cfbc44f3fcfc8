"""Whole conversations through the channel: the bot in the HTTP response, human help with an agent
whose messages go by the customer-service API (to the stand-in platform), a rating, the 5-second
rule, the 48-hour window, and exactly-once sending with several processes' pushes."""

from __future__ import annotations

import time

from sqlalchemy import select

from adapters.wechat import WeChatAdapter
from adapters.wechat.outbox import WINDOW_S
from console.auth import STAFF
from core import jobs
from core.appkeys import HUB
from core.dialog.models import Outbound
from core.db.schema import ratings
from core.reference import load_matters
from core.routing import department_menu

from .conftest import AMR, MP3, OGG, VOICE_NOTE, WEBM, Citizen, eventually, work

PASSWORD = "correct horse battery 42"


def jobs_queued(queue_name: str, rq_redis) -> int:  # noqa: ANN001
    return jobs.queue(queue_name, rq_redis).count


async def test_a_conversation_with_an_agent_and_a_rating(make_client, queue_name, rq_redis,
                                                         platform):
    client, cfg = await make_client(seed=True)
    hub = client.app[HUB]
    adapter = hub.adapters["wechat"]
    events: list[dict] = []

    async def on_event(e: dict) -> None:
        events.append(e)

    hub.events.subscribe(on_event)
    # an agent of every unit, so wherever routing sends the citizen, someone is there
    agent = await client.app[STAFF].add_user("wx-agent", PASSWORD, roles=("agent",),
                                             units=list(hub.handoff.units), display_name="王老师")
    assert await hub.desk.heartbeat(agent, "online")
    c = Citizen(client)
    user = f"oa-live:{c.openid}"
    sent = platform.platform.to  # what the platform's customer-service API accepted, by openid

    # the bot answers in the HTTP response (a passive reply); nothing goes by the API
    answer = await c.say("非上海户籍可以在上海申请认定教师资格吗？")
    assert "居住证" in answer and "回复 1、2" in answer
    menu = await c.say("转人工")
    assert "回复 1、2" in menu and "1. " in menu
    assert jobs_queued(queue_name, rq_redis) == 0

    # "1" picks the first department: queued, and the online agent is assigned (at once or by
    # the sweep); the assignment notice is not an answer to a request, so it goes by the API
    queued = await c.say("1")
    assert "线上人工帮办" in queued
    await eventually(lambda: jobs_queued(queue_name, rq_redis) == 1, what="the assignment notice")
    work(queue_name, rq_redis)
    assert [t for t in sent(c.openid) if "王老师" in t] == [sent(c.openid)[0]]
    h = next(x for x in (await hub.desk.board(agent))["mine"])

    # the agent replies: one send, even with a second process's adapter pushing the same message
    out = await hub.desk.send(agent, h["id"], "您好，请问您要咨询什么业务？")
    await eventually(lambda: jobs_queued(queue_name, rq_redis) == 1, what="the agent's send job")
    await adapter.push(user, [out])
    await WeChatAdapter(hub, adapter.config).push(user, [out])
    assert jobs_queued(queue_name, rq_redis) == 1
    work(queue_name, rq_redis)
    assert sent(c.openid)[-1] == "您好，请问您要咨询什么业务？"

    # the citizen writes to the agent: no bot answer, the workspace is told
    assert await c.say("我想问教师资格证的体检") is None
    await eventually(lambda: any(e["type"] == "citizen_message" for e in events),
                     what="the citizen's message in the workspace")

    # the agent closes: the end notice and the rating request go out together, as "回复1-5"
    await hub.desk.close(agent, h["id"], "resolved")
    await eventually(lambda: jobs_queued(queue_name, rq_redis) == 1, what="the rating request")
    work(queue_name, rq_redis)
    rating_request = sent(c.openid)[-1]
    assert "本次人工服务已结束" in rating_request and "回复1-5" in rating_request

    # "5" rates the service; the next step is asked in the response
    thanks = await c.say("5")
    assert "非常满意" in thanks and "解决" in thanks
    async with hub.engine.connect() as conn:
        row = (await conn.execute(select(ratings).where(ratings.c.target == h["id"]))
               ).mappings().one()
    assert (row["level"], row["channel"]) == (5, "wechat")

    # every message reached the platform exactly once, in order
    work(queue_name, rq_redis)
    assert len(sent(c.openid)) == 3
    _, history = await hub.history("wechat", user)
    assert [m.sender for m in history].count("agent") == 1
    assert platform.platform.token_fetches == 1  # one token, shared by every job


async def test_late_answers_go_by_the_api_once_and_mini_programs_always(
        make_client, queue_name, rq_redis, platform):
    client, _ = await make_client(reply_budget_s=0.001)
    hub = client.app[HUB]
    adapter = hub.adapters["wechat"]
    c = Citizen(client)
    resp = await c.post_xml(f"<xml><ToUserName>gh_10f6c3c3ac5a</ToUserName>"
                            f"<FromUserName>{c.openid}</FromUserName>"
                            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType>"
                            "<Event>subscribe</Event></xml>")
    assert await resp.text() == "success"  # the welcome was not ready in 1 ms
    await eventually(lambda: jobs_queued(queue_name, rq_redis) == 1, what="the late welcome")
    _, history = await hub.history("wechat", f"oa-live:{c.openid}")
    await adapter.push(f"oa-live:{c.openid}", history)  # another process's copy
    work(queue_name, rq_redis)
    assert len(platform.platform.to(c.openid)) == 1 and "小申" in platform.platform.to(c.openid)[0]

    # a Mini Program never answers in the response: its replies all go by the API
    from . import vectors as v

    mp = Citizen(client, "mp-safe", token=v.MP_TOKEN, app_id=v.MP_APPID, aes_key=v.MP_AES_KEY)
    assert await mp.say("你好") is None
    await eventually(lambda: jobs_queued(queue_name, rq_redis) == 1, what="the mini program send")
    work(queue_name, rq_redis)
    assert len(platform.platform.to(mp.openid)) == 1
    # transient status updates and the citizen's own messages are never sent
    _, history = await hub.history("wechat", f"mp-safe:{mp.openid}")
    status = history[-1].model_copy(update={"seq": 0, "message_id": "", "text": "排队中"})
    await adapter.push(f"mp-safe:{mp.openid}", [status, history[0]])
    assert jobs_queued(queue_name, rq_redis) == 0


async def test_the_agent_is_told_when_the_48_hour_window_has_closed(make_client, queue_name,
                                                                    rq_redis, platform):
    client, _ = await make_client(seed=True)
    hub = client.app[HUB]
    events: list[dict] = []

    async def on_event(e: dict) -> None:
        events.append(e)

    hub.events.subscribe(on_event)
    unit = department_menu(load_matters())[0].unit
    agent = await client.app[STAFF].add_user("wx-agent2", PASSWORD, roles=("agent",),
                                             units=[unit], display_name="李老师")
    await hub.desk.heartbeat(agent, "online")
    c = Citizen(client)
    user = f"oa-live:{c.openid}"
    await c.say("转人工")
    await c.say("1")
    await eventually(lambda: jobs_queued(queue_name, rq_redis) == 1, what="the assignment notice")
    work(queue_name, rq_redis)
    h = (await hub.desk.board(agent))["mine"][0]
    before = len(platform.platform.to(c.openid))

    # the citizen wrote last 49 hours ago: the agent's message is not sent, the agent is told
    prefix = hub.settings.redis.prefix
    await hub.redis.set(f"{prefix}wechat:last-in:{user}", int(time.time() - WINDOW_S - 3600))
    await hub.desk.send(agent, h["id"], "您还在吗？")
    closed = await eventually(lambda: [e for e in events if e["type"] == "channel_window_closed"],
                              what="the window-closed event")
    assert closed[0]["unit"] == unit and closed[0]["conversation"] == h["conversation_id"]
    assert closed[0]["channel"] == "wechat" and "48小时" in closed[0]["text"]
    assert jobs_queued(queue_name, rq_redis) == 0

    # the platform says so itself (45015) when our record and its clock disagree
    await hub.redis.set(f"{prefix}wechat:last-in:{user}", int(time.time()))
    platform.platform.failures.append(45015)
    events.clear()
    await hub.desk.send(agent, h["id"], "请问还需要帮助吗？")
    await eventually(lambda: jobs_queued(queue_name, rq_redis) == 1, what="the send job")
    work(queue_name, rq_redis)
    closed = await eventually(lambda: [e for e in events if e["type"] == "channel_window_closed"],
                              what="the platform's refusal reaching the workspace")
    assert closed[0]["unit"] == unit and closed[0]["reason"] == "window"
    assert len(platform.platform.to(c.openid)) == before


async def test_what_is_published_while_a_request_is_in_flight_is_delivered_once(
        make_client, queue_name, rq_redis, platform):
    """The race the in-flight counter exists for, step by step, with two processes' adapters."""
    client, _ = await make_client()
    hub = client.app[HUB]
    a = hub.adapters["wechat"]
    b = WeChatAdapter(hub, a.config)  # another process (sharing this one's RQ connection)
    b.outbox.rq, b.job_settings = a.outbox.rq, a.job_settings
    user = "oa-live:oRace"
    await a.outbox.seen(user, event=False)
    answer, notice = (Outbound(seq=n, message_id=f"m-{n}", sender=s, action="system", text=t)
                      for n, s, t in ((1, "bot", "答复"), (2, "system", "通知")))

    await a.outbox.begin(user)  # a request of this citizen is waiting for its answer
    for adapter in (b, a):  # the bus copies reach both processes before the answer is ready
        await adapter.push(user, [answer, notice])
    assert jobs_queued(queue_name, rq_redis) == 0
    assert await a.outbox.claim([answer], "reply") == [answer]  # it goes in the response
    parked = await a.outbox.finish(user)
    assert sorted(o.message_id for o in parked) == ["m-1", "m-2"]
    await a.outbox.send(user, parked)
    for adapter in (a, b):  # late bus copies change nothing
        await adapter.push(user, [answer, notice])
    assert jobs_queued(queue_name, rq_redis) == 1
    work(queue_name, rq_redis)
    assert platform.platform.to("oRace") == ["通知"]

    # a handler that died: its counter expires, and the citizen's next push takes what it parked
    late = Outbound(seq=3, message_id="m-3", sender="agent", action="agent", text="坐席消息")
    await a.outbox.begin(user)
    await b.push(user, [late])
    await hub.redis.delete(f"{hub.settings.redis.prefix}wechat:inflight:{user}")
    later = Outbound(seq=4, message_id="m-4", sender="agent", action="agent", text="第二条")
    await b.push(user, [later])
    work(queue_name, rq_redis)
    assert platform.platform.to("oRace") == ["通知", "坐席消息\n\n第二条"]


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


async def serving(make_client, queue_name: str, rq_redis, login: str):  # noqa: ANN001
    """An app, and an agent serving a citizen of ``oa-live`` who asked for a person: (hub, the
    agent, the citizen, the handoff, an attachment store)."""
    from core.attachments import AttachmentStore

    client, cfg = await make_client(seed=True)
    hub = client.app[HUB]
    agent = await client.app[STAFF].add_user(login, PASSWORD, roles=("agent",),
                                             units=list(hub.handoff.units), display_name="李老师")
    assert await hub.desk.heartbeat(agent, "online")
    c = Citizen(client)
    await c.say("转人工")
    await c.say("1")
    await eventually(lambda: jobs_queued(queue_name, rq_redis) == 1, what="the assignment notice")
    work(queue_name, rq_redis)
    h = next(x for x in (await hub.desk.board(agent))["mine"])
    store = AttachmentStore(hub.engine, cfg.handoff.max_image_bytes, cfg.handoff.max_voice_bytes)
    return hub, agent, c, h, store


async def agent_sends(hub, agent, h, store, queue_name: str, rq_redis,  # noqa: ANN001
                      text: str, data: bytes, name: str) -> None:
    """The agent sends ``data`` (stored as their attachment) with ``text``; the send job runs."""
    meta = await store.save(h["conversation_id"], "agent", agent.id, data, name=name)
    await hub.desk.send(agent, h["id"], text, attachments=[meta.to_attachment()])
    await eventually(lambda: jobs_queued(queue_name, rq_redis) == 1, what="the send job")
    work(queue_name, rq_redis)


async def test_an_agents_picture_reaches_the_citizen_as_an_image(make_client, queue_name,
                                                                 rq_redis, platform):
    """The agent sends a picture with a caption: the citizen's WeChat shows the caption, then the
    picture itself (uploaded as temporary media), not a "[图片]" placeholder."""
    hub, agent, c, h, store = await serving(make_client, queue_name, rq_redis, "wx-pic")
    await agent_sends(hub, agent, h, store, queue_name, rq_redis, "请看这张图，窗口在二楼", PNG,
                      "办理窗口.png")
    caption, image = platform.platform.to(c.openid)[-2:]
    assert caption == "请看这张图，窗口在二楼"  # no "[图片]" note: the picture itself follows
    media = platform.platform.uploaded(image)
    assert (media.data, media.mime) == (PNG, "image/png")
    assert platform.platform.uploads == 1


async def test_an_agents_voice_reaches_the_citizen_as_a_voice_message(make_client, queue_name,
                                                                      rq_redis, platform):
    """An AMR voice message (a format WeChat plays) arrives as a voice message the citizen can
    play, after its text, with no "[语音]" note."""
    hub, agent, c, h, store = await serving(make_client, queue_name, rq_redis, "wx-voice")
    await agent_sends(hub, agent, h, store, queue_name, rq_redis, "请听语音说明", AMR,
                      "办理须知.amr")
    caption, voice = platform.platform.to(c.openid)[-2:]
    assert caption == "请听语音说明"
    media = platform.platform.uploaded(voice)
    assert (media.kind, media.data, media.mime) == ("voice", AMR, "audio/amr")
    assert platform.platform.uploads == 1


async def test_a_voice_wechat_cannot_play_keeps_its_note(make_client, queue_name, rq_redis,
                                                         platform):
    """WebM (what browsers record) and OGG are not transcoded, and an MP3 over WeChat's 2 MB
    (within our own 2 MiB limit) is not cut: the citizen is told there is a voice message, and
    nothing is uploaded."""
    hub, agent, c, h, store = await serving(make_client, queue_name, rq_redis, "wx-webm")
    await agent_sends(hub, agent, h, store, queue_name, rq_redis, "请听", WEBM, "录音.webm")
    await agent_sends(hub, agent, h, store, queue_name, rq_redis, "", OGG, "录音.ogg")
    big = MP3 + bytes(2_050_000 - len(MP3))
    await agent_sends(hub, agent, h, store, queue_name, rq_redis, "长的", big, "长录音.mp3")
    assert platform.platform.to(c.openid)[-3:] == [f"请听\n\n{VOICE_NOTE}", VOICE_NOTE,
                                                   f"长的\n\n{VOICE_NOTE}"]
    assert platform.platform.uploads == 0
