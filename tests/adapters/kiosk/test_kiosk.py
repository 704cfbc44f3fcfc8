"""The kiosk's conversation over its websocket, on the real server, database and Redis:
answers with QR codes and a print view, refusals, sessions, the wipe, push."""

from __future__ import annotations

import asyncio
import io
import time

import segno
from sqlalchemy import select

import adapters.base
from adapters.kiosk.render import continue_url
from core.appkeys import HUB
from core.db.schema import conversations
from core.dialog.models import Outbound, QueueStatus

from .conftest import DEVICE, OTHER, OTHER_KEY, connect, error_frame, frame_of, messages, \
    register, silent


async def conv_status(hub, user: str) -> list[str]:
    async with hub.engine.connect() as db:
        return list((await db.execute(select(conversations.c.status).where(
            conversations.c.channel == "kiosk", conversations.c.channel_user == user))).scalars())


async def test_matter_answer_with_qr_and_print_then_resume_and_wipe(make_client):
    client = await make_client()
    hub = client.app[HUB]
    await register(client)
    ws, hello = await connect(client)
    assert hello["history"] == [] and not hello["resumed"]
    assert hello["idle_timeout_s"] == 120 and hello["idle_warning_s"] == 20
    session = hello["session"]
    user = f"{DEVICE}:{session}"

    # a matter button: the guide, with a QR code to continue on the phone and a print view
    await ws.send_json({"type": "quick_reply", "payload": "matter:M03", "label": "居住证签注"})
    mine, answer = await messages(ws, 2)
    assert mine["sender"] == "citizen" and mine["text"] == "居住证签注"
    assert answer["action"] == "answer" and "申请材料" in answer["html"]
    assert "<a" not in answer["html"] and "<img" not in answer["html"]  # no way off the kiosk
    assert answer["links"] == []
    entry = answer["entry"]
    assert entry == {"id": "M03-guide-01", "title": "【导办】居住证签注", "matter": "M03",
                     "qr": "/kiosk/qr/M03-guide-01.svg", "print": "/kiosk/print/M03-guide-01"}
    assert [o["label"] for o in answer["rating"]["options"]] == ["已解决", "未解决"]

    # the QR code is the server's SVG of the entry's page (its official source: no web channel)
    resp = await client.get(entry["qr"])
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    svg = await resp.read()
    guide = hub.knowledge.snapshot.entry("M03-guide-01")
    url = continue_url(hub.adapters["kiosk"], guide)
    assert url == guide.source_url
    buf = io.BytesIO()
    segno.make(url, error="m", micro=False).save(
        buf, kind="svg", scale=8, border=4, dark="#000", light="#fff", xmldecl=False,
        svgns=True, omitsize=True, title="二维码")
    assert svg == buf.getvalue() and svg.startswith(b"<svg")
    assert (await client.get("/kiosk/qr/nothing-here.svg")).status == 404
    # with the web channel on, the code opens the entry's public page (and 小申) instead
    hub.adapters["web"] = object()  # only its presence matters here
    try:
        assert continue_url(hub.adapters["kiosk"], guide) == f"{hub.public_url}/kb/M03-guide-01"
    finally:
        del hub.adapters["web"]

    # a popular question (FAQ) of the matter; its print view adds the matter's guide
    await ws.send_json({"type": "quick_reply", "payload": "pick:M03-faq-01",
                        "label": "居住证快到期了，提前多久可以办理签注？", "id": "tap-1"})
    _, faq = await messages(ws, 2)
    assert faq["entry"]["id"] == "M03-faq-01" and "30日" in faq["html"]
    resp = await client.get(faq["entry"]["print"])
    page = await resp.text()
    assert resp.status == 200 and "居住证快到期了" in page and "【导办】居住证签注" in page
    assert 'src="/kiosk/qr/M03-faq-01.svg"' in page and "/kiosk/static/kiosk.css" in page
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert (await client.get("/kiosk/print/M99-none")).status == 404
    css = await (await client.get("/kiosk/static/kiosk.css")).text()
    assert "@media print" in css

    # typed text, then the same client id again: refused as a duplicate, stored once
    await ws.send_json({"type": "message", "text": "那要带什么材料？", "id": "q-2"})
    mine, reply = await messages(ws, 2)
    assert reply["action"] == "answer"
    await ws.send_json({"type": "message", "text": "那要带什么材料？", "id": "q-2"})
    assert (await error_frame(ws))["code"] == "duplicate"
    _, history = await hub.history("kiosk", user)
    assert [m.text for m in history].count("那要带什么材料？") == 1

    # a reload during the session resumes it, in order; another terminal cannot
    ws2, again = await connect(client, session=session)
    assert again["resumed"] and again["session"] == session
    assert [m["seq"] for m in again["history"]] == list(range(1, 7))
    await ws2.close()
    other = await client.app[HUB].adapters["kiosk"].sessions.alive(f"{OTHER}:{session}")
    assert other is False

    # the page wipes itself (idle timeout): a new session; the old one is gone server-side
    conv_id = answer["conversation_id"]
    assert await hub.redis.exists(f"{hub.dialog.prefix}ctx:{conv_id}")
    await ws.send_json({"type": "end"})
    fresh = await frame_of(ws, "hello")
    assert fresh["session"] != session and fresh["history"] == [] and not fresh["resumed"]
    assert await conv_status(hub, user) == ["closed"]
    assert not await hub.redis.exists(f"{hub.dialog.prefix}ctx:{conv_id}")
    # nothing of it comes back: not by the old session id, not by a message to the old user
    ws3, back = await connect(client, session=session)
    assert not back["resumed"] and back["history"] == [] and back["session"] != session
    await ws3.close()
    await hub.dispatch("kiosk", user, [Outbound(conversation_id=conv_id, seq=99,
                                                action="system", text="旧消息")])
    await silent(ws)
    # the next person's question is a new conversation
    await ws.send_json({"type": "message", "text": "居住证签注在哪里办"})
    mine, _ = await messages(ws, 2)
    assert mine["conversation_id"] != conv_id and mine["seq"] == 1
    await ws.close()


