"""The aiohttp application factory and its resources' lifecycles.

Resources start in order and stop in reverse through ``cleanup_ctx``: Redis (embedded or
external), then the database (migrated, seed KB loaded when empty). Channel adapters and the
staff console plug in after these.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from .appkeys import ENGINE, KB_STORE, REDIS, REDIS_URL, SETTINGS
from .config import Settings
from .db import create_engine, upgrade
from .errors import BangbanError, Conflict, NotFound, ValidationFailed
from .health import routes as health_routes
from .kb.seed import load_seed_if_empty
from .kb.store import KbStore
from .redisconn import async_client, embedded_for

log = logging.getLogger(__name__)

_STATUS = {NotFound: 404, Conflict: 409, ValidationFailed: 422}


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Our deliberate errors become JSON with a reason; anything else is a logged 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except BangbanError as exc:
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
        return web.json_response({"error": exc.code, "message": str(exc)}, status=status)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    embedded = embedded_for(settings)
    url = settings.redis.url
    if embedded is not None:
        url = await asyncio.to_thread(embedded.start)
    app[REDIS_URL] = url
    app[REDIS] = client = async_client(url)
    try:
        yield
    finally:
        await client.aclose()
        if embedded is not None and embedded.owned:
            await asyncio.to_thread(embedded.stop)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = create_engine(settings.database_url, echo=settings.database.echo,
                           pool_size=settings.database.pool_size)
    app[ENGINE] = engine
    app[KB_STORE] = store = KbStore(engine)
    try:
        await upgrade(engine)
        if settings.kb.load_seed_on_start:
            await load_seed_if_empty(store, settings.kb_seed_dir)
        yield
    finally:
        await engine.dispose()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(database_ctx)
    app.add_routes(health_routes)
    return app
