"""The web channel's pictures and voice messages, and human-help status frames, against the
real server, database and Redis: upload, send over the socket, download by the owner only."""

from __future__ import annotations

import re

import aiohttp
import pytest
from sqlalchemy import func, select

from adapters.web import WebAdapter
from core.appkeys import ENGINE, HUB
from core.db.schema import attachments
from core.dialog.models import Attachment, Outbound, QueueStatus

from ...core.test_attachments import HTML, PNG, SVG, png, wav
from .conftest import error_frame, messages, recv, silent

WS = "/channels/web/ws"
UPLOAD = "/channels/web/upload"
COOKIE = "bangban_web"
EMBEDDER = "https://zwdt.example.gov.cn"


@pytest.fixture
def start(aiohttp_client, settings, redis, seeded):
    """A running app with only the web channel and small attachment limits (4 KiB pictures,
    2 KiB voice), so the limits are cheap to cross."""
    from core.app import create_app

    async def make(**web):
        s = settings.model_copy(update={
            "handoff": settings.handoff.model_copy(update={"max_image_bytes": 4096,
                                                           "max_voice_bytes": 2048}),
            "channels": {"web": {"allowed_origins": [EMBEDDER], **web}}})
        return await aiohttp_client(create_app(s, adapters={"web": WebAdapter}))

    return make


async def connect(client, cookie: str | None = None, **params):
    client.session.cookie_jar.clear()
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    ws = await client.ws_connect(WS, headers=headers, params=params)
    hello = await recv(ws)
    assert hello["type"] == "hello", hello
    cookie = cookie or {c.key: c.value for c in client.session.cookie_jar}[COOKIE]
    client.session.cookie_jar.clear()
    return ws, hello, cookie


def form(data: bytes, name: str = "截图.png", field: str = "file",
         content_type: str = "image/png") -> aiohttp.FormData:
    fd = aiohttp.FormData()
    fd.add_field(field, data, filename=name, content_type=content_type)
    return fd


async def upload(client, data: bytes, *, cookie: str | None = None,
                 headers: dict[str, str] | None = None, **kw):
    client.session.cookie_jar.clear()
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = f"{COOKIE}={cookie}"
    return await client.post(UPLOAD, data=form(data, **kw), headers=h)


async def download(client, url: str, *, cookie: str | None = None, **headers: str):
    client.session.cookie_jar.clear()
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    return await client.get(url, headers=headers)


async def stored_count(client) -> int:
    async with client.server.app[ENGINE].connect() as conn:
        return (await conn.execute(select(func.count()).select_from(attachments))).scalar()


