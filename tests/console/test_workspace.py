"""坐席工作台 over HTTP, through the real application on real SQL and Redis with the seed KB.

Every unit is open around the clock in these tests (a copy of config/units.yaml with every unit
on the ``always`` schedule), so they do not depend on when they run. Citizens are driven through
the hub (as a channel adapter would); staff through the console's HTTP API with real sessions.

The fixtures here are shared with test_supervisor.py and test_two_party_browser.py.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from console.auth import COOKIE
from console.workspace_page import load_canned
from core.appkeys import HUB
from core.attachments import AttachmentStore
from core.banned import BannedPhrases
from core.config import Settings
from core.db.schema import kb_candidates
from core.dialog.models import Inbound, Outbound
from core.errors import ConfigError
from core.staff import StaffStore, StaffUser
from tests.support import always_open_units

PASSWORD = "correct horse battery 42"
NO_CRIME = "无犯罪记录证明怎么开？"  # M06: the police
TAX_QUESTION = "个人所得税怎么申报？"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


# -- fixtures -----------------------------------------------------------------------------------


def desk_settings(settings: Settings, directory: Path, **handoff: Any) -> Settings:
    update = {"units_file": always_open_units(directory), **handoff}
    return settings.model_copy(update={"handoff": settings.handoff.model_copy(update=update)})


@pytest.fixture
def staff_store(engine) -> StaffStore:
    # cheap hashing: these tests are about the workspace, not password storage
    return StaffStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@dataclass
class Staff:
    """One signed-in staff member's browser, as far as the API is concerned."""

    user: StaffUser
    http: aiohttp.ClientSession
    csrf: str
    token: str

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(path, allow_redirects=False) as resp:
            body = await resp.json() if resp.content_type == "application/json" else \
                await resp.text()
            return resp.status, body

    async def post(self, path: str, body: dict | None = None, **kw: Any) -> tuple[int, Any]:
        kw.setdefault("json", body or {})
        async with self.http.post(path, headers={"X-CSRF-Token": self.csrf}, **kw) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def desk_app(aiohttp_client, settings, engine, redis, seeded, tmp_path):
    from core.app import create_app

    client = await aiohttp_client(create_app(desk_settings(settings, tmp_path)))
    desk = client.app[HUB].desk
    desk.banned = BannedPhrases.load(None)
    return client


@pytest.fixture
async def sign_in(desk_app, staff_store):
    """sign_in("zhang", ["police"], roles=("agent",)) → a Staff with a live session."""
    opened: list[aiohttp.ClientSession] = []

    async def make(name: str, units: list[str], roles: tuple[str, ...] = ("agent",),
                   display: str | None = None) -> Staff:
        user = await staff_store.add_user(f"{name}{secrets.token_hex(2)}", PASSWORD,
                                          roles=list(roles), units=units,
                                          display_name=display or name)
        token, session = await staff_store.create_session(user)
        http = aiohttp.ClientSession(base_url=str(desk_app.make_url("")),
                                     headers={"Cookie": f"{COOKIE}={token}"})
        opened.append(http)
        return Staff(user, http, session.csrf_token, token)

    yield make
    for http in opened:
        await http.close()


async def say(app, user: str, text: str = "", **fields: Any) -> list[Outbound]:
    result = await app[HUB].handle(Inbound(channel="web", channel_user=user, text=text, **fields))
    return result.replies


async def ask_for_person(app, question: str = NO_CRIME) -> str:
    user = f"citizen-{secrets.token_hex(4)}"
    await say(app, user, question)
    replies = await say(app, user, "转人工")
    assert replies[-1].queue is not None and replies[-1].queue.state == "waiting", replies[-1]
    return user


async def told(app, user: str) -> list[Outbound]:
    return (await app[HUB].history("web", user))[1]


async def served(desk_app, agent: Staff, question: str = NO_CRIME) -> tuple[str, str]:
    """A citizen asks, asks for a person and is assigned to ``agent``: (citizen, handoff id)."""
    citizen = await ask_for_person(desk_app.app, question)
    await desk_app.app[HUB].desk.heartbeat(agent.user)
    status, board = await agent.get("/console/api/board")
    assert status == 200 and board["mine"], board
    return citizen, board["mine"][-1]["id"]


# -- the page -----------------------------------------------------------------------------------


