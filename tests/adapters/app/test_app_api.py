"""The 随申办 APP API end to end: signed requests, long-poll, websocket, every refusal.

Real server, database, Redis and bus (see conftest); requests are signed with the same helper
app developers use (adapters/app/signing.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta

import aiohttp
import pytest
from yarl import URL

from adapters.app import AppAdapter
from adapters.app.signing import sign_request
from core.app import create_app
from core.appkeys import HUB
from core.dialog.models import MAX_TEXT
from core.errors import ConfigError

from .conftest import APP_A, APP_B, MESSAGES, Signed, with_app_channel

WS = "/api/app/v1/ws"


async def refused(resp, status: int, code: str) -> dict:
    body = await resp.json()
    assert resp.status == status, body
    assert body["error"] == code, body
    assert body["message"], body
    return body


# -- sending -----------------------------------------------------------------------------------


async def test_signed_message_gets_the_seed_answer(seeded_api):
    body = await seeded_api.send("u1001", "个税清单怎么开")
    assert body["conversation_id"] and body["seq"] == 1 and body["duplicate"] is False
    reply = body["replies"][0]
    assert reply["action"] == "answer", reply
    assert "M34" in reply["meta"]["matters"]
    assert reply["seq"] == 2 and reply["sender"] == "bot"


async def test_quick_reply_and_client_dedup(api):
    first = await api.post({"user": "u1", "text": "你好", "msg_id": "client-1"})
    again = await api.post({"user": "u1", "text": "你好", "msg_id": "client-1"})
    first, again = await first.json(), await again.json()
    assert first["seq"] == 1 and first["replies"] and not first["duplicate"]
    assert again == {"conversation_id": first["conversation_id"], "seq": 0, "replies": [],
                     "duplicate": True}
    # the same client id from another user is that user's own message
    other = await (await api.post({"user": "u2", "text": "你好", "msg_id": "client-1"})).json()
    assert other["duplicate"] is False

    resp = await api.post({"user": "u1", "payload": "resolved:yes", "label": "已解决"})
    tapped = await resp.json()
    assert resp.status == 200, tapped
    history = await api.poll("u1", after=tapped["seq"] - 1)
    assert history["messages"][0]["text"] == "已解决"


# -- long-poll ---------------------------------------------------------------------------------


async def test_long_poll_returns_at_once_when_messages_exist(api):
    sent = await api.send("u1", "你好")
    start = time.monotonic()
    body = await api.poll("u1", after=0, wait=20)
    assert time.monotonic() - start < 5
    assert body["conversation_id"] == sent["conversation_id"]
    seqs = [m["seq"] for m in body["messages"]]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2
    assert body["messages"][0]["sender"] == "citizen" and body["messages"][0]["text"] == "你好"
    # read back, a message says the same instant, zone included, as when it was sent (SQLite
    # returned naive times: an app in Beijing showed history eight hours off)
    reply = sent["replies"][0]
    [again] = [m for m in body["messages"] if m["message_id"] == reply["message_id"]]
    assert again["created_at"] == reply["created_at"]
    assert datetime.fromisoformat(again["created_at"]).utcoffset() == timedelta(0)

    later = await api.poll("u1", after=seqs[-1], wait=0)
    assert later == {"conversation_id": sent["conversation_id"], "messages": []}


async def test_poll_restarts_when_the_conversation_changed(api):
    sent = await api.send("u1", "你好")
    stale = await api.poll("u1", after=99, conversation_id="c-an-older-one")
    assert stale["conversation_id"] == sent["conversation_id"]
    assert [m["seq"] for m in stale["messages"]][:2] == [1, 2]
    same = await api.poll("u1", after=99, conversation_id=sent["conversation_id"])
    assert same["messages"] == []


async def test_long_poll_times_out_with_an_empty_list(aiohttp_client, settings, engine, redis):
    app = create_app(with_app_channel(settings, long_poll_max_s=0.5), adapters={"app": AppAdapter})
    api = Signed(await aiohttp_client(app))
    start = time.monotonic()
    body = await api.poll("nobody", wait=30)  # capped at long_poll_max_s
    assert 0.4 < time.monotonic() - start < 5
    assert body == {"conversation_id": None, "messages": []}


async def test_long_poll_wakes_on_a_message_sent_by_a_second_client(api, app_client):
    sent = await api.send("u1", "你好")
    last = sent["replies"][-1]["seq"]
    poll = asyncio.create_task(api.poll("u1", after=last, wait=20))
    await asyncio.sleep(0.3)
    assert not poll.done()

    async with aiohttp.ClientSession(str(app_client.make_url("/"))) as second:
        body = json.dumps({"user": "u1", "text": "谢谢"}, ensure_ascii=False).encode()
        headers = {**sign_request(APP_A, api.key, "POST", MESSAGES, body),
                   "Content-Type": "application/json"}
        async with second.post(MESSAGES, data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()

    start = time.monotonic()
    woken = await asyncio.wait_for(poll, 10)
    assert time.monotonic() - start < 5
    assert woken["messages"][0]["seq"] == last + 1
    assert woken["messages"][0]["text"] == "谢谢"


async def test_long_poll_wakes_on_a_message_from_the_bus(api, app_client):
    """A message produced elsewhere (an agent's reply) reaches the poll through push()."""
    sent = await api.send("u1", "你好")
    last = sent["replies"][-1]["seq"]
    poll = asyncio.create_task(api.poll("u1", after=last, wait=20))
    await asyncio.sleep(0.3)

    hub = app_client.server.app[HUB]
    stored = await hub.conversations.append(sent["conversation_id"], "app", [
        {"sender": "agent", "kind": "text", "action": "agent", "text": "我是工作人员小王"}])
    await hub.bus.publish("app", f"{APP_A}:u1", [m.to_outbound() for m in stored])

    woken = await asyncio.wait_for(poll, 10)
    assert [(m["seq"], m["sender"]) for m in woken["messages"]] == [(last + 1, "agent")]


async def test_shutdown_ends_long_polls_and_sockets(api, app_client):
    poll = asyncio.create_task(api.poll("u1", wait=20))
    path = f"{WS}?user=u2"
    async with app_client.ws_connect(path, headers=api.headers("GET", path)) as ws:
        await asyncio.sleep(0.3)
        start = time.monotonic()
        await app_client.server.app[HUB].adapters["app"].shutdown()
        assert (await asyncio.wait_for(poll, 5))["messages"] == []
        closed = await ws.receive(timeout=5)
        assert closed.type == aiohttp.WSMsgType.CLOSE
        assert closed.data == aiohttp.WSCloseCode.GOING_AWAY
        assert time.monotonic() - start < 5


# -- websocket ---------------------------------------------------------------------------------


async def test_websocket_round_trip(api, app_client):
    await api.send("u1", "你好")
    path = f"{WS}?user=u1&after=0"
    async with app_client.ws_connect(path, headers=api.headers("GET", path)) as ws:
        history = [await ws.receive_json(timeout=5) for _ in range(2)]
        assert [f["message"]["seq"] for f in history] == [1, 2]
        assert all(f["type"] == "message" for f in history)

        await ws.send_json({"type": "send", "text": "谢谢"})
        frames = [await ws.receive_json(timeout=10) for _ in range(2)]
        assert [f["message"]["seq"] for f in frames] == [3, 4]
        assert frames[0]["message"]["sender"] == "citizen"
        assert frames[0]["message"]["text"] == "谢谢"
        assert frames[1]["message"]["sender"] == "bot"

        await ws.send_json({"type": "send", "text": "x" * (MAX_TEXT + 1)})
        error = await ws.receive_json(timeout=5)
        assert error["type"] == "error" and error["error"] == "invalid"
        assert "text" in error["reason"]
        # a quick reply needs its label here too, as POST /messages says (it is what the
        # transcript shows; without it an agent saw an empty bubble)
        await ws.send_json({"type": "send", "payload": "human"})
        error = await ws.receive_json(timeout=5)
        assert error["type"] == "error" and "label" in error["reason"]

        # a message sent over HTTP (another device) arrives on the socket too
        await api.send("u1", "再见")
        frame = await ws.receive_json(timeout=10)
        assert frame["message"]["seq"] == 5 and frame["message"]["text"] == "再见"


async def test_websocket_sends_a_long_history_whole_without_waiting(api, app_client):
    # more than one page of stored messages (200 a read): all of them, in order, at once
    sent = await api.send("u1", "你好")
    hub = app_client.server.app[HUB]
    await hub.conversations.append(sent["conversation_id"], "app", [
        {"sender": "citizen", "kind": "text", "action": None, "text": f"第{n}条", "body": {}}
        for n in range(250)])
    path = f"{WS}?user=u1&after=0"
    async with app_client.ws_connect(path, headers=api.headers("GET", path)) as ws:
        frames = [await ws.receive_json(timeout=5) for _ in range(252)]
    seqs = [f["message"]["seq"] for f in frames]
    assert seqs == list(range(1, 253))


async def test_websocket_handshake_is_signed(api, app_client):
    resp = await app_client.get(f"{WS}?user=u1")
    await refused(resp, 401, "missing_signature")
    path = f"{WS}?user=u1"
    resp = await app_client.get(f"{WS}?user=u2", headers=api.headers("GET", path))
    await refused(resp, 401, "bad_signature")


# -- refusals ----------------------------------------------------------------------------------


async def test_unsigned_request_is_refused(app_client):
    resp = await app_client.post(MESSAGES, json={"user": "u1", "text": "你好"})
    body = await refused(resp, 401, "missing_signature")
    assert "X-Bangban-Signature" in body["message"]


async def test_unknown_app_is_refused(app_client):
    resp = await Signed(app_client, "no-such-app").post({"user": "u1", "text": "你好"})
    await refused(resp, 401, "unknown_app")


async def test_wrong_key_is_refused(app_client):
    resp = await Signed(app_client, APP_A, key="w" * 40).post({"user": "u1", "text": "你好"})
    await refused(resp, 401, "bad_signature")


async def test_body_altered_after_signing_is_refused(api, app_client):
    signed = json.dumps({"user": "u1", "text": "你好"}).encode()
    sent = json.dumps({"user": "u1", "text": "你好!"}).encode()
    resp = await app_client.post(MESSAGES, data=sent, headers=api.headers("POST", MESSAGES, signed))
    await refused(resp, 401, "bad_signature")


async def test_path_altered_after_signing_is_refused(api, app_client):
    headers = api.headers("GET", f"{MESSAGES}?user=u1&after=0")
    resp = await app_client.get(f"{MESSAGES}?user=u2&after=0", headers=headers)
    await refused(resp, 401, "bad_signature")
    resp = await app_client.get(f"{MESSAGES}?after=0&user=u1", headers=headers)  # reordered
    await refused(resp, 401, "bad_signature")


@pytest.mark.parametrize("skew", [-301, 301], ids=["stale", "future"])
async def test_timestamp_outside_the_window_is_refused(api, skew):
    resp = await api.post({"user": "u1", "text": "你好"}, timestamp=int(time.time()) + skew)
    body = await refused(resp, 401, "stale_timestamp")
    assert ("future" in body["message"]) == (skew > 0)


async def test_timestamp_inside_the_window_is_accepted(api):
    resp = await api.post({"user": "u1", "text": "你好"}, timestamp=int(time.time()) - 290)
    assert resp.status == 200, await resp.text()


async def test_reused_nonce_is_refused(api):
    first = await api.post({"user": "u1", "text": "你好"}, nonce="n" * 16 + "-reused-1")
    assert first.status == 200, await first.text()
    again = await api.post({"user": "u1", "text": "换个问题"}, nonce="n" * 16 + "-reused-1")
    await refused(again, 401, "nonce_reused")


@pytest.mark.parametrize("nonce", ["short", "x" * 65, "has space in it ok?"])
async def test_malformed_nonce_is_refused(api, nonce):
    resp = await api.post({"user": "u1", "text": "你好"}, nonce=nonce)
    await refused(resp, 401, "bad_nonce")


async def test_oversized_body_is_413(api):
    resp = await api.post({"user": "u1", "text": "你好", "pad": "x" * 40_000})
    body = await refused(resp, 413, "body_too_large")
    assert str(32 * 1024) in body["message"]


@pytest.mark.parametrize("path", [f"{MESSAGES}?user=u1", "/api/app/v1/attachments/a" + "0" * 23])
async def test_an_oversized_body_on_a_read_is_413_too(api, path):
    # the body is signed, so it is read (up to the limit) even on a GET, as OpenAPI documents
    body = b"x" * 40_000
    resp = await api.client.get(URL(path, encoded=True), data=body,
                                headers=api.headers("GET", path, body))
    await refused(resp, 413, "body_too_large")


async def test_a_message_not_sent_as_json_is_415(api, app_client):
    body = json.dumps({"user": "u1", "text": "你好"}, ensure_ascii=False).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded"):
        resp = await app_client.post(MESSAGES, data=body, headers={
            **api.headers("POST", MESSAGES, body), "Content-Type": ctype})
        refused_body = await refused(resp, 415, "unsupported_media_type")
        assert "application/json" in refused_body["message"] and ctype in refused_body["message"]


async def test_malformed_json_is_400(api):
    resp = await api.post(b'{"user": "u1", "text": ')
    body = await refused(resp, 400, "malformed_json")
    assert "JSON" in body["message"]


async def test_missing_fields_are_422_with_the_field(api):
    resp = await api.post({"user": "u1"})
    body = await refused(resp, 422, "invalid")
    assert body["problems"] == [{"field": "text", "reason": "Field required"}]
    resp = await api.post({"user": "u1", "payload": "resolved:yes"})
    body = await refused(resp, 422, "invalid")
    assert [p["field"] for p in body["problems"]] == ["label"]


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"user": "u1", "text": "  \n "}, "text", "visible character"),
    ({"user": "u1", "text": "你好\x07"}, "text", "control characters"),
    ({"user": "张三", "text": "你好"}, "user", "1-64 characters"),
])
async def test_a_refused_pattern_is_said_in_words(api, body, field, reason):
    # not pydantic's "String should match pattern '^[^\\x00-…'"
    resp = await api.post(body)
    refused_body = await refused(resp, 422, "invalid")
    [problem] = refused_body["problems"]
    assert problem["field"] == field and reason in problem["reason"]
    assert "pattern" not in refused_body["message"] and "\\x" not in refused_body["message"]


