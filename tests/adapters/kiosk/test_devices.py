"""Kiosk terminals: only a terminal that proved its device key gets the page and the socket."""

from __future__ import annotations

import time

import pytest
from aiohttp import WSServerHandshakeError

from adapters.kiosk import KioskAdapter
from adapters.kiosk.devices import bootstrap_token
from core.app import create_app
from core.errors import ConfigError
from tests.core.test_app import MALFORMED_FORMS, refused_cleanly

from .conftest import DEVICE, KEY, OTHER, OTHER_KEY, kiosk_settings, register


async def test_terminal_registration_by_bootstrap_url_and_form(make_client, aiohttp_client,
                                                               settings):
    client = await make_client()

    # an unknown terminal, or a known one that never proved its key: 403 with a clear page
    resp = await client.get("/kiosk", params={"device": "nobody"})
    assert resp.status == 403 and "本终端未登记" in await resp.text()
    resp = await client.get("/kiosk")
    assert resp.status == 403
    resp = await client.get("/kiosk", params={"device": DEVICE})
    page = await resp.text()
    assert resp.status == 403 and "尚未注册" in page
    assert f"/kiosk/register?device={DEVICE}" in page
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/kiosk/ws")
    assert refused.value.status == 403

    # forged, expired and wrong-device tokens are refused, and set no cookie
    now = int(time.time())
    for token, reason in [
        (f"{now}.{'0' * 64}", "不正确"),
        (bootstrap_token(OTHER_KEY, DEVICE), "不正确"),
        (bootstrap_token(KEY, DEVICE, now - 3600), "已过期"),
        ("garbage", "不正确"),
    ]:
        resp = await client.get("/kiosk", params={"device": DEVICE, "token": token},
                                allow_redirects=False)
        assert resp.status == 403 and reason in await resp.text(), token
    assert not client.session.cookie_jar.filter_cookies(client.make_url("/kiosk"))

    # a good token registers the terminal once and leaves the address without it
    token = bootstrap_token(KEY, DEVICE)
    resp = await client.get("/kiosk", params={"device": DEVICE, "token": token},
                            allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/kiosk?device={DEVICE}"
    cookie = resp.cookies["bangban_kiosk"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/kiosk"
    assert KEY not in cookie.value
    resp = await client.get("/kiosk", params={"device": DEVICE})
    page = await resp.text()
    assert resp.status == 200, page
    assert "市公安局" in page and 'data-payload="matter:M03"' in page  # matters by department
    assert 'data-payload="pick:M03-faq-01"' in page                    # popular questions
    assert resp.headers["Cache-Control"] == "no-store"

    # the same token again (seen over a shoulder, in a log): refused
    resp = await client.get("/kiosk", params={"device": DEVICE, "token": token},
                            allow_redirects=False)
    assert resp.status == 403 and "已使用过" in await resp.text()

    # the registration is for this device id only
    resp = await client.get("/kiosk", params={"device": OTHER})
    assert resp.status == 403 and "不一致" in await resp.text()

    # a cookie altered by hand is worthless
    client.session.cookie_jar.update_cookies({"bangban_kiosk": f"{OTHER}.abc.def"},
                                             client.make_url("/kiosk"))
    resp = await client.get("/kiosk", params={"device": OTHER})
    assert resp.status == 403

    # the form: a wrong key is refused; the right one registers
    resp = await client.get("/kiosk/register", params={"device": OTHER})
    assert resp.status == 200 and f'value="{OTHER}"' in await resp.text()
    resp = await client.post("/kiosk/register", data={"device": OTHER, "key": KEY},
                             allow_redirects=False)
    assert resp.status == 403 and "终端编号或密钥不正确" in await resp.text()
    resp = await client.post("/kiosk/register", data={"device": OTHER, "key": OTHER_KEY},
                             headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert resp.status == 403
    resp = await client.post("/kiosk/register", data={"device": OTHER, "key": OTHER_KEY},
                             allow_redirects=False)
    assert resp.status == 303
    resp = await client.get("/kiosk", params={"device": OTHER})
    assert resp.status == 200

    # the socket: registered terminals only, and only from our own origin
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/kiosk/ws", headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    ws = await client.ws_connect("/kiosk/ws")
    assert (await ws.receive_json())["type"] == "hello"
    await ws.close()


async def test_a_registration_body_that_cannot_be_read_is_400_without_a_traceback(make_client,
                                                                                  caplog):
    # the form needs no registration: anyone could fill the log with 500s' tracebacks
    client = await make_client()
    for content_type, body in MALFORMED_FORMS:
        caplog.clear()
        resp = await client.post("/kiosk/register", data=body, allow_redirects=False,
                                 headers={"Content-Type": content_type})
        await refused_cleanly(resp, caplog)
    resp = await client.get("/kiosk", params={"device": DEVICE})
    assert resp.status == 403 and "尚未注册" in await resp.text()  # nothing was registered

async def test_a_new_key_revokes_the_registration(make_client, aiohttp_client, settings, redis):
    client = await make_client()
    await register(client)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/kiosk"))["bangban_kiosk"]
    rotated = create_app(kiosk_settings(settings, devices={DEVICE: "n" * 40}),
                         adapters={"kiosk": KioskAdapter})
    other = await aiohttp_client(rotated)
    other.session.cookie_jar.update_cookies({"bangban_kiosk": cookie.value},
                                            other.make_url("/kiosk"))
    resp = await other.get("/kiosk", params={"device": DEVICE})
    assert resp.status == 403 and "注册已失效" in await resp.text()


@pytest.mark.parametrize("kiosk, field", [
    ({"devices": {"hall-1": "too short"}}, "channels.kiosk.devices.hall-1"),
    ({"devices": {"bad id!": "x" * 40}}, "channels.kiosk.devices"),
    ({"idle_timeout_s": 30, "idle_warning_s": 30}, "channels.kiosk"),
    ({"idle_timeout_s": 1}, "channels.kiosk.idle_timeout_s"),
])
def test_bad_settings_name_the_field(settings, kiosk, field):
    with pytest.raises(ConfigError) as err:
        create_app(kiosk_settings(settings, **kiosk), adapters={"kiosk": KioskAdapter})
    assert field in str(err.value)
    assert "too short" not in str(err.value)  # a key is never echoed


async def test_start_warns_when_qr_codes_would_point_at_a_local_address(make_client, caplog,
                                                                         aiohttp_client,
                                                                         settings, redis):
    # the QR codes and printed guides carry server.public_url to citizens' phones
    with caplog.at_level("WARNING", logger="adapters.kiosk"):
        await make_client()
    [warning] = [r.getMessage() for r in caplog.records if "public_url" in r.getMessage()]
    assert "127.0.0.1" in warning and "phone" in warning
    caplog.clear()
    public = kiosk_settings(settings).model_copy(update={"server": settings.server.model_copy(
        update={"public_url": "https://zwfw.example.gov.cn"})})
    with caplog.at_level("WARNING", logger="adapters.kiosk"):
        await aiohttp_client(create_app(public, adapters={"kiosk": KioskAdapter}))
    assert not [r for r in caplog.records if "public_url" in r.getMessage()]
