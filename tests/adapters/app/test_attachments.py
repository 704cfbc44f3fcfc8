"""Pictures and voice messages on the 随申办 APP API, and its live human-help status frames.

The upload's body is the raw file, signed like any body (the canonical string holds the SHA-256
of exactly those bytes). Real server, database, Redis and bus.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from sqlalchemy import func, select
from yarl import URL

from adapters.app import AppAdapter
from adapters.app.signing import canonical_string
from core.app import create_app
from core.appkeys import ENGINE, HUB
from core.db.schema import attachments
from core.dialog.models import Attachment, Outbound, QueueStatus

from ...core.test_attachments import HTML, PNG, SVG, png, wav
from .conftest import APP_B, MESSAGES, Signed, with_app_channel

UPLOADS = "/api/app/v1/attachments"
WS = "/api/app/v1/ws"


@pytest.fixture
async def api(aiohttp_client, settings, engine, redis) -> Signed:
    """The APP channel with small attachment limits (4 KiB pictures, 2 KiB voice)."""
    s = with_app_channel(settings)
    s = s.model_copy(update={"handoff": s.handoff.model_copy(
        update={"max_image_bytes": 4096, "max_voice_bytes": 2048})})
    return Signed(await aiohttp_client(create_app(s, adapters={"app": AppAdapter})))


async def put(api: Signed, data: bytes, query: str = "user=u1", *, content_type="image/png",
              sign_body: bytes | None = None):
    path = f"{UPLOADS}?{query}"
    headers = {**api.headers("POST", path, data if sign_body is None else sign_body),
               "Content-Type": content_type}
    return await api.client.post(URL(path, encoded=True), data=data, headers=headers)


async def stored(api: Signed) -> int:
    async with api.client.server.app[ENGINE].connect() as conn:
        return (await conn.execute(select(func.count()).select_from(attachments))).scalar()


async def test_upload_is_sent_and_served_to_the_app_only(api):
    resp = await put(api, PNG, "user=u1&name=%E6%88%AA%E5%9B%BE.html&msg_id=pic-1")
    body = await resp.json()
    assert resp.status == 200, body
    att = body["attachment"]
    assert att["url"].startswith(f"{UPLOADS}/a") and att["kind"] == "image"
    assert (att["mime"], att["size"], att["name"]) == ("image/png", len(PNG), "截图.png")
    assert body["seq"] == 1 and body["duplicate"] is False
    assert body["replies"] and "转人工帮办" in [q["label"] for q in body["replies"][0]["quick_replies"]]

    # the conversation has it, with the app's own download URL
    history = await api.poll("u1")
    mine = history["messages"][0]
    assert mine["sender"] == "citizen" and mine["attachments"] == [att]

    resp = await api.get(att["url"])
    assert resp.status == 200 and await resp.read() == PNG
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "filename*=UTF-8''%E6%88%AA%E5%9B%BE.png" in resp.headers["Content-Disposition"]

    # another app, an unsigned request, a wrong id: all the same 404 / 401
    assert (await Signed(api.client, APP_B).get(att["url"])).status == 404
    assert (await api.client.get(att["url"])).status == 401
    assert (await api.get(f"{UPLOADS}/a{'0' * 23}")).status == 404
    assert (await api.get(att["url"] + "?user=u1")).status == 422

    # a retry with the same msg_id is answered as a duplicate, with the first upload: no second
    # copy is stored that no message would ever show
    async with api.client.app[HUB].engine.connect() as db:
        stored = (await db.execute(select(func.count()).select_from(attachments))).scalar()
    again = await (await put(api, PNG, "user=u1&name=x.png&msg_id=pic-1")).json()
    assert again["duplicate"] is True and again["replies"] == []
    assert again["attachment"] == att
    async with api.client.app[HUB].engine.connect() as db:
        assert (await db.execute(select(func.count()).select_from(attachments))).scalar() == stored

    # a voice message
    resp = await put(api, wav(300), "user=u1", content_type="audio/amr")
    voice = await resp.json()
    assert resp.status == 200 and voice["attachment"]["kind"] == "voice"
    assert voice["attachment"]["mime"] == "audio/wav"


async def test_signature_covers_the_file(api):
    # signed for other bytes: the file was altered on the way
    resp = await put(api, PNG, sign_body=png(2, 2))
    body = await resp.json()
    assert resp.status == 401 and body["error"] == "bad_signature", body
    # the canonical string's last line is simply the file's SHA-256
    line = canonical_string("POST", f"{UPLOADS}?user=u1", "1", "n" * 16, PNG).split("\n")[-1]
    assert line == hashlib.sha256(PNG).hexdigest()
    # not signed at all, or by an unknown app
    resp = await api.client.post(f"{UPLOADS}?user=u1", data=PNG)
    assert resp.status == 401
    resp = await put(Signed(api.client, "no-such-app"), PNG)
    assert resp.status == 401 and (await resp.json())["error"] == "unknown_app"
    assert await stored(api) == 0


async def test_refusals_store_nothing(api):
    for data in (HTML, SVG, b"GIF8" + b"\x00" * 20):
        resp = await put(api, data, content_type="image/png")
        body = await resp.json()
        assert resp.status == 415 and body["error"] == "unsupported_media_type", body
        assert "PNG" in body["message"]
    resp = await put(api, png(80, 80) + b"\x00" * 5000)
    body = await resp.json()
    assert resp.status == 413 and "4096" in body["message"], body
    resp = await put(api, wav(1500), content_type="audio/wav")
    body = await resp.json()
    assert resp.status == 413 and "2048" in body["message"], body
    resp = await put(api, PNG, "user=a:b")
    assert resp.status == 422
    resp = await put(api, PNG, "user=u1&nmae=x")
    assert resp.status == 422
    assert await stored(api) == 0
    assert (await api.poll("u1"))["messages"] == []


async def test_websocket_gets_status_frames_and_agent_pictures(api):
    await api.send("u1", "你好")
    path = f"{WS}?user=u1&after=2"
    hub = api.client.server.app[HUB]
    conv = (await hub.conversations.current("app", "gov-app:u1")).id
    async with api.client.ws_connect(path, headers=api.headers("GET", path)) as ws:
        await asyncio.sleep(0.2)  # the socket is registered
        status = Outbound(conversation_id=conv, seq=0, sender="system", action="system",
                          text="您前面还有1位", queue=QueueStatus(
                              state="waiting", unit="U1", position=2, wait_s=90, can_cancel=True))
        await hub.bus.publish("app", "gov-app:u1", [status])
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "status" and frame["message"]["queue"]["position"] == 2
        # another user of the app gets nothing
        await hub.dispatch("app", "gov-app:u2", [status])

        # a stored agent message with a picture: read from SQL, URL rewritten for the app
        store = hub.adapters["app"].attachments
        pic = await store.save(conv, "agent", "staff-1", PNG, name="示意.png")
        await hub.notifier.tell(conv, "请参考这张图", sender="agent", action="agent", body={
            "sender_name": "李华", "attachments": [pic.to_attachment().model_dump(),
                                                  Attachment(kind="image", url="https://x.example/a.png",
                                                             mime="image/png", size=1).model_dump()]})
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "message", frame
        message = frame["message"]
        assert message["sender_name"] == "李华" and message["seq"] == 3
        assert [a["url"] for a in message["attachments"]] == [f"{UPLOADS}/{pic.id}"]
        resp = await api.get(message["attachments"][0]["url"])
        assert resp.status == 200 and await resp.read() == PNG