async def test_the_page_needs_a_desk_role_and_shows_the_users_canned_replies(desk_app, sign_in):
    resp = await desk_app.get("/console/workspace", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/console/login")
    assert (await desk_app.get("/console/api/board")).status == 401
    assert (await desk_app.get("/console/static/workspace.js",
                               allow_redirects=False)).status == 302

    editor = await sign_in("kb", [], roles=("kb_editor",))
    status, page = await editor.get("/console/workspace")
    assert status == 403
    status, body = await editor.get("/console/api/board")
    assert status == 403 and body["error"] == "forbidden"

    police = await sign_in("zhang", ["police"], display="张<三>")
    async with police.http.get("/console/workspace") as resp:
        assert resp.status == 200
        page = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert '<script src="/console/static/workspace.js" defer></script>' in page
    assert "张&lt;三&gt;" in page and "张<三>" not in page
    assert "上线" in page and "忙碌" in page and "离开" in page
    assert "无犯罪记录证明可在" in page  # police canned reply
    assert "个人所得税纳税记录" not in page  # tax's, not this agent's
    assert "您好，很高兴为您服务" in page  # common
    assert '<option value="tax">市税务局</option>' in page
    assert '<option value="resolved">已解决</option>' in page
    assert "未配置12345派单" in page and "<fieldset disabled>" in page
    for path, kind in (("/console/static/workspace.js", "application/javascript"),
                       ("/console/static/workspace.css", "text/css")):
        async with police.http.get(path) as resp:
            assert resp.status == 200 and resp.content_type == kind

    home = await police.get("/console/")
    assert 'href="/console/workspace"' in home[1] and "班组监控" not in home[1]


async def test_a_disabled_handoff_says_so(aiohttp_client, settings, engine, redis, seeded,
                                         staff_store):
    from core.app import create_app

    off = settings.model_copy(update={"handoff": settings.handoff.model_copy(
        update={"enabled": False})})
    client = await aiohttp_client(create_app(off))
    user = await staff_store.add_user("offagent", PASSWORD, roles=["agent"], units=["police"])
    token, session = await staff_store.create_session(user)
    cookies = {"Cookie": f"{COOKIE}={token}"}
    resp = await client.get("/console/workspace", headers=cookies)
    assert resp.status == 404 and "线上人工帮办未启用" in await resp.text()
    resp = await client.get("/console/api/board", headers=cookies)
    assert resp.status == 404 and (await resp.json())["error"] == "handoff_disabled"


# -- who sees what ------------------------------------------------------------------------------


async def test_the_board_lists_only_the_users_units(desk_app, sign_in):
    police_citizen = await ask_for_person(desk_app.app)
    tax_citizen = await ask_for_person(desk_app.app, TAX_QUESTION)
    police = await sign_in("p", ["police"])
    tax = await sign_in("t", ["tax"], roles=("supervisor",))
    admin = await sign_in("a", [], roles=("admin",))

    _, board = await police.get("/console/api/board")
    assert [h["channel_user"] for h in board["waiting"]] == [police_citizen]
    assert board["waiting"][0]["unit_name"] == "市公安局"
    assert board["me"]["units"] == ["police"] and board["dispatch"] is False
    _, board = await tax.get("/console/api/board")
    assert [h["channel_user"] for h in board["waiting"]] == [tax_citizen]
    _, board = await admin.get("/console/api/board")
    assert {h["channel_user"] for h in board["waiting"]} == {police_citizen, tax_citizen}


async def test_another_units_conversation_is_refused_on_every_route(desk_app, sign_in):
    police = await sign_in("p", ["police"])
    citizen, hid = await served(desk_app, police)
    status, sent = await police.post(f"/console/api/handoffs/{hid}/send", {"text": "您好"})
    assert status == 200
    form = aiohttp.FormData()
    form.add_field("file", PNG, filename="x.png", content_type="image/png")
    status, up = await police.post(f"/console/api/handoffs/{hid}/upload", json=None, data=form)
    assert status == 201
    intruder = await sign_in("t", ["tax"], roles=("agent", "supervisor"))

    base = f"/console/api/handoffs/{hid}"
    status, body = await intruder.get(base)
    assert status == 403 and body["error"] == "forbidden" and body["message"]
    for action, payload in (("send", {"text": "hi"}), ("close", {"resolution": "resolved"}),
                            ("transfer", {"unit": "tax"}), ("claim", {}),
                            ("dispatch", {"summary": "x"}),
                            ("propose", {"message_id": sent["message"]["id"]})):
        status, body = await intruder.post(f"{base}/{action}", payload)
        assert status == 403, (action, body)
        assert set(body) >= {"error", "message"}
    form = aiohttp.FormData()
    form.add_field("file", PNG, filename="x.png", content_type="image/png")
    status, body = await intruder.post(f"{base}/upload", json=None, data=form)
    assert status == 403
    # the picture in the police conversation: as if it did not exist
    status, body = await intruder.get(up["attachment"]["url"])
    assert status == 404 and "a0" not in body["message"]
    # made-up ids: 404 with a reason, never a 500
    for bad in ("h0000", "x" * 300, "h1%27%20OR%20%271%27=%271"):
        status, body = await intruder.get(f"/console/api/handoffs/{bad}")
        assert status == 404, (bad, status)
        # in the staff's language, not the core's "no human-help service 'h0000'"
        assert body["message"] == "会话或内容不存在，可能已结束或已被删除，请刷新页面后重试。"
    # and the legitimate agent still has it all
    assert (await police.get(base))[0] == 200
    _, board = await intruder.get("/console/api/board")
    assert not any(board[k] for k in ("mine", "waiting", "messages", "breaches"))


# -- serving a citizen --------------------------------------------------------------------------


async def test_the_agent_sees_the_whole_transcript_replies_and_the_citizen_gets_it(desk_app,
                                                                                   sign_in):
    police = await sign_in("zhang", ["police"], display="张警官")
    citizen, hid = await served(desk_app, police)
    status, t = await police.get(f"/console/api/handoffs/{hid}")
    assert status == 200
    h, msgs = t["handoff"], t["messages"]
    assert h["mine"] and h["can_manage"] and h["unit_name"] == "市公安局"
    senders = [m["sender"] for m in msgs]
    assert senders[:2] == ["citizen", "bot"]  # the bot part is there
    assert msgs[0]["text"] == NO_CRIME and "html" not in msgs[1]
    # the script leaves the lines that only steer out of 派单 and 纳入知识库
    said = [(m["text"], m["steering"]) for m in msgs if m["sender"] == "citizen"]
    assert said == [(NO_CRIME, False), ("转人工", True)]
    assert [s["unit_name"] for s in t["segments"]] == ["市公安局"]

    status, body = await police.post(f"/console/api/handoffs/{hid}/send",
                                     {"text": "您好，请问您是本人办理吗？身份证号 310101199001011234"})
    assert status == 200 and body["message"]["sender"] == "agent"
    mine = [o for o in await told(desk_app.app, citizen) if o.sender == "agent"]
    assert mine[-1].text.endswith("310101199001011234") and mine[-1].sender_name == "张警官"

    last = body["message"]["seq"]
    await say(desk_app.app, citizen, "是本人，手机13812345678")
    status, t = await police.get(f"/console/api/handoffs/{hid}?after={last}")
    assert [m["text"] for m in t["messages"]] == ["是本人，手机13812345678"]

    status, body = await police.post(f"/console/api/handoffs/{hid}/close",
                                     {"resolution": "no_such_code"})
    assert status == 422 and body["error"] == "invalid"
    status, body = await police.post(f"/console/api/handoffs/{hid}/close",
                                     {"resolution": "resolved", "note": "已告知办理渠道"})
    assert status == 200 and body["handoff"]["state"] == "closed"
    assert [o for o in await told(desk_app.app, citizen) if o.rating][-1].rating.target == hid
    status, body = await police.post(f"/console/api/handoffs/{hid}/send", {"text": "还在吗"})
    assert status == 409 and body["message"] == "这个会话已经结束"
    # so does acting on it again (a second tab): it has ended, not "no permission"
    for action, body in (("close", {"resolution": "resolved"}), ("transfer", {"unit": "tax"}),
                         ("dispatch", {"summary": "无犯罪记录证明"})):
        status, got = await police.post(f"/console/api/handoffs/{hid}/{action}", body)
        assert (status, got["message"]) == (409, "这个会话已经结束"), action


async def test_a_banned_phrase_is_not_sent_and_the_agent_sees_why(desk_app, sign_in):
    police = await sign_in("p", ["police"])
    citizen, hid = await served(desk_app, police)
    text = "  这个事情不 归 我 们 管，您去别处问问"
    status, body = await police.post(f"/console/api/handoffs/{hid}/send", {"text": text})
    assert status == 422 and body["error"] == "banned_phrase"
    assert body["phrase"] == "不归我们管" and body["category"] == "推诿塞责"
    assert "首问负责" in body["reason"] and "不归我们管" in body["message"]
    assert text[body["start"]:body["end"]] == "不 归 我 们 管"
    assert not [o for o in await told(desk_app.app, citizen) if o.sender == "agent"]


async def test_pictures_both_ways_with_type_and_size_limits(aiohttp_client, settings, engine,
                                                          redis, seeded, tmp_path, staff_store):
    from core.app import create_app

    app = create_app(desk_settings(settings, tmp_path, max_image_bytes=4096,
                                   max_voice_bytes=2048))
    client = await aiohttp_client(app)
    user = await staff_store.add_user("pic", PASSWORD, roles=["agent"], units=["police"])
    other = await staff_store.add_user("pic2", PASSWORD, roles=["agent"], units=["police"])
    sessions = {}
    for u in (user, other):
        token, s = await staff_store.create_session(u)
        sessions[u.id] = ({"Cookie": f"{COOKIE}={token}", "X-CSRF-Token": s.csrf_token})
    citizen = await ask_for_person(app)
    await app[HUB].desk.heartbeat(user)
    hid = (await app[HUB].desk.board(user))["mine"][0]["id"]
    headers = sessions[user.id]

    async def upload(data: bytes, name: str, headers=headers) -> tuple[int, dict]:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name, content_type="image/png")
        resp = await client.post(f"/console/api/handoffs/{hid}/upload", data=form,
                                 headers=headers)
        return resp.status, await resp.json()

    status, body = await upload(b"<svg onload=alert(1)></svg>" + b" " * 64, "x.png")
    assert status == 415 and "PNG" in body["message"] and "MP3" in body["message"]
    status, body = await upload(b"%PDF-1.7\n" + b" " * 64, "scan.pdf")
    assert status == 415
    # a multipart body no browser sends (a part header without its colon): 400, not a 500
    resp = await client.post(f"/console/api/handoffs/{hid}/upload", headers={
        **headers, "Content-Type": "multipart/form-data; boundary=zz"},
        data=b"--zz\r\nContent-Disposition form-data\r\n\r\nx\r\n--zz--\r\n")
    assert resp.status == 400 and "无法解析" in (await resp.json())["message"]
    status, body = await upload(PNG + b"\x00" * 5000, "big.png")
    assert status == 413 and body["message"] == "图片过大，请控制在 4 KB 以内"
    # voice has its own, smaller limit here: 3 KB of MP3 is refused, 3 KB of PNG is not
    status, body = await upload(b"ID3\x04\x00" + b"\x00" * 3000, "long.mp3")
    assert status == 413 and body["message"] == "语音过大，请控制在 2 KB 以内"
    status, body = await upload(b"#!AMR\n" + b"\x3c" * 500, "语音.amr")
    assert status == 201 and body["attachment"]["kind"] == "voice"
    assert body["attachment"]["mime"] == "audio/amr"
    voice_id = body["id"]
    status, body = await upload(PNG, "照片.png")
    assert status == 201 and body["attachment"]["url"] == f"/console/api/attachments/{body['id']}"
    aid = body["id"]

    # someone else cannot send this agent's upload
    resp = await client.post(f"/console/api/handoffs/{hid}/send",
                             json={"attachments": [aid]}, headers=sessions[other.id])
    assert resp.status == 409  # not their conversation at all
    resp = await client.post(f"/console/api/handoffs/{hid}/send",
                             json={"text": "", "attachments": [aid]}, headers=headers)
    assert resp.status == 200
    sent = [o for o in await told(app, citizen) if o.sender == "agent"][-1]
    assert sent.attachments[0].url == f"/attachments/{aid}" and sent.attachments[0].mime == \
        "image/png"
    resp = await client.get(f"/console/api/attachments/{aid}", headers=headers)
    assert resp.status == 200 and await resp.read() == PNG
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"

    # the agent's voice message reaches the citizen as a voice attachment
    resp = await client.post(f"/console/api/handoffs/{hid}/send",
                             json={"text": "请听语音说明", "attachments": [voice_id]},
                             headers=headers)
    assert resp.status == 200
    sent = [o for o in await told(app, citizen) if o.sender == "agent"][-1]
    assert sent.text == "请听语音说明"
    assert [(a.kind, a.mime) for a in sent.attachments] == [("voice", "audio/amr")]

    # a citizen's picture shows in the transcript under the staff route
    store = AttachmentStore(engine, 4096, 4096)
    conv = (await app[HUB].history("web", citizen))[0]
    meta = await store.save(conv, "citizen", citizen, PNG, "image/png", "screen.png")
    await say(app, citizen, "", kind="image", attachments=[meta.to_attachment()])
    resp = await client.get(f"/console/api/handoffs/{hid}", headers=headers)
    last = (await resp.json())["messages"][-1]
    assert last["sender"] == "citizen"
    assert last["attachments"][0]["url"] == f"/console/api/attachments/{meta.id}"