async def test_upload_send_and_download_by_the_owner_only(start):
    client = await start()
    ws, hello, mine = await connect(client)
    assert hello["upload"] == {"max_image_bytes": 4096, "max_voice_bytes": 2048}
    other_ws, other_hello, theirs = await connect(client)

    resp = await upload(client, PNG, cookie=mine, name="C:\\截图 1.html")
    body = await resp.json()
    assert resp.status == 201, body
    att_id, att = body["id"], body["attachment"]
    assert att == {"kind": "image", "url": f"/attachments/{att_id}", "mime": "image/png",
                   "size": len(PNG), "name": "截图 1.png"}

    resp = await download(client, att["url"], cookie=mine)
    assert resp.status == 200 and await resp.read() == PNG
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith("inline; filename=")
    assert "filename*=UTF-8''%E6%88%AA%E5%9B%BE%201.png" in resp.headers["Content-Disposition"]
    assert resp.headers["Cache-Control"].startswith("private")
    etag = resp.headers["ETag"]
    again = await download(client, att["url"], cookie=mine, **{"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    # the widget's token stands for the cookie (pages of other origins)
    resp = await download(client, att["url"], **{"X-Bangban-Token": hello["token"]})
    assert resp.status == 200

    # nobody else: another citizen, no identity, a forged cookie, a token as a cookie
    for cookie, headers in ((theirs, {}), (None, {}), (mine[:-2] + "xx", {}),
                            (hello["token"], {}), (None, {"X-Bangban-Token": mine})):
        resp = await download(client, att["url"], cookie=cookie, **headers)
        assert resp.status == 404, (cookie, headers)
    assert (await download(client, "/attachments/a" + "0" * 23, cookie=mine)).status == 404
    assert (await download(client, "/attachments/..%2f..%2fetc", cookie=mine)).status == 404

    # sending it: a message frame naming the id; the stored message carries the attachment
    await ws.send_json({"type": "message", "attachments": [att_id]})
    assert (await recv(ws))["type"] == "typing"
    sent, reply = await messages(ws, 2)
    assert (sent["sender"], sent["seq"], sent["text"]) == ("citizen", 1, "")
    assert sent["attachments"] == [att]
    assert reply["sender"] == "bot" and "转人工帮办" in [q["label"] for q in reply["quick_replies"]]
    await silent(ws)

    # a voice message with words
    resp = await upload(client, wav(300), cookie=mine, name="语音.amr", content_type="audio/amr")
    voice = await resp.json()
    assert resp.status == 201 and voice["attachment"]["mime"] == "audio/wav"
    await ws.send_json({"type": "message", "text": "我说不清楚，听语音", "attachments": [voice["id"]]})
    sent, _ = await messages(ws, 2)
    assert sent["text"] == "我说不清楚，听语音"
    assert [a["kind"] for a in sent["attachments"]] == ["voice"]

    # another citizen cannot send (nor so learn about) someone else's upload
    await other_ws.send_json({"type": "message", "attachments": [att_id]})
    assert (await error_frame(other_ws))["code"] == "bad_attachment"
    for bad in ("a", [], [5], ["../x"], [att_id, att_id], [att_id] * 5, {"id": att_id}):
        await ws.send_json({"type": "message", "attachments": bad})
        assert (await error_frame(ws))["code"] == "malformed", bad

    # a reconnect replays the pictures with the history
    await ws.close()
    ws, hello, _ = await connect(client, cookie=mine)
    assert hello["history"][0]["attachments"] == [att]
    assert other_hello["history"] == []
    for sock in (ws, other_ws):
        await sock.close()


async def test_refused_uploads_are_explained_and_store_nothing(start):
    client = await start()
    _, _, mine = await connect(client)

    for data, name in ((HTML, "截图.png"), (SVG, "logo.svg"), (b"%PDF-1.7\n" + b"0" * 40, "a.pdf")):
        resp = await upload(client, data, cookie=mine, name=name)
        body = await resp.json()
        assert resp.status == 415, body
        assert body["error"] == "unsupported_media_type" and "PNG" in body["message"]

    big = png(80, 80) + b"\x00" * 5000
    resp = await upload(client, big, cookie=mine)
    body = await resp.json()
    assert resp.status == 413 and body["error"] == "too_large"
    assert "图片" in body["message"] and "4 KB" in body["message"]
    resp = await upload(client, wav(1200), cookie=mine, name="v.wav")
    assert resp.status == 413 and "语音" in (await resp.json())["message"]
    assert "2 KB" in (await resp.json())["message"]

    # no Content-Length (chunked): refused while reading, as soon as it is over the limit
    async def stream():
        yield png(80, 80)
        for _ in range(200):
            yield b"\x00" * 1024

    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(stream(), {"Content-Type": "image/png"})
    part.set_content_disposition("form-data", name="file", filename="big.png")
    client.session.cookie_jar.clear()
    try:
        resp = await client.post(UPLOAD, data=writer, headers={"Cookie": f"{COOKIE}={mine}"})
    except aiohttp.ClientError:
        pass  # the server may close before the client has finished sending: also a refusal
    else:
        assert resp.status == 413, await resp.text()

    # not an upload at all, the wrong field, nobody
    client.session.cookie_jar.clear()
    resp = await client.post(UPLOAD, data=PNG, headers={"Cookie": f"{COOKIE}={mine}",
                                                         "Content-Type": "image/png"})
    assert resp.status == 400
    resp = await upload(client, PNG, cookie=mine, field="image")
    assert resp.status == 400
    resp = await upload(client, PNG)
    assert resp.status == 401 and re.search(r"[\u4e00-\u9fff]", (await resp.json())["message"])
    assert await stored_count(client) == 0


async def test_other_origins_use_the_token_with_cors(start):
    client = await start()
    _, hello, mine = await connect(client)
    token = hello["token"]

    resp = await client.options(UPLOAD, headers={
        "Origin": EMBEDDER, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-bangban-token"})
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == EMBEDDER
    assert "X-Bangban-Token" in resp.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in resp.headers
    resp = await client.options(UPLOAD, headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "POST"})
    assert resp.status == 403

    resp = await upload(client, PNG, headers={"Origin": EMBEDDER, "X-Bangban-Token": token})
    body = await resp.json()
    assert resp.status == 201, body
    assert resp.headers["Access-Control-Allow-Origin"] == EMBEDDER
    resp = await download(client, body["attachment"]["url"], Origin=EMBEDDER,
                          **{"X-Bangban-Token": token})
    assert resp.status == 200 and await resp.read() == PNG
    assert resp.headers["Access-Control-Allow-Origin"] == EMBEDDER

    # another site cannot upload in the citizen's name, even with their cookie or token
    for headers in ({"Origin": "https://evil.example"},
                    {"Origin": "https://evil.example", "X-Bangban-Token": token}):
        resp = await upload(client, PNG, cookie=mine, headers=headers)
        assert resp.status == 403
    resp = await download(client, body["attachment"]["url"], cookie=mine,
                          Origin="https://evil.example")
    assert resp.status == 403
    assert await stored_count(client) == 1


async def test_status_frames_and_rendered_parts(start):
    client = await start()
    ws, _, _ = await connect(client)
    await ws.send_json({"type": "message", "text": "你好"})
    await messages(ws, 2)
    hub = client.server.app[HUB]
    [uid] = list(hub.adapters["web"].connections)
    conv = (await hub.conversations.current("web", uid)).id

    def status(position: int, **kw) -> Outbound:
        return Outbound(conversation_id=conv, seq=0, sender="system", action="system",
                        text=f"您前面还有{position - 1}位", queue=QueueStatus(
                            state="waiting", unit="U1", unit_name="市人社局", position=position,
                            wait_s=60 * position, can_cancel=True), **kw)

    # transient updates are delivered each time (never de-duplicated as "seq 0 already sent")
    await hub.dispatch("web", uid, [status(3)])
    await hub.dispatch("web", uid, [status(2)])
    for position in (3, 2):
        frame = await recv(ws)
        assert frame["type"] == "status", frame
        assert frame["message"]["queue"]["position"] == position
        assert frame["message"]["seq"] == 0
    await hub.bus.publish("web", uid, [status(1)])  # from another process
    frame = await recv(ws)
    assert frame["type"] == "status" and frame["message"]["queue"]["position"] == 1
    # an older conversation's status, or a transient without one, is not shown
    await hub.dispatch("web", uid, [status(1).model_copy(update={"conversation_id": "c0"}),
                                    status(1).model_copy(update={"queue": None})])
    await silent(ws)

    # an agent's message: the name comes through; only our own attachment URLs do
    agent = Outbound(conversation_id=conv, seq=3, sender="agent", action="agent",
                     text="<b>您好</b>", sender_name="李华", attachments=[
                         Attachment(kind="image", url="/attachments/a" + "1" * 23,
                                    mime="image/png", size=10),
                         Attachment(kind="image", url="https://evil.example/x.png",
                                    mime="image/png", size=10),
                         Attachment(kind="image", url="javascript:alert(1)", mime="image/png",
                                    size=10)])
    await hub.dispatch("web", uid, [agent])
    [shown] = await messages(ws, 1)
    assert shown["sender_name"] == "李华" and shown["text"] == "<b>您好</b>"
    assert [a["url"] for a in shown["attachments"]] == ["/attachments/a" + "1" * 23]
    await ws.close()


#: multipart bodies a browser never sends: garbage, a part header that cannot be parsed
BROKEN_MULTIPART = [
    b"garbage",
    b"--zz\r\nContent-Disposition form-data\r\n\r\nx\r\n--zz--\r\n",
]


@pytest.mark.parametrize("body", BROKEN_MULTIPART)
async def test_a_multipart_body_that_cannot_be_read_is_400_and_stores_nothing(start, body):
    client = await start()
    _, _, mine = await connect(client)
    client.session.cookie_jar.clear()
    resp = await client.post(UPLOAD, data=body, headers={
        "Cookie": f"{COOKIE}={mine}", "Content-Type": "multipart/form-data; boundary=zz"})
    assert resp.status == 400, await resp.text()
    assert re.search(r"[\u4e00-\u9fff]", (await resp.json())["message"])
    assert await stored_count(client) == 0
