"""The callback URL on a real server: the platforms' published requests, the same re-signed,
every refusal (with its reason, and nothing stored), rate limits, duplicates, events, media."""

from __future__ import annotations

import json
import time

from adapters.wechat.crypto import AccountCrypto, signature
from core.appkeys import HUB

from . import vectors as v
from .conftest import PLAIN_TOKEN, Citizen, query, text_xml
from .test_protocol import BILLION_LAUGHS, EXTERNAL_ENTITY

OA_OPENID = "oyORnuP8q7ou2gfYjqLzSIWZf0rs"


def oa_sample_body() -> bytes:
    return v.OA_BODY_TEMPLATE.replace("%ENCRYPT%", v.OA_ENCRYPT).encode()


async def refused(resp, status: int, code: str) -> str:
    body = await resp.json()
    assert (resp.status, body["error"]) == (status, code), body
    assert body["message"]
    return body["message"]


async def test_the_published_requests_and_their_refusals(make_client):
    client, _ = await make_client()
    hub = client.app[HUB]

    # GET URL verification (the Mini Program sample), then refusals
    resp = await client.get("/channels/wechat/mp", params=v.MP_GET)
    assert (resp.status, await resp.text()) == (200, v.MP_GET["echostr"])
    await refused(await client.get("/channels/wechat/mp", params={
        **v.MP_GET, "signature": "0" * 40}), 401, "bad_signature")
    await refused(await client.get("/channels/wechat/mp", params={
        "echostr": "1"}), 400, "missing_signature")
    await refused(await client.get("/channels/wechat/oa-live", params={
        **query(v.OA_TOKEN), "echostr": "<script>"}), 400, "bad_echostr")
    fresh = {**query(v.OA_TOKEN), "echostr": "8123"}
    assert await (await client.get("/channels/wechat/oa-live", params=fresh)).text() == "8123"
    assert (await client.get("/channels/wechat/nobody", params=v.MP_GET)).status == 404

    # plaintext JSON push (Mini Program): an event we do not act on gets "success"
    resp = await client.post("/channels/wechat/mp", params=v.MP_PLAIN_POST,
                             data=v.MP_PLAIN_BODY.encode())
    assert (resp.status, await resp.text()) == (200, "success")
    await refused(await client.post("/channels/wechat/mp", data=v.MP_PLAIN_BODY.encode(), params={
        **v.MP_PLAIN_POST, "signature": v.MP_GET["signature"]}), 401, "bad_signature")

    # safe-mode JSON push (Mini Program): msg_signature over Encrypt, then decrypted
    safe_body = json.dumps({"ToUserName": "gh_97417a04a28d", "Encrypt": v.MP_SAFE_ENCRYPT})
    resp = await client.post("/channels/wechat/mp-safe", params=v.MP_SAFE_POST,
                             data=safe_body.encode())
    assert (resp.status, await resp.text()) == (200, "success")
    tampered = json.dumps({"ToUserName": "gh_97417a04a28d",
                           "Encrypt": v.MP_SAFE_ENCRYPT.replace("+", "/", 1)})
    await refused(await client.post("/channels/wechat/mp-safe", params=v.MP_SAFE_POST,
                                    data=tampered.encode()), 401, "bad_signature")
    # re-signed with a fresh timestamp: still accepted
    resp = await client.post("/channels/wechat/mp-safe", data=safe_body.encode(), params=query(
        v.MP_TOKEN, encrypt=v.MP_SAFE_ENCRYPT, openid=v.MP_SAFE_POST["openid"]))
    assert (resp.status, await resp.text()) == (200, "success")
    # the wrong mode for the account
    await refused(await client.post("/channels/wechat/mp", params=v.MP_SAFE_POST,
                                    data=safe_body.encode()), 400, "no_aes_key")
    await refused(await client.post("/channels/wechat/mp-safe", params=v.MP_PLAIN_POST,
                                    data=v.MP_PLAIN_BODY.encode()), 400, "not_encrypted")

    # the Official Account sample (兼容模式: plaintext fields beside Encrypt; only Encrypt counts)
    sample_q = {"timestamp": v.OA_TIMESTAMP, "nonce": v.OA_NONCE, "signature": v.OA_SIGNATURE,
                "msg_signature": v.OA_MSG_SIGNATURE, "encrypt_type": "aes"}
    reason = await refused(await client.post("/channels/wechat/oa-live", params=sample_q,
                                             data=oa_sample_body()), 401, "stale_timestamp")
    assert "old" in reason and "300 s" in reason
    citizen = Citizen(client, "oa-live", OA_OPENID)
    resp = await client.post("/channels/wechat/oa-live", data=oa_sample_body(),
                             params=query(v.OA_TOKEN, encrypt=v.OA_ENCRYPT))
    assert resp.status == 200
    answer = citizen.read_reply(await resp.text())  # decrypts and checks the envelope
    assert answer
    _, history = await hub.history("wechat", f"oa-live:{OA_OPENID}")
    assert [m.text for m in history if m.sender == "citizen"] == ["abcdteT"]
    # the sample as published (replay window off): the same MsgId of the same AppID, so the
    # platform's retry — it gets the same answer again, and nothing new is stored
    resp = await client.post("/channels/wechat/oa", params=sample_q, data=oa_sample_body())
    assert resp.status == 200 and resp.headers["X-Bangban-Dropped"].startswith("duplicate")
    assert Citizen(client, "oa", OA_OPENID).read_reply(await resp.text()) == answer
    assert len((await hub.history("wechat", f"oa-live:{OA_OPENID}"))[1]) == len(history)
    assert (await hub.history("wechat", f"oa:{OA_OPENID}"))[1] == []
    # a signature for another timestamp, a msg_signature of another message
    bad_q = {**sample_q, "msg_signature": signature(v.OA_TOKEN, v.OA_TIMESTAMP, v.OA_NONCE, "x")}
    await refused(await client.post("/channels/wechat/oa", params=bad_q, data=oa_sample_body()),
                  401, "bad_signature")
    # encrypted for another AppID, correctly signed: refused after decryption
    other = AccountCrypto(v.OA_TOKEN, "wx0000000000000000", v.OA_AES_KEY).encrypt(
        text_xml("o1", "hi"))
    body = f"<xml><Encrypt><![CDATA[{other}]]></Encrypt></xml>".encode()
    reason = await refused(await client.post("/channels/wechat/oa-live", data=body, params=query(
        v.OA_TOKEN, encrypt=other)), 400, "bad_payload")
    assert "AppID" in reason