async def test_transfer_with_a_note_moves_it_to_the_other_units_line(desk_app, sign_in):
    police = await sign_in("p", ["police"])
    citizen, hid = await served(desk_app, police)
    status, body = await police.post(f"/console/api/handoffs/{hid}/transfer",
                                     {"unit": "police", "note": "x"})
    assert status == 422 and body["message"] == "不能转给本单位"
    status, body = await police.post(f"/console/api/handoffs/{hid}/transfer",
                                     {"unit": "tax", "note": "群众问的是个税"})
    assert status == 200
    _, board = await police.get("/console/api/board")
    assert board["mine"] == []
    tax = await sign_in("t", ["tax"])
    _, board = await tax.get("/console/api/board")
    [moved] = board["waiting"]
    assert moved["note"] == "群众问的是个税" and moved["channel_user"] == citizen
    status, t = await tax.get(f"/console/api/handoffs/{moved['id']}")
    assert status == 200 and t["messages"][0]["text"] == NO_CRIME
    assert [s["unit_name"] for s in t["segments"]] == ["市公安局", "市税务局"]


async def test_signing_out_of_the_last_session_gives_the_conversations_back_at_once(
        desk_app, sign_in, staff_store):
    police = await sign_in("li", ["police"], display="李警官")
    citizen, hid = await served(desk_app, police)

    async def log_out(token: str, csrf: str) -> int:
        async with police.http.post("/console/logout", headers={
                "Cookie": f"{COOKIE}={token}", "X-CSRF-Token": csrf},
                allow_redirects=False) as resp:
            return resp.status

    # signed in twice (a second device): leaving one session keeps the conversation
    token2, session2 = await staff_store.create_session(police.user)
    assert await log_out(token2, session2.csrf_token) == 303
    _, board = await police.get("/console/api/board")
    assert [h["id"] for h in board["mine"]] == [hid]

    # leaving the last one gives it back now, not release_after_s later
    assert await log_out(police.token, police.csrf) == 303
    other = await sign_in("wang", ["police"])
    _, board = await other.get("/console/api/board")
    [back] = board["waiting"]
    assert back["channel_user"] == citizen and back["id"] != hid  # a new segment of the same conversation
    assert "李警官已退出登录" in back["note"]
    assert (await told(desk_app.app, citizen))[-1].text.startswith("为您服务的工作人员暂时离开")
    # the next agent on duty gets the citizen
    await desk_app.app[HUB].desk.heartbeat(other.user)
    _, board = await other.get("/console/api/board")
    assert [h["channel_user"] for h in board["mine"]] == [citizen]


