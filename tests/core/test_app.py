"""What the application answers outside any channel: its icon, addresses that do not exist and
form bodies it cannot read."""

from __future__ import annotations

import logging


async def test_the_site_icon_is_served(client):
    # browsers ask for it on every page; a 404 was an error in every page's console
    for path in ("/favicon.ico", "/favicon.svg"):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == "image/svg+xml"
        assert (await resp.read()).startswith(b"<svg")


async def test_a_browser_asking_for_a_missing_page_is_told_in_chinese(client):
    resp = await client.get("/no/such/page", headers={"Accept": "text/html,*/*;q=0.8"})
    assert resp.status == 404 and resp.content_type == "text/html"
    page = await resp.text()
    assert "页面不存在" in page and 'href="/"' in page
    # a program asking gets the plain status, as before
    resp = await client.get("/no/such/page", headers={"Accept": "application/json"})
    assert resp.status == 404 and "页面不存在" not in await resp.text()


async def test_an_api_address_that_does_not_exist_answers_in_json(client):
    resp = await client.get("/api/app/v1/nothing-here")
    assert resp.status == 404 and resp.content_type == "application/json"
    assert (await resp.json())["error"] == "not_found"
    resp = await client.delete("/healthz")  # a route without that method: 405, with Allow
    assert resp.status == 405
    resp = await client.put("/api/openapi.json")
    assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


# -- form bodies that cannot be parsed (QA pass 3, D1) ------------------------------------------

#: bodies no form handler can read: not UTF-8, a multipart without its boundary, a part header
#: that is not one, a charset that does not exist
MALFORMED_FORMS = [
    ("application/x-www-form-urlencoded", b"username=\xff\xfe&password=x"),
    ("multipart/form-data; boundary=zz", b"garbage"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nnot a header\r\n\r\nx\r\n--zz--\r\n"),
    ("application/x-www-form-urlencoded; charset=no-such-charset", b"username=x"),
]


async def refused_cleanly(resp, caplog) -> None:
    """A malformed body is 400 with a reason in Chinese, and leaves no traceback in the log."""
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert body["error"] == "bad_request" and "无法解析" in body["message"], body
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


async def test_a_form_that_cannot_be_parsed_is_400_without_a_traceback(
        aiohttp_client, settings, engine, redis, caplog):
    from aiohttp import web

    from core.app import create_app
    from core.bodies import read_form

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(dict(await read_form(request)))

    app = create_app(settings, adapters={})
    app.router.add_post("/test/form", echo)
    client = await aiohttp_client(app)
    for content_type, body in MALFORMED_FORMS:
        caplog.clear()
        resp = await client.post("/test/form", data=body, headers={"Content-Type": content_type})
        await refused_cleanly(resp, caplog)
        assert any(r.levelno == logging.WARNING and "malformed form" in r.getMessage()
                   for r in caplog.records), content_type
    resp = await client.post("/test/form", data={"username": "张三"})  # a good form still reads
    assert resp.status == 200 and await resp.json() == {"username": "张三"}
