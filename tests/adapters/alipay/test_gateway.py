"""The gateway URL on the real application, database and Redis: Alipay's real notifications
pass, forged and altered ones get 4xx, verifygw is answered signed, messages reach the core once,
and every refusal (size, form, XML, time, rate) says why — with nothing stored."""

from __future__ import annotations

import re

import pytest

from adapters.alipay import AlipayAdapter
from adapters.alipay.gateway import SERVICE_CHECK
from adapters.alipay.signing import public_key_base64, rsa2_verify
from core.app import create_app
from core.appkeys import HUB

from . import vectors
from .conftest import (
    APP_ID, FORM, PATH, app_config, form, message_xml, notification, now_ms, private_pem,
    signed_params, with_alipay,
)

PAY_APP, MARKET_APP = "2019073166072302", "2017122801303261"


@pytest.fixture
async def gw(aiohttp_client, settings, engine, redis, keys):
    """The app with three Alipay apps: ours, and the two whose real notifications we hold."""
    config = app_config(keys, rate_limit_per_minute=3)
    config["apps"] += [
        {"name": "pay", "app_id": PAY_APP, "alipay_public_key": vectors.PUBLIC_KEY_V1,
         "app_private_key": private_pem(keys.app)},
        {"name": "market", "app_id": MARKET_APP, "alipay_public_key": vectors.PUBLIC_KEY_V2,
         "app_private_key": private_pem(keys.app)},
    ]
    # no human help here: its background sweep is not what these tests are about
    settings = settings.model_copy(update={"handoff": settings.handoff.model_copy(
        update={"enabled": False})})
    app = create_app(with_alipay(settings, config), adapters={"alipay": AlipayAdapter})
    return await aiohttp_client(app)


async def post(client, body: bytes, path: str = PATH, **kw):
    resp = await client.post(path, data=body, headers={**FORM, **kw.pop("headers", {})}, **kw)
    return resp.status, await resp.text(), resp


async def stored(client, user: str = "2088102122524333") -> list:
    return (await client.app[HUB].history("alipay", f"{APP_ID}:{user}"))[1]


async def test_alipays_real_notifications_pass_and_altered_copies_get_4xx(gw):
    # the payment notification (rule V1) and the service-market one (rule V2), as posted
    assert (await post(gw, form(vectors.PAYMENT_NOTIFY), "/channels/alipay/pay"))[:2] == \
        (200, "success")
    assert (await post(gw, form(vectors.GATEWAY_NOTIFY), "/channels/alipay/market"))[:2] == \
        (200, "success")

    altered = [
        ("market", {**vectors.GATEWAY_NOTIFY, "service_code": "58621634111"}, "bad_signature"),
        ("market", {**vectors.GATEWAY_NOTIFY, "sign": vectors.PAYMENT_NOTIFY["sign"]},
         "bad_signature"),
        ("pay", {**vectors.PAYMENT_NOTIFY, "sign_type": "RSA"}, "bad_signature"),
        ("market", {**vectors.GATEWAY_NOTIFY, "sign_type": "RSA"}, "bad_signature"),
        ("pay", {**vectors.PAYMENT_NOTIFY, "total_amount": "1000.00"}, "bad_signature"),
        # signed by Alipay for the other app: that app's key does not verify it
        ("market", vectors.PAYMENT_NOTIFY, "bad_signature"),
        ("pay", {k: v for k, v in vectors.PAYMENT_NOTIFY.items() if k != "sign"},
         "bad_signature"),
    ]
    for name, params, code in altered:
        status, text, _ = await post(gw, form(params), f"/channels/alipay/{name}")
        assert status == 401 and f'"error": "{code}"' in text, (name, status, text)


async def test_verifygw_is_answered_with_our_public_key_signed_by_our_private_key(gw, keys):
    check = ("<XML><AppId><![CDATA[2021000000000001]]></AppId><CreateTime>"
             f"{now_ms()}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             "<EventType><![CDATA[verifygw]]></EventType><ActionParam><![CDATA[]]></ActionParam>"
             "<AgreementId><![CDATA[]]></AgreementId><AccountNo><![CDATA[]]></AccountNo></XML>")
    for charset in ("GBK", "UTF-8"):
        body = notification(keys, check, service=SERVICE_CHECK, charset=charset)
        status, text, resp = await post(gw, body)
        assert status == 200 and resp.content_type == "text/xml"
        assert resp.charset.lower() == charset.lower()
        assert text.startswith(f'<?xml version="1.0" encoding="{charset}"?><alipay><response>')
        inner = re.search(r"<response>(.*)</response>", text).group(1)
        sign = re.search(r"<sign>(.*)</sign>", text).group(1)
        assert inner == (f"<success>true</success><biz_content>{public_key_base64(keys.app)}"
                         "</biz_content>")
        # what Alipay does with the answer: check it with the public key we uploaded
        assert rsa2_verify(inner, sign, keys.app.public_key(), charset)
        assert re.search(r"<sign_type>RSA2</sign_type></alipay>$", text)

    # a verifygw signed with someone else's key gets nothing but a 401
    forged = signed_params(keys.app, check, service=SERVICE_CHECK)
    status, text, _ = await post(gw, form(forged))
    assert status == 401 and "bad_signature" in text and "<alipay>" not in text