async def test_dispatch_to_12345_when_configured(desk_app, sign_in):
    police = await sign_in("p", ["police"])
    citizen, hid = await served(desk_app, police)
    status, body = await police.post(f"/console/api/handoffs/{hid}/dispatch", {"summary": "x"})
    assert status == 409 and "未配置12345派单" in body["message"]
    got: dict[str, Any] = {}

    async def dispatcher(**kw: Any) -> dict[str, Any]:
        got.update(kw)
        return {"id": "T20261130001", "status": "created"}

    desk_app.app[HUB].desk.dispatcher = dispatcher
    status, page = await police.get("/console/workspace")
    assert "未配置12345派单" not in page and "<fieldset>" in page
    status, body = await police.post(f"/console/api/handoffs/{hid}/dispatch", {"summary": " "})
    assert status == 422
    status, body = await police.post(f"/console/api/handoffs/{hid}/dispatch",
                                     {"summary": "群众咨询无犯罪记录证明", "contact": ""})
    assert status == 200 and body["ticket"]["id"] == "T20261130001"
    assert got["summary"] == "群众咨询无犯罪记录证明" and got["citizen_contact"] is None
    assert got["unit"] == "police" and got["transcript"][0]["text"] == NO_CRIME
    # each line's time says its zone, as the ticket's own created_at does
    assert datetime.fromisoformat(got["transcript"][0]["at"]).utcoffset() is not None
    assert "T20261130001" in (await told(desk_app.app, citizen))[-2].text


