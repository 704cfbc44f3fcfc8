"""The web channel against a real server: its websocket, identities, limits and pages."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

import adapters.base
from adapters.web import pages
from adapters.web.pages import WIDGET_TAG
from core.appkeys import HUB, KB_STORE
from core.security import sign

from .conftest import error_frame, messages, recv, silent

WS = "/channels/web/ws"
COOKIE = "bangban_web"
QUESTION = "居住证签注需要什么材料"


def cookie_of(client) -> str | None:
    found = {c.key: c.value for c in client.session.cookie_jar}
    return found.get(COOKIE)


async def connect(client, *, cookie: str | None = None, keep_jar: bool = False, **params):
    """A websocket; with ``cookie`` exactly that cookie (the jar emptied first)."""
    headers = {}
    if not keep_jar:
        client.session.cookie_jar.clear()
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    ws = await client.ws_connect(WS, headers=headers, params=params)
    hello = await recv(ws)
    assert hello["type"] == "hello", hello
    return ws, hello


async def ask(ws, text: str, replies: int = 1) -> list[dict]:
    await ws.send_json({"type": "message", "text": text})
    first = await recv(ws)
    assert first["type"] == "typing", first
    return await messages(ws, 1 + replies)


async def test_conversation_answer_then_quick_reply(make_client):
    client = await make_client()
    ws, hello = await connect(client)
    assert hello["history"] == [] and hello["token"] and hello["max_length"] == 500
    assert cookie_of(client), "the handshake sets the identity cookie"

    mine, answer = await ask(ws, QUESTION)
    assert (mine["sender"], mine["seq"], mine["text"]) == ("citizen", 1, QUESTION)
    assert answer["sender"] == "bot" and answer["seq"] == 2 and answer["action"] == "answer"
    assert "材料" in answer["text"] and answer["html"] and "<p>" in answer["html"]
    assert [q["label"] for q in answer["quick_replies"]] == ["已解决", "未解决"]
    assert answer["rating"]["prompt"] == "这个回答解决您的问题了吗？"
    assert answer["links"] and all(link["url"] for link in answer["links"])
    assert "meta" not in answer
    await silent(ws)  # the bus delivers the same messages again: they are not re-sent

    no = next(q for q in answer["quick_replies"] if q["label"] == "未解决")
    await ws.send_json({"type": "quick_reply", "payload": no["payload"], "label": no["label"]})
    assert (await recv(ws))["type"] == "typing"
    mine, follow = await messages(ws, 2)
    assert (mine["sender"], mine["seq"], mine["text"]) == ("citizen", 3, "未解决")
    assert follow["seq"] == 4 and "转人工帮办" in [q["label"] for q in follow["quick_replies"]]
    await silent(ws)
    await ws.close()


async def test_reconnect_gets_history_and_resume_replays_only_what_is_missing(make_client):
    client = await make_client()
    ws, _ = await connect(client)
    await ask(ws, QUESTION)
    await ask(ws, "你好")
    await ws.close()
    cookie = cookie_of(client)

    ws, hello = await connect(client, cookie=cookie)
    assert [m["seq"] for m in hello["history"]] == [1, 2, 3, 4]
    assert hello["history"][0]["text"] == QUESTION
    conversation = hello["conversation_id"]
    await ws.close()

    # a reconnecting widget skips the history and resumes from the last seq it rendered
    ws, hello = await connect(client, cookie=cookie, history="0")
    assert hello["history"] == []
    await ws.send_json({"type": "resume", "after": 2, "conversation": conversation})
    assert [m["seq"] for m in await messages(ws, 2)] == [3, 4]
    await silent(ws)
    # resuming with another conversation's id replays the current conversation whole
    await ws.send_json({"type": "resume", "after": 3, "conversation": "c0000"})
    assert [m["seq"] for m in await messages(ws, 4)] == [1, 2, 3, 4]
    await silent(ws)
    await ws.send_json({"type": "resume", "after": "x"})
    assert (await error_frame(ws))["code"] == "malformed"
    await ws.close()


async def test_token_identifies_a_citizen_without_cookie(make_client):
    client = await make_client()
    ws, hello = await connect(client)
    await ask(ws, QUESTION)
    await ws.close()

    ws, again = await connect(client, token=hello["token"])
    assert [m["seq"] for m in again["history"]] == [1, 2]
    assert again["token"] == hello["token"]
    await ws.close()
    # the cookie is not a token, nor the other way round
    ws, other = await connect(client, token=cookie_of(client))
    assert other["history"] == [] and other["token"] != hello["token"]
    await ws.close()


async def test_forged_cookie_gets_a_new_identity(make_client):
    client = await make_client()
    ws, hello = await connect(client)
    await ask(ws, QUESTION)
    await ws.close()
    good = cookie_of(client)
    uid, _, mac = good.rpartition(".")

    forged = [
        f"{uid}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}",     # altered signature
        f"{uid[:-1]}{'x' if uid[-1] != 'x' else 'y'}.{mac}",   # altered id
        uid,                                                    # unsigned
        "garbage",
        sign(b"not the instance secret", uid),                  # signed with another key
    ]
    for value in forged:
        ws, hello2 = await connect(client, cookie=value)
        assert hello2["history"] == [], value
        assert hello2["token"] != hello["token"]
        assert cookie_of(client) not in (None, value, good), "a fresh cookie was issued"
        await ws.close()


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(make_client):
    client = await make_client(max_message_length=50)
    ws, _ = await connect(client)

    await ws.send_json({"type": "message", "text": "长" * 51})
    err = await error_frame(ws)
    assert err["code"] == "too_long" and "50" in err["reason"] and "过长" in err["reason"]
    for raw, code in [("{not json", "malformed"), ("[1, 2]", "malformed"),
                      ('{"type": "message", "text": 5}', "malformed"),
                      ('{"type": "message", "text": "  "}', "empty"),
                      ('{"type": "message", "text": "hi", "id": "../x"}', "malformed"),
                      ('{"type": "sticker"}', "unsupported"),
                      ('{"type": "quick_reply", "payload": "", "label": "x"}', "bad_choice")]:
        await ws.send_str(raw)
        err = await error_frame(ws)
        assert err["code"] == code, raw
        assert re.search(r"[\u4e00-\u9fff]", err["reason"]), "reasons are in Chinese"
    await ws.send_bytes(b"\x00\x01")
    assert (await error_frame(ws))["code"] == "unsupported"
    assert not ws.closed
    # nothing was stored for them, and the socket still works
    mine, _ = await ask(ws, QUESTION)
    assert mine["seq"] == 1
    await ws.close()


async def test_client_message_id_makes_a_resend_idempotent(make_client):
    client = await make_client()
    ws, _ = await connect(client)
    await ws.send_json({"type": "message", "text": QUESTION, "id": "abc-1"})
    await messages(ws, 2)
    await ws.send_json({"type": "message", "text": QUESTION, "id": "abc-1"})
    assert (await recv(ws))["type"] == "typing"
    await silent(ws)
    await ws.close()


async def test_rate_limit_per_citizen(make_client, monkeypatch):
    monkeypatch.setattr(adapters.base, "clock", lambda: 90.0)  # no window boundary mid-test
    client = await make_client(rate_limit_per_minute=3)
    ws, _ = await connect(client)
    for i in range(3):
        await ask(ws, f"你好{i}")
    await ws.send_json({"type": "message", "text": "你好"})
    err = await error_frame(ws)
    assert err == {"type": "error", "code": "rate_limited", "reason": "发送太频繁，请稍后再试"}
    await ws.send_json({"type": "quick_reply", "payload": "resolved:yes", "label": "已解决"})
    assert (await error_frame(ws))["code"] == "rate_limited"
    assert not ws.closed
    # another tab of the same citizen shares the limit; another citizen does not
    cookie = cookie_of(client)
    ws2, _ = await connect(client, cookie=cookie)
    await ws2.send_json({"type": "message", "text": "你好"})
    assert (await error_frame(ws2))["code"] == "rate_limited"
    other, _ = await connect(client)
    await ask(other, "你好")
    for sock in (ws, ws2, other):
        await sock.close()


async def test_citizen_markup_is_stored_and_echoed_as_text(make_client):
    client = await make_client()
    ws, _ = await connect(client)
    text = "<script>alert(1)</script><img src=x onerror=alert(1)>"
    mine, reply = await ask(ws, text)
    assert mine["text"] == text and mine["html"] is None
    assert reply["sender"] == "bot"
    await ws.close()
    ws, hello = await connect(client, cookie=cookie_of(client))
    assert hello["history"][0]["text"] == text and hello["history"][0]["html"] is None
    await ws.close()


async def test_other_tabs_get_each_message_once_and_push_skips_sent_seqs(make_client):
    client = await make_client()
    tab1, _ = await connect(client)
    cookie = cookie_of(client)
    tab2, _ = await connect(client, cookie=cookie)
    stranger, _ = await connect(client)

    await ask(tab1, QUESTION)
    assert [(m["sender"], m["seq"]) for m in await messages(tab2, 2)] == [
        ("citizen", 1), ("bot", 2)]
    await silent(tab1)
    await silent(tab2)
    await silent(stranger)

    # a push of seqs a socket has already had sends nothing; a new seq goes out
    hub = client.server.app[HUB]
    adapter = hub.adapters["web"]
    uid = next(iter(c.uid for conns in adapter.connections.values() for c in conns
                    if len(conns) == 2))
    conversation_id, outs = await hub.history("web", uid)
    await adapter.push(uid, outs)
    await silent(tab1, 0.3)
    await adapter.push(uid, [outs[0].model_copy(update={"seq": 3, "text": "新消息"})])
    assert (await messages(tab1, 1))[0]["text"] == "新消息"
    assert (await messages(tab2, 1))[0]["text"] == "新消息"
    await adapter.push("w-nobody-is-connected-here", outs)  # not connected: no error
    for sock in (tab1, tab2, stranger):
        await sock.close()
    for _ in range(50):  # the server's handlers finish just after the close handshake
        if not adapter.connections:
            break
        await asyncio.sleep(0.05)
    assert adapter.connections == {}


async def test_origin_check(make_client):
    client = await make_client(allowed_origins=["https://zwdt.sh.gov.cn"])
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await client.ws_connect(WS, headers={"Origin": "https://evil.example"})
    assert exc.value.status == 403
    for origin in (f"http://{client.host}:{client.port}", "https://zwdt.sh.gov.cn"):
        ws = await client.ws_connect(WS, headers={"Origin": origin})
        assert (await recv(ws))["type"] == "hello"
        await ws.close()


async def test_portal_page(make_client):
    client = await make_client()
    resp = await client.get("/")
    body = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert '<html lang="zh-CN">' in body and "上海市一网通办" in body
    assert len(re.findall(r"<script\b", body)) == 1 and body.count(WIDGET_TAG) == 1
    assert 'href="/kb/M03-guide-01"' in body
    # each nav link lands on its own section: 法人服务 on businesses' matters, not on the tips
    for anchor, heading, matter in (("personal", "个人服务", "M03-guide-01"),
                                    ("business", "法人服务", "M30-guide-01")):
        assert f'href="/#{anchor}"' in body
        section = re.search(rf'<section id="{anchor}".*?</section>', body, re.S).group(0)
        assert heading in section and f'href="/kb/{matter}"' in section
    assert 'href="/#help"' in body and '<section id="help"' in body
    # no line break inside a Chinese sentence (a browser shows it as a space)
    assert not re.search(r"[\u4e00-\u9fff，；。]\n\s*[\u4e00-\u9fff]", body)
    set_cookie = resp.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{COOKIE}=") and "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    # a valid cookie is kept, not re-issued
    resp = await client.get("/")
    assert "Set-Cookie" not in resp.headers

    for path, kind in (("/widget.js", "javascript"), ("/widget.css", "text/css"),
                       ("/portal.css", "text/css")):
        resp = await client.get(path)
        assert resp.status == 200 and kind in resp.content_type, path


async def test_a_hotline_page_offers_its_number_to_call(make_client):
    client = await make_client()
    body = await (await client.get("/kb/hotline-12345")).text()
    assert '<a href="tel:12345">12345</a>' in body
    # the seed's folded text has no space between Chinese sentences
    assert "诉求。“线上人工帮办”" in body


async def test_kb_page_for_published_entries_only(make_client):
    client = await make_client()
    resp = await client.get("/kb/M03-guide-01")
    body = await resp.text()
    assert resp.status == 200
    assert "【导办】居住证签注" in body and "<li>本人有效居民身份证；</li>" in body
    assert "相关事项" in body and "居住证签注" in body
    assert 'href="https://zwdt.sh.gov.cn/govPortals/searchList?keyword=' in body
    assert body.count("<script") == 1

    for missing in ("/kb/no-such-entry", "/kb/%3Cscript%3E"):
        resp = await client.get(missing)
        body = await resp.text()
        assert resp.status == 404 and "未找到该知识条目" in body
        assert "<script>" not in body.replace(WIDGET_TAG, "")

    # drafts and retired entries exist in the KB but are not public
    app = client.server.app
    entry = await app[KB_STORE].get("M03-guide-01")
    await app[KB_STORE].write([entry.model_copy(update={"id": "M03-draft-01", "status": "draft"}),
                               entry.model_copy(update={"id": "M03-old-01", "status": "retired"})],
                              actor="test")
    await app[HUB].knowledge.refresh()
    for hidden in ("/kb/M03-draft-01", "/kb/M03-old-01"):
        assert (await client.get(hidden)).status == 404, hidden


async def test_kb_page_escapes_plain_text_fields(make_client):
    client = await make_client()
    entry = await client.server.app[KB_STORE].get("M03-guide-01")
    changed = entry.model_copy(update={"title": "<img src=x onerror=alert(1)>居住证"})
    body = pages._entry_main(changed)
    assert "&lt;img src=x onerror=alert(1)&gt;居住证" in body
    assert "<img src=x" not in body


async def test_a_failing_core_is_an_error_frame_not_a_disconnect(make_client):
    client = await make_client()
    ws, _ = await connect(client)
    dialog = client.server.app[HUB].dialog

    async def down(_inbound):
        raise ConnectionError("database unreachable")

    dialog.handle = down
    try:
        await ws.send_json({"type": "message", "text": QUESTION})
        err = await error_frame(ws)
    finally:
        del dialog.handle  # the class's method again
    assert err == {"type": "error", "code": "busy", "reason": "系统繁忙，请稍后再试"}
    mine, _ = await ask(ws, QUESTION)
    assert mine["seq"] == 1
    await ws.close()