async def test_too_long_text_is_422(api):
    resp = await api.post({"user": "u1", "text": "问" * (MAX_TEXT + 1)})
    body = await refused(resp, 422, "invalid")
    assert body["problems"][0]["field"] == "text"
    assert str(MAX_TEXT) in body["message"]


@pytest.mark.parametrize("query", ["after=0", "user=u1&after=-1", "user=u1&wait=nan",
                                   "user=a%3Ab", "user=u1&user=u2", "user=u1&afer=3"])
async def test_bad_query_is_422(api, query):
    resp = await api.get(f"{MESSAGES}?{query}")
    body = await refused(resp, 422, "invalid")
    assert body["message"].startswith("query.")


async def test_rate_limit_is_429(aiohttp_client, settings, engine, redis):
    app = create_app(with_app_channel(settings, rate_limit={"messages": 2, "window_s": 60}),
                     adapters={"app": AppAdapter})
    api = Signed(await aiohttp_client(app))
    for text in ("你好", "谢谢"):
        await api.send("u1", text)
    resp = await api.post({"user": "u1", "text": "再见"})
    await refused(resp, 429, "rate_limited")
    assert 0 < int(resp.headers["Retry-After"]) <= 60
    await api.send("u2", "你好")  # per user


async def test_a_retry_over_the_rate_limit_still_gets_its_answer(aiohttp_client, settings,
                                                                   engine, redis):
    app = create_app(with_app_channel(settings, rate_limit={"messages": 2, "window_s": 60}),
                     adapters={"app": AppAdapter})
    api = Signed(await aiohttp_client(app))
    first = await (await api.post({"user": "u1", "text": "个税清单怎么开", "msg_id": "m-1"})).json()
    await api.send("u1", "谢谢")
    # the app lost the first answer and sends the same message again: the limit is reached,
    # but this is no new message, so it is told so (as under the limit) and reads the answer
    resp = await api.post({"user": "u1", "text": "个税清单怎么开", "msg_id": "m-1"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["duplicate"] is True
    history = await api.poll("u1", after=first["seq"])
    assert history["messages"][0]["text"] == first["replies"][0]["text"]
    # a new message, or one whose id was never taken, is still refused
    await refused(await api.post({"user": "u1", "text": "再见", "msg_id": "m-3"}), 429,
                  "rate_limited")


def test_short_keys_are_a_config_error(settings):
    bad = settings.model_copy(update={"channels": {"app": {"apps": {"a": "too-short"}}}})
    with pytest.raises(ConfigError, match=r"channels\.app\.apps\.a"):
        create_app(bad, adapters={"app": AppAdapter})


# -- isolation between apps --------------------------------------------------------------------


async def test_two_apps_cannot_see_each_others_users(api, app_client):
    other = Signed(app_client, APP_B)
    mine = await api.send("u1", "你好")
    assert await other.poll("u1") == {"conversation_id": None, "messages": []}

    theirs = await other.send("u1", "谢谢")
    assert theirs["conversation_id"] != mine["conversation_id"]
    a, b = await api.poll("u1"), await other.poll("u1")
    assert {m["conversation_id"] for m in a["messages"]} == {mine["conversation_id"]}
    assert {m["conversation_id"] for m in b["messages"]} == {theirs["conversation_id"]}
    assert [m["text"] for m in b["messages"] if m["sender"] == "citizen"] == ["谢谢"]