async def test_propose_an_answer_for_the_kb_once(desk_app, sign_in, engine):
    police = await sign_in("p", ["police"])
    citizen, hid = await served(desk_app, police)
    await say(desk_app.app, citizen, "可以委托别人代办吗？")
    _, sent = await police.post(f"/console/api/handoffs/{hid}/send",
                                {"text": "可以，需要携带委托书和双方身份证。"})
    mid = sent["message"]["id"]
    status, body = await police.post(f"/console/api/handoffs/{hid}/propose", {"message_id": mid})
    assert status == 201
    status, body = await police.post(f"/console/api/handoffs/{hid}/propose", {"message_id": mid})
    assert status == 409
    async with engine.connect() as conn:
        row = (await conn.execute(select(kb_candidates))).mappings().one()
    assert row["question"] == "可以委托别人代办吗？" and row["unit"] == "police"
    status, body = await police.post(f"/console/api/handoffs/{hid}/propose",
                                     {"message_id": mid, "extra": 1})
    assert status == 422  # bodies are validated


async def test_claiming_a_left_message(desk_app, sign_in):
    desk = desk_app.app[HUB].desk
    citizen = f"citizen-{secrets.token_hex(4)}"
    await say(desk_app.app, citizen, NO_CRIME)
    conv = (await desk_app.app[HUB].history("web", citizen))[0]
    # a 留言 as left outside hours (every unit is open in these tests)
    h = await desk.store.open(conversation_id=conv, channel="web", channel_user=citizen,
                              unit="police", matter="M06", reason="matter", state="message")
    supervisor = await sign_in("s", ["police"], roles=("supervisor",))
    status, body = await supervisor.post(f"/console/api/handoffs/{h.id}/claim")
    assert status == 403
    police = await sign_in("p", ["police"], display="李")
    _, board = await police.get("/console/api/board")
    assert [m["id"] for m in board["messages"]] == [h.id]
    status, body = await police.post(f"/console/api/handoffs/{h.id}/claim")
    assert status == 200 and body["handoff"]["mine"]
    other = await sign_in("p2", ["police"])
    status, body = await other.post(f"/console/api/handoffs/{h.id}/claim")
    assert status == 409 and body["message"] == "这条留言已被处理"
    assert "李已查看您的留言" in (await told(desk_app.app, citizen))[-1].text