async def test_hostile_and_malformed_requests_get_4xx_and_store_nothing(make_client):
    client, _ = await make_client(max_body_bytes=4096)
    hub = client.app[HUB]
    plain = Citizen(client, "oa-plain", "oPlain", token=PLAIN_TOKEN, aes_key=None)
    safe = Citizen(client, "oa-live", "oSafe")
    for body in (BILLION_LAUGHS, EXTERNAL_ENTITY, b"<xml><Content>&x;</Content></xml>"):
        resp = await plain.post_xml(body.decode())
        await refused(resp, 400, "malformed")
        resp = await safe.post_xml(body.decode())  # inside the encryption, correctly signed
        await refused(resp, 400, "malformed")
    # a DTD in the envelope itself (before the signature can even be checked)
    resp = await client.post(safe.path, data=BILLION_LAUGHS, params=query(v.OA_TOKEN, encrypt="x"))
    await refused(resp, 400, "malformed")
    resp = await client.post(safe.path, data=b"<xml><ToUserName>gh</ToUserName></xml>",
                             params=query(v.OA_TOKEN, encrypt="x"))
    assert "Encrypt" in await refused(resp, 400, "malformed")
    # too large: refused before reading further, with the limit in the reason
    resp = await client.post(plain.path, data=b"<xml>" + b"x" * 5000 + b"</xml>",
                             params=query(PLAIN_TOKEN))
    assert "4096" in await refused(resp, 413, "body_too_large")
    # not a message, not XML, missing fields, bad timestamps
    for body in (b"", b"hello", b"<xml><MsgType>text</MsgType></xml>", b"\xff\xfe<xml/>"):
        resp = await client.post(plain.path, data=body, params=query(PLAIN_TOKEN))
        await refused(resp, 400, "malformed")
    for ts in (str(int(time.time()) - 1000), str(int(time.time()) + 1000)):
        resp = await plain.post_xml(text_xml("oPlain", "你好"), timestamp=ts)
        await refused(resp, 401, "stale_timestamp")
    resp = await client.post(plain.path, data=text_xml("oPlain", "你好").encode(),
                             params={**query(PLAIN_TOKEN), "timestamp": "soon"})
    await refused(resp, 400, "bad_timestamp")
    resp = await client.post(plain.path, data=text_xml("oPlain", "你好").encode(),
                             params={**query(PLAIN_TOKEN), "signature": "f" * 40})
    await refused(resp, 401, "bad_signature")
    for user in ("oa-plain:oPlain", "oa-live:oSafe"):
        assert (await hub.history("wechat", user)) == (None, [])
    # and the same account answers a well-formed message in plain XML
    assert await Citizen(client, "oa-plain", token=PLAIN_TOKEN, aes_key=None).say("你好")


