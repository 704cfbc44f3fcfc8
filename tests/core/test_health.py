"""/healthz and /readyz against a real server, database and Redis."""

from __future__ import annotations

async def test_healthz_answers_without_dependencies(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_readyz_reports_database_and_redis(client):
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]


async def test_readyz_is_503_when_redis_is_unreachable(aiohttp_client, settings, engine):
    from core.app import create_app

    # nothing listens on port 1: the app starts (Redis clients connect lazily) but is not ready
    broken = settings.model_copy(update={
        "redis": settings.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"})})
    client = await aiohttp_client(create_app(broken))
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True