async def test_kb_search_gives_the_official_answer_as_plain_text(desk_app, sign_in):
    police = await sign_in("p", ["police"])
    status, body = await police.get("/console/api/kb/search?q=" + "无犯罪记录证明怎么开")
    assert status == 200 and body["hits"]
    top = body["hits"][0]
    assert "M06" in top["matters"] and top["text"] and "<" not in top["text"]
    status, body = await police.get("/console/api/kb/search?q=")
    assert body == {"hits": []}


# -- pieces -------------------------------------------------------------------------------------




def test_canned_replies_file_is_validated_with_the_file_and_field_named(tmp_path):
    shipped = load_canned(None, {"police", "tax", "hotline-12345"})
    assert shipped.common and shipped.units["police"]
    bad = tmp_path / "canned.yaml"
    bad.write_text("common:\n  - title: 问候\n    text: ''\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"canned\.yaml: common\.0\.text: "):
        load_canned(bad)
    bad.write_text("common: []\nunits:\n  nowhere:\n    - {title: a, text: b}\n",
                   encoding="utf-8")
    with pytest.raises(ConfigError, match=r"canned\.yaml: units\.nowhere: unknown unit"):
        load_canned(bad, {"police"})
    bad.write_text("common:\n  - {title: a, text: b}\n  - {title: a, text: c}\n",
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="used twice"):
        load_canned(bad)
    bad.write_text("common:\n  - {title: a, text: b, extra: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"common\.0\.extra"):
        load_canned(bad)


async def test_every_post_needs_the_csrf_token_and_our_origin(desk_app, sign_in):
    police = await sign_in("p", ["police"])
    citizen, hid = await served(desk_app, police)
    path = f"/console/api/handoffs/{hid}/send"
    async with police.http.post(path, json={"text": "没有令牌"}) as resp:
        assert resp.status == 403 and (await resp.json())["error"] == "csrf"
    async with police.http.post(path, json={"text": "别的网站"}, headers={
            "X-CSRF-Token": police.csrf, "Origin": "https://evil.example"}) as resp:
        assert resp.status == 403 and (await resp.json())["error"] == "bad_origin"
    assert not [o for o in await told(desk_app.app, citizen) if o.sender == "agent"]


def test_the_script_never_parses_data_as_html():
    script = (Path(__file__).resolve().parents[2] / "console/static/workspace.js").read_text(
        encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function"):
        assert sink not in script, sink