async def test_refusals_are_error_frames_and_store_nothing(make_client, monkeypatch):
    monkeypatch.setattr(adapters.base, "clock", lambda: 90.0)
    client = await make_client(max_message_length=50, rate_limit_per_minute=3)
    hub = client.app[HUB]
    await register(client)
    ws, hello = await connect(client)
    assert hello["max_length"] == 50
    user = f"{DEVICE}:{hello['session']}"
    for frame, code in [
        ("not json", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"type": "image"}', "unsupported"),
        ('{"type": "message", "text": "   "}', "empty"),
        ('{"type": "message", "text": 5}', "malformed"),
        ('{"type": "message", "text": "' + "长" * 51 + '"}', "too_long"),
        ('{"type": "message", "text": "好", "id": "bad id!"}', "malformed"),
        ('{"type": "quick_reply", "payload": "", "label": "x"}', "bad_choice"),
    ]:
        await ws.send_str(frame)
        err = await error_frame(ws)
        assert err["code"] == code, (frame, err)
        assert err["reason"]
    assert "50字以内" in (await _err(ws, '{"type": "message", "text": "' + "长" * 51 + '"}'))
    await ws.send_bytes(b"\x00")
    assert (await error_frame(ws))["code"] == "unsupported"
    assert await hub.history("kiosk", user) == (None, [])

    # the rate limit is per session, and says so
    for i in range(3):
        await ws.send_json({"type": "message", "text": f"居住证签注{i}"})
        await messages(ws, 2)
    await ws.send_json({"type": "message", "text": "再问一个"})
    err = await error_frame(ws)
    assert err["code"] == "rate_limited" and "太频繁" in err["reason"]
    # a frame too large closes the socket (1009) rather than being read
    await ws.send_str("x" * 20_000)
    msg = await ws.receive(timeout=5)
    assert msg.type.name in ("CLOSE", "CLOSED", "CLOSING")
    # the next person (a new session) is not limited by the last one
    ws2, _ = await connect(client)
    await ws2.send_json({"type": "message", "text": "居住证签注"})
    await messages(ws2, 2)
    await ws2.close()


async def _err(ws, frame: str) -> str:
    await ws.send_str(frame)
    return (await error_frame(ws))["reason"]


