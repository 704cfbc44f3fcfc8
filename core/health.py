"""Liveness and readiness: what a load balancer and an operator ask first."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from sqlalchemy import text

from . import __version__
from .appkeys import ENGINE, REDIS

#: a dependency that answers slower than this counts as down for readiness
CHECK_TIMEOUT_S = 2.0

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    """The process is alive and serving HTTP; says nothing about its dependencies."""
    return web.json_response({"status": "ok", "version": __version__})


async def _timed(coro) -> dict:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure means "not ready"; the reason goes to the operator
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        return {"ok": False, "error": reason[:300]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - start) * 1000, 2)}


async def _ping_db(engine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready to take traffic: the database and Redis both answer."""
    app = request.app
    database, redis_ = await asyncio.gather(
        _timed(_ping_db(app[ENGINE])), _timed(app[REDIS].ping())
    )
    ready = database["ok"] and redis_["ok"]
    body = {"status": "ready" if ready else "unavailable",
            "checks": {"database": database, "redis": redis_}}
    return web.json_response(body, status=200 if ready else 503)