async def test_a_message_reaches_the_core_once_and_is_acknowledged_signed(gw, keys):
    biz = message_xml(text="居住证签注怎么办？", msg_id="201911010001")
    status, text, resp = await post(gw, notification(keys, biz))
    assert status == 200 and resp.content_type == "text/xml"
    inner = re.search(r"<response>(.*)</response>", text).group(1)
    assert "<MsgType><![CDATA[ack]]></MsgType>" in inner
    assert "<ToUserId><![CDATA[2088102122524333]]></ToUserId>" in inner
    assert rsa2_verify(inner, re.search(r"<sign>(.*)</sign>", text).group(1),
                       keys.app.public_key(), "UTF-8")
    [mine, *replies] = await stored(gw)
    assert (mine.sender, mine.text) == ("citizen", "居住证签注怎么办？") and replies

    # Alipay retries the same MsgId: acknowledged again, processed not again
    status, text, _ = await post(gw, notification(keys, biz))
    assert status == 200 and "ack" in text
    assert len(await stored(gw)) == 1 + len(replies)

    # GBK, as many 生活号 gateways are set up
    gbk = message_xml(text="社保卡丢了怎么补办", msg_id="201911010002")
    assert (await post(gw, notification(keys, gbk, charset="GBK")))[0] == 200
    assert "社保卡丢了怎么补办" in [m.text for m in await stored(gw)]


async def test_refusals_have_a_status_and_a_reason_and_store_nothing(gw, keys):
    ok = message_xml(text="你好", msg_id="m-ok")
    too_big = b"charset=UTF-8&biz_content=" + b"a" * (64 * 1024)
    cases = [
        (PATH.replace("shenban", "nosuchapp"), notification(keys, ok), 404, "unknown_app"),
        (PATH, too_big, 413, "body_too_large"),
        (PATH, b"charset=UTF-8&a=1&a=2", 400, "duplicate_parameter"),
        (PATH, b"charset=EBCDIC&a=1", 400, "unsupported_charset"),
        (PATH, notification(keys, '<!DOCTYPE XML [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                                  "<XML><FromUserId>&x;</FromUserId></XML>"), 400,
         "xml_dtd_refused"),
        (PATH, notification(keys, "<XML><FromUserId>u1</FromUserId"), 400, "malformed_xml"),
        (PATH, notification(keys, message_xml(text="办" * 2001, msg_id="m-long")), 413,
         "text_too_long"),
        (PATH, notification(keys, message_xml(msg_id="m-old", created_ms=now_ms() - 86400_000)),
         400, "stale_message"),
        (PATH, notification(keys, message_xml(msg_id="m-app", app_id="2021999999999999")), 403,
         "wrong_app"),
        (PATH, notification(keys, ok, app_id="2021999999999999"), 403, "wrong_app"),
        (PATH, notification(keys, message_xml(msg_id="m-none", app_id=None), app_id=None), 403,
         "wrong_app"),
        (PATH, notification(keys, None), 400, "missing_biz_content"),
        (PATH, notification(keys, re.sub(r"<CreateTime>\d+</CreateTime>", "", ok)), 400,
         "missing_create_time"),
        (PATH, form({k: v for k, v in signed_params(keys.alipay, ok).items()
                     if k != "sign"}), 401, "bad_signature"),
    ]
    for path, body, status, code in cases:
        got, text, _ = await post(gw, body, path)
        assert got == status and f'"error": "{code}"' in text and '"message": "' in text, text
    # a Content-Length over the limit is refused before the body is read
    resp = await gw.post(PATH, data=b"x" * 70000, headers=FORM)
    assert resp.status == 413
    assert await stored(gw) == []


async def test_a_citizen_over_the_rate_limit_gets_429_with_retry_after(gw, keys):
    statuses = []
    for i in range(4):
        status, text, resp = await post(gw, notification(keys, message_xml(
            "2088000000000009", "你好", msg_id=f"rate-{i}")))
        statuses.append(status)
    assert statuses == [200, 200, 200, 429]
    assert 1 <= int(resp.headers["Retry-After"]) <= 60 and "rate_limited" in text
    # another citizen is not held back
    assert (await post(gw, notification(keys, message_xml("2088000000000010", "你好",
                                                          msg_id="rate-x"))))[0] == 200


async def test_events_follow_greets_unfollow_and_enter_are_only_acknowledged(gw, keys):
    user = "2088000000000020"
    for event in ("enter_ppchat", "unfollow", "enter"):
        body = notification(keys, message_xml(user, None, msg_type="event", event=event))
        assert (await post(gw, body))[0] == 200
    assert await stored(gw, user) == []
    body = notification(keys, message_xml(user, None, msg_type="event", event="follow"))
    assert (await post(gw, body))[0] == 200
    [follow, greeting] = await stored(gw, user)
    assert follow.sender == "citizen" and greeting.action == "greet"
    # a picture: stored as the citizen's picture, and the bot says it reads text only
    body = notification(keys, message_xml(user, msg_type="image", msg_id="img-1"))
    assert (await post(gw, body))[0] == 200
    picture, answer = (await stored(gw, user))[-2:]
    assert picture.sender == "citizen" and "只能看懂文字" in answer.text


async def test_installed_but_unconfigured_it_starts_and_refuses(aiohttp_client, settings, engine,
                                                               redis, keys):
    bare = settings.model_copy(update={"handoff": settings.handoff.model_copy(
        update={"enabled": False})})
    client = await aiohttp_client(create_app(bare, adapters={"alipay": AlipayAdapter}))
    status, text, _ = await post(client, notification(keys, message_xml(msg_id="m1")))
    assert status == 404 and "unknown_app" in text
