"""Human help from a kiosk: 转人工, the queue status, the agent's messages pushed to the screen,
the rating buttons — and what the idle wipe does to a human-help segment that is still open."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import select

from adapters.kiosk.sessions import LEFT_NOTE, LEFT_TEXT
from core.appkeys import HUB
from core.db.schema import conversations, handoffs
from core.staff import StaffStore

from .conftest import DEVICE, connect, frame_of, recv, register

UNIT = "hotline-12345"  # open 7×24, so the test does not depend on the time of day


async def until(ws, check, timeout: float = 15) -> dict:
    """The first message (or status) frame's message for which ``check`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.1, deadline - time.monotonic()))
        assert frame["type"] != "error", frame
        if frame["type"] in ("message", "status") and check(frame["message"]):
            return frame["message"]


async def tap(ws, payload: str, label: str) -> None:
    await ws.send_json({"type": "quick_reply", "payload": payload, "label": label})


async def ask_for_person(ws) -> dict:
    await tap(ws, "human", "转人工帮办")
    menu = await until(ws, lambda m: any(q["payload"] == f"handoff:unit:{UNIT}"
                                         for q in m["quick_replies"]))
    label = next(q["label"] for q in menu["quick_replies"]
                 if q["payload"] == f"handoff:unit:{UNIT}")
    await tap(ws, f"handoff:unit:{UNIT}", label)
    return await until(ws, lambda m: (m.get("queue") or {}).get("state") == "waiting")


async def segment(hub, conversation_id: str) -> dict[str, Any]:
    async with hub.engine.connect() as db:
        row = (await db.execute(select(handoffs).where(
            handoffs.c.conversation_id == conversation_id)
            .order_by(handoffs.c.requested_at.desc()).limit(1))).mappings().one()
    return dict(row)


async def eventually(check, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_human_help_on_a_kiosk_and_the_wipe_ends_it_cleanly(make_client, engine):
    client = await make_client()
    hub = client.app[HUB]
    events: list[dict] = []

    async def on_event(e: dict) -> None:
        events.append(e)

    hub.events.subscribe(on_event)
    staff = StaffStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    agent = await staff.add_user("kiosk-agent", "correct horse battery 42", roles=("agent",),
                                 units=[UNIT], display_name="李敏")
    await hub.desk.heartbeat(agent)
    await register(client)
    ws, hello = await connect(client)

    # 转人工 → the department menu → 12345: queued, then an agent takes it at once
    waiting = await ask_for_person(ws)
    assert waiting["queue"]["unit"] == UNIT and waiting["queue"]["can_cancel"]
    assigned = await until(ws, lambda m: (m.get("queue") or {}).get("state") == "assigned")
    assert "李敏" in assigned["text"] and assigned["seq"] > 0
    conv = assigned["conversation_id"]
    h = await segment(hub, conv)
    assert h["state"] == "assigned" and h["agent"] == agent.id
    assert h["channel_user"] == f"{DEVICE}:{hello['session']}"

    # the agent's message is pushed to the kiosk; the citizen's reply goes to the agent
    await hub.desk.send(agent, h["id"], "您好，请问有什么可以帮您？")
    said = await until(ws, lambda m: m["sender"] == "agent")
    assert said["sender_name"] == "李敏" and said["text"] == "您好，请问有什么可以帮您？"
    await ws.send_json({"type": "message", "text": "我想问居住证的事"})
    mine = await until(ws, lambda m: m["sender"] == "citizen")
    assert mine["text"] == "我想问居住证的事"
    await eventually(lambda: any(e["type"] == "citizen_message" for e in events))

    # the agent closes: rating buttons (five levels), tapped on the screen
    await hub.desk.close(agent, h["id"], "resolved")
    rating = await until(ws, lambda m: m.get("rating") is not None)
    assert rating["rating"]["segment"] == "agent"
    assert [o["payload"] for o in rating["rating"]["options"]] == [f"rate:{n}" for n in range(1, 6)]
    await tap(ws, "rate:5", "非常满意")
    thanks = await until(ws, lambda m: m["sender"] == "bot")
    assert "非常满意" in thanks["text"]

    # a second request, assigned; then the citizen walks away and the screen wipes itself
    await ask_for_person(ws)
    await until(ws, lambda m: (m.get("queue") or {}).get("state") == "assigned")
    h = await segment(hub, conv)
    assert h["state"] == "assigned"
    await ws.send_json({"type": "end"})
    fresh = await frame_of(ws, "hello")
    assert fresh["session"] != hello["session"] and fresh["history"] == []
    h = await segment(hub, conv)
    assert (h["state"], h["resolution"], h["note"]) == ("closed", "no_reply", LEFT_NOTE)
    # the agent is told: in the transcript, and by a workspace event; their place is free
    _, transcript = await hub.desk.transcript(agent, h["id"])
    assert transcript[-1].text == LEFT_TEXT and transcript[-1].queue.state == "closed"
    await eventually(lambda: any(e["type"] == "closed" and e.get("reason") == "citizen_left"
                                 and e["handoff"] == h["id"] for e in events))
    assert (await hub.desk.board(agent))["mine"] == []
    async with hub.engine.connect() as db:
        status = (await db.execute(select(conversations.c.status).where(
            conversations.c.id == conv))).scalar()
    assert status == "closed"
    # ...and the new session's screen saw none of it
    try:
        frame = await ws.receive(timeout=0.5)
        assert LEFT_TEXT not in frame.data
    except asyncio.TimeoutError:
        pass

    # the next person waits in the line (no agent online) and walks away: cancelled
    await hub.desk.sign_out(agent)
    waiting = await ask_for_person(ws)
    conv2 = waiting["conversation_id"]
    assert (await segment(hub, conv2))["state"] == "waiting"
    await ws.send_json({"type": "end"})
    await frame_of(ws, "hello")
    h2 = await segment(hub, conv2)
    assert (h2["state"], h2["resolution"]) == ("cancelled", "cancelled")
    assert await hub.handoff.queue.position(conv2) is None
    await eventually(lambda: any(e["type"] == "cancelled" and e["handoff"] == h2["id"]
                                 for e in events))
    hub.events.unsubscribe(on_event)
    await ws.close()
