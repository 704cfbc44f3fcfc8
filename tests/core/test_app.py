"""What the application answers outside any channel: its icon and addresses that do not exist."""

from __future__ import annotations


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
