"""The workspace socket: who may open it, presence kept alive server-side, and events filtered
by unit so that nothing of another unit reaches a browser."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from console import workspace_socket
from console.workspace_socket import CLOSE_SIGNED_OUT, PATH, visible
from core.appkeys import HUB
from core.dialog.models import Inbound
from core.staff import StaffUser

from .test_workspace import (TAX_QUESTION, Staff, ask_for_person, desk_app,  # noqa: F401
                             sign_in, staff_store)


def origin(desk_app) -> str:
    return str(desk_app.make_url("")).rstrip("/")


async def open_socket(desk_app, staff: Staff) -> aiohttp.ClientWebSocketResponse:
    ws = await staff.http.ws_connect(PATH, origin=origin(desk_app))
    hello = await frame(ws)
    assert hello["type"] == "hello" and hello["user"]["id"] == staff.user.id
    return ws


async def frame(ws, timeout: float = 10) -> dict:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
    return json.loads(msg.data)


async def events(ws, wait: float = 1.0) -> list[dict]:
    """Every event frame arriving within ``wait`` seconds."""
    out = []
    loop = asyncio.get_running_loop()
    end = loop.time() + wait
    while (left := end - loop.time()) > 0:
        try:
            f = await frame(ws, timeout=left)
        except asyncio.TimeoutError:
            break
        if f["type"] == "event":
            out.append(f["event"])
    return out


async def event_of(ws, kind: str, timeout: float = 10) -> dict:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        f = await frame(ws, timeout=max(0.1, end - loop.time()))
        if f["type"] == "event" and f["event"]["type"] == kind:
            return f["event"]


async def test_the_socket_wants_a_session_a_desk_role_and_our_origin(desk_app, sign_in):
    agent = await sign_in("p", ["police"])
    for bad in (None, "http://evil.example", "null"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await agent.http.ws_connect(PATH, origin=bad)
        assert exc.value.status == 403
    async with aiohttp.ClientSession(base_url=origin(desk_app)) as anonymous:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await anonymous.ws_connect(PATH, origin=origin(desk_app))
    editor = await sign_in("kb", [], roles=("kb_editor",))
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await editor.http.ws_connect(PATH, origin=origin(desk_app))
    assert exc.value.status == 403
    ws = await open_socket(desk_app, agent)
    await ws.send_str("{not json")
    assert (await frame(ws))["type"] == "error"
    await ws.send_json({"type": "presence", "status": "sleeping"})
    assert (await frame(ws))["type"] == "error"
    await ws.send_json({"type": "ping"})
    assert (await frame(ws))["type"] == "pong"
    await ws.close()


async def test_another_units_events_reach_nobody_of_this_unit(desk_app, sign_in):
    police = await open_socket(desk_app, await sign_in("p", ["police"]))
    tax = await open_socket(desk_app, await sign_in("t", ["tax"], roles=("supervisor",)))
    admin = await open_socket(desk_app, await sign_in("a", [], roles=("admin",)))
    police_supervisor = await sign_in("s", ["police"], roles=("supervisor",))
    supervisor = await open_socket(desk_app, police_supervisor)

    await ask_for_person(desk_app.app)  # police
    got = await event_of(police, "queue")
    assert got["unit"] == "police"
    assert (await event_of(admin, "queue"))["unit"] == "police"
    assert (await event_of(supervisor, "queue"))["unit"] == "police"
    citizen = await ask_for_person(desk_app.app, TAX_QUESTION)
    assert [e["unit"] for e in await events(tax, 1.5)] == ["tax"]
    assert all(e["unit"] == "police" for e in await events(police, 0.5))
    assert (await event_of(admin, "queue"))["unit"] == "tax"

    # a citizen's message (with their text) goes only to the unit serving them
    await desk_app.app[HUB].handle(Inbound(channel="web", channel_user=citizen,
                                           text="我的身份证号是310101199001011234"))
    msg = await event_of(tax, "citizen_message")
    assert msg["message"]["text"].endswith("310101199001011234")
    assert await events(police, 1.0) == [] and await events(supervisor, 0.2) == []
    for ws in (police, tax, admin, supervisor):
        await ws.close()


def test_visibility_rule():
    def user(roles, units):
        return StaffUser(id="u", username="u", display_name="u", roles=roles, units=units,
                         active=True, created_at="2026-01-01T00:00:00Z",
                         updated_at="2026-01-01T00:00:00Z")

    e = {"type": "transferred", "unit": "police", "to": "tax"}
    assert visible(user(["agent"], ["tax"]), e) and visible(user(["agent"], ["police"]), e)
    assert not visible(user(["agent"], ["hrss"]), e)
    assert not visible(user(["kb_editor"], ["police"]), e)
    assert visible(user(["admin"], []), e)
    assert not visible(user(["agent"], ["police"]), {"type": "queue"})  # no unit: nobody


async def test_presence_is_kept_alive_from_the_server_and_lapses_when_the_tab_closes(
        desk_app, sign_in, monkeypatch):
    monkeypatch.setattr(workspace_socket, "HEARTBEAT_S", 0.3)
    queue = desk_app.app[HUB].desk.queue
    staff = await sign_in("p", ["police"])
    ws = await open_socket(desk_app, staff)
    citizen = await ask_for_person(desk_app.app)
    await ws.send_json({"type": "presence", "status": "online"})
    seen: dict[str, dict] = {}
    while not ("presence" in seen and "assigned" in seen):  # in either order
        f = await frame(ws)
        seen[f["event"]["type"] if f["type"] == "event" else f["type"]] = f
    assert seen["presence"] == {"type": "presence", "status": "online", "units": ["police"]}
    # going online hands out the waiting citizen
    assert seen["assigned"]["event"]["agent"] == staff.user.id

    async def alive_until() -> float:
        [me] = [a for a in await queue.agents("police") if a.agent == staff.user.id]
        return me.alive_until

    first = await alive_until()
    await asyncio.sleep(0.8)
    assert await alive_until() > first  # the server kept it alive with no message from us
    await ws.send_json({"type": "presence", "status": "busy"})
    await asyncio.sleep(0.5)
    [me] = [a for a in await queue.agents("police") if a.agent == staff.user.id]
    assert me.status == "busy" and me.load == 1
    await ws.close()
    await asyncio.sleep(0.4)
    stopped = await alive_until()
    await asyncio.sleep(0.8)
    assert await alive_until() == stopped  # closed tab: no more heartbeats, it will lapse
    assert citizen


async def test_presence_needs_an_agent_of_a_serving_unit(desk_app, sign_in):
    ws = await open_socket(desk_app, await sign_in("s", ["police"], roles=("supervisor",)))
    await ws.send_json({"type": "presence", "status": "online"})
    f = await frame(ws)
    assert f["type"] == "error" and "坐席" in f["message"]
    await ws.close()


async def test_signing_out_closes_the_socket(desk_app, sign_in, staff_store, monkeypatch):
    monkeypatch.setattr(workspace_socket, "HEARTBEAT_S", 0.2)
    staff = await sign_in("p", ["police"])
    ws = await open_socket(desk_app, staff)
    await staff_store.revoke_session(staff.token)
    msg = await ws.receive(timeout=5)
    while msg.type == aiohttp.WSMsgType.TEXT:
        msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_SIGNED_OUT