async def test_rate_limit_events_media_and_duplicates(make_client, monkeypatch):
    monkeypatch.setattr("adapters.base.clock", lambda: 90.0)
    client, _ = await make_client(rate_limit_per_minute=4)
    hub = client.app[HUB]
    c = Citizen(client)
    user = f"oa-live:{c.openid}"

    welcome = await c.post_xml(
        f"<xml><ToUserName>gh_10f6c3c3ac5a</ToUserName><FromUserName>{c.openid}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType>"
        "<Event>subscribe</Event></xml>")
    assert "小申" in c.read_reply(await welcome.text())
    picture = await c.post_xml(
        f"<xml><ToUserName>gh_10f6c3c3ac5a</ToUserName><FromUserName>{c.openid}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>image</MsgType>"
        "<PicUrl>http://mmbiz.example/pic</PicUrl><MediaId>media-1</MediaId>"
        "<MsgId>9001</MsgId></xml>")
    assert "文字" in c.read_reply(await picture.text())
    _, history = await hub.history("wechat", user)
    image = next(m for m in history if m.sender == "citizen" and m.attachments)
    assert image.attachments[0].url == "wechat-media:oa-live/media-1"
    # the platform retries a message we answered: the same reply, nothing new stored
    first = await c.say("你好", msg_id=777)
    assert first and await c.say("你好", msg_id=777) == first
    assert len((await hub.history("wechat", user))[1]) == len(history) + 2
    # unsupported media: a notice, nothing stored
    video = await c.post_xml(
        f"<xml><ToUserName>gh_10f6c3c3ac5a</ToUserName><FromUserName>{c.openid}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>video</MsgType>"
        "<MediaId>m</MediaId><MsgId>9002</MsgId></xml>")
    assert "文字" in c.read_reply(await video.text())
    # the limit (4 a minute; the retry above counted): a notice once, then silence
    stored = len((await hub.history("wechat", user))[1])
    resp = await c.post_xml(text_xml(c.openid, "再问一次"))
    assert resp.headers["X-Bangban-Dropped"].startswith("rate_limited")
    assert "频繁" in c.read_reply(await resp.text())
    resp = await c.post_xml(text_xml(c.openid, "还在吗"))
    assert await resp.text() == "success" and "rate_limited" in resp.headers["X-Bangban-Dropped"]
    assert len((await hub.history("wechat", user))[1]) == stored


async def test_an_unconfigured_channel_starts_without_routes(engine, redis, settings,
                                                             aiohttp_client):
    from adapters.wechat import WeChatAdapter
    from core.app import create_app

    app = create_app(settings, adapters={"wechat": WeChatAdapter})  # no channels.wechat at all
    client = await aiohttp_client(app)
    assert client.app[HUB].adapters["wechat"].config.accounts == []
    assert (await client.get("/healthz")).status == 200
    assert (await client.post("/channels/wechat/x", data=b"<xml/>")).status == 404
