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