async def test_push_delivers_to_this_processs_sockets_and_statuses_in_place(make_client):
    client = await make_client()
    hub = client.app[HUB]
    await register(client)
    ws, hello = await connect(client)
    user = f"{DEVICE}:{hello['session']}"
    await ws.send_json({"type": "message", "text": "居住证签注"})
    mine, answer = await messages(ws, 2)
    conv = answer["conversation_id"]

    # what the bus already delivered is not shown twice; an agent's message is
    await hub.dispatch("kiosk", user, [Outbound.model_validate({
        k: v for k, v in answer.items() if k in ("conversation_id", "seq", "action", "text")})])
    await silent(ws)
    out = await hub.notifier.tell(conv, "您好，我是工作人员", sender="agent", action="agent",
                                  body={"sender_name": "王老师"})
    [pushed] = await messages(ws, 1)  # through Redis, as from another process
    assert pushed["seq"] == out.seq and pushed["sender_name"] == "王老师"

    # transient statuses (seq 0) become status frames; without a status nothing is shown
    status = QueueStatus(state="waiting", unit="police", unit_name="市公安局", position=2,
                         wait_s=120, can_cancel=True)
    await hub.notifier.status("kiosk", user, conv, status, "您前面还有1位")
    frame = await frame_of(ws, "status")
    assert frame["message"]["seq"] == 0 and frame["message"]["queue"]["position"] == 2
    await hub.dispatch("kiosk", user, [Outbound(conversation_id=conv, seq=0, action="system",
                                                text="无状态")])
    # nobody else's messages, and nothing for sessions this process does not hold
    await hub.dispatch("kiosk", f"{DEVICE}:someone-else", [Outbound(
        conversation_id=conv, seq=50, action="system", text="别人的")])
    await silent(ws)
    await ws.close()


async def test_the_server_ends_sessions_the_page_could_not(make_client):
    """The backstop: a terminal that lost power mid-conversation. Its session ends on the
    server after idle_timeout_s + server_grace_s; an untouched screen keeps its session."""
    client = await make_client(idle_timeout_s=2, idle_warning_s=1, server_grace_s=1,
                               sweep_interval_s=0.2)
    hub = client.app[HUB]
    await register(client)
    ws, hello = await connect(client)
    idle_ws, idle_hello = await connect(client)
    user = f"{DEVICE}:{hello['session']}"
    await ws.send_json({"type": "message", "text": "居住证签注"})
    await messages(ws, 2)
    started = time.monotonic()
    assert (await frame_of(ws, "ended", timeout=10))["type"] == "ended"
    fresh = await frame_of(ws, "hello")
    assert time.monotonic() - started >= 2
    assert fresh["session"] != hello["session"] and fresh["history"] == []
    assert await conv_status(hub, user) == ["closed"]
    # the untouched screen was not churned through sessions
    await asyncio.sleep(0.5)
    await silent(idle_ws)
    assert await hub.adapters["kiosk"].sessions.alive(f"{DEVICE}:{idle_hello['session']}")
    await ws.close()
    await idle_ws.close()


async def test_two_terminals_never_share_a_session(make_client):
    client = await make_client()
    await register(client)
    ws, hello = await connect(client)
    await ws.send_json({"type": "message", "text": "居住证签注"})
    await messages(ws, 2)
    # the second terminal registers in its own browser (cookie jar)
    client.session.cookie_jar.clear()
    await register(client, OTHER, OTHER_KEY)
    ws2, other = await connect(client, session=hello["session"])
    assert not other["resumed"] and other["history"] == []
    await ws.close()
    await ws2.close()


async def test_the_page_carries_the_configured_limits(make_client):
    client = await make_client(idle_timeout_s=45, idle_warning_s=15, max_message_length=120)
    await register(client)
    page = await (await client.get("/kiosk", params={"device": DEVICE})).text()
    assert 'data-idle="45"' in page and 'data-warning="15"' in page
    assert 'maxlength="120"' in page and "继续使用" in page and "转人工帮办" in page
    js = await client.get("/kiosk/static/kiosk.js")
    assert js.status == 200 and "wipe" in await js.text()
    ws, _ = await connect(client)
    await ws.send_json({"type": "active"})
    await silent(ws, 0.3)
    await ws.close()
