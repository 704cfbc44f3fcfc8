"""The aiohttp application factory and its resources' lifecycles.

Resources start in order and stop in reverse through ``cleanup_ctx``: Redis (embedded or
external), then the database (migrated, seed KB loaded when empty). Channel adapters and the
staff console plug in after these. Errors become responses in ``error_middleware``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import ValidationError

from .appkeys import ENGINE, HUB, KB_STORE, REDIS, REDIS_URL, SETTINGS
from .attachments import AttachmentStore
from .bus import Bus, Events
from .handoff.wiring import build as build_handoff
from .notify import Notifier
from .conversations import ConversationStore
from .dialog.bot import Bot
from .dialog.service import DialogService
from .hub import Hub
from .knowledge import Knowledge
from .ratings import RatingStore
from .config import Settings
from .db import create_engine, upgrade
from .errors import BangbanError, ConfigError, http_status
from .health import routes as health_routes
from .kb.seed import load_seed_if_empty
from .kb.store import KbStore
from . import tickets
from .redisconn import async_client, embedded_for, sync_client

log = logging.getLogger(__name__)

#: what a browser is shown for an address no route serves (aiohttp's own is "404: Not Found")
NOT_FOUND_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>页面不存在</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em;line-height:1.6">
<h1>页面不存在</h1>
<p>您访问的地址不存在或已经更改。</p>
<p><a href="/">返回首页</a>，或拨打 12345 市民服务热线咨询。</p>
</body></html>
"""


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Our deliberate errors become JSON with a reason; anything else is a logged 500. A
    browser asking for a page that does not exist gets one in Chinese."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        routed = exc.text in ("404: Not Found", "405: Method Not Allowed")  # the router's own
        if routed and request.path.startswith("/api/"):
            # the APIs answer in JSON throughout, as their documents promise
            code = "not_found" if exc.status == 404 else "method_not_allowed"
            return web.json_response(
                {"error": code, "message": f"no {request.method} {request.path} in this API"},
                status=exc.status, headers={k: v for k, v in exc.headers.items()
                                            if k == "Allow"})
        if routed and exc.status == 404 and "text/html" in request.headers.get("Accept", ""):
            return web.Response(text=NOT_FOUND_PAGE, status=404, content_type="text/html",
                                charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})
        raise
    except web.HTTPException:
        raise
    except BangbanError as exc:
        return web.json_response({"error": exc.code, "message": str(exc)},
                                 status=http_status(exc))


#: the site's icon, which every browser asks for on every page (a 404 there is an error in
#: each page's console): a white cross, for help, on red
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
           b'<rect width="32" height="32" rx="7" fill="#c8102e"/>'
           b'<path d="M9 16h14M16 9v14" stroke="#fff" stroke-width="4.5" stroke-linecap="round"/>'
           b'</svg>')


async def favicon(_request: web.Request) -> web.Response:
    return web.Response(body=FAVICON, content_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


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


async def core_ctx(app: web.Application) -> AsyncIterator[None]:
    """The bot's knowledge, the dialog service and the bus; then the channel adapters."""
    hub, settings = app[HUB], app[SETTINGS]
    hub.engine, hub.redis, hub.kb = app[ENGINE], app[REDIS], app[KB_STORE]
    hub.conversations = ConversationStore(hub.engine)
    hub.knowledge = Knowledge(hub.engine, poll_interval=settings.kb.refresh_interval_s,
                              rerank=settings.kb.rerank)
    await hub.knowledge.start()
    bot = Bot(lambda: hub.knowledge.snapshot, settings.bot, link_for=_link_for(hub))
    hub.bus = Bus(hub.redis, settings.redis.prefix)
    hub.events = Events(hub.redis, settings.redis.prefix)
    hub.notifier = Notifier(hub.conversations, hub.bus)
    hub.attachments = AttachmentStore(hub.engine, settings.handoff.max_image_bytes,
                                      settings.handoff.max_voice_bytes)
    hub.handoff = hub.desk = None
    if settings.handoff.enabled:
        hub.handoff, hub.desk = build_handoff(hub, settings)
    hub.dialog = DialogService(hub.conversations, bot, hub.redis, hub.bus,
                               prefix=settings.redis.prefix,
                               context_ttl_s=settings.bot.context_ttl_s,
                               ratings=RatingStore(hub.engine), human=hub.handoff)
    # RQ speaks synchronous Redis: one client per process for everything it enqueues
    hub.rq = sync_client(app[REDIS_URL])
    if hub.desk is not None:
        hub.desk.contexts = hub.dialog
        hub.desk.dispatcher = tickets.dispatcher(hub.engine, hub.rq, settings)
    hub.bus.subscribe(hub.dispatch)
    await hub.bus.start()
    await hub.events.start()
    if hub.handoff is not None:
        await hub.handoff.start()
    started = []
    try:
        for adapter in hub.adapters.values():
            await adapter.start()
            started.append(adapter)
        yield
    finally:
        for adapter in reversed(started):
            try:
                await adapter.stop()
            except Exception:
                log.exception("adapter %s failed to stop", adapter.name)
        if hub.handoff is not None:
            await hub.handoff.stop()
        hub.rq.close()
        await hub.events.stop()
        await hub.bus.stop()
        await hub.knowledge.stop()


async def _shutdown_adapters(app: web.Application) -> None:
    for adapter in app[HUB].adapters.values():
        try:
            await adapter.shutdown()
        except Exception:
            log.exception("adapter %s failed to shut down", adapter.name)


def _link_for(hub: Hub):
    def link(entry) -> str:
        return getattr(entry, "source_url", None) or f"{hub.public_url}/kb/{entry.id}"

    return link


def create_app(settings: Settings, *, adapters: dict | None = None) -> web.Application:
    """The application: health, the core, and every enabled channel adapter's routes.

    ``adapters`` (name → class) replaces entry-point discovery, for tests.
    """
    from adapters import discover
    from console import setup as setup_console

    from .hotline_api import mount as mount_hotline

    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[SETTINGS] = settings
    app[HUB] = hub = Hub(settings)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(core_ctx)
    app.add_routes(health_routes)
    app.add_routes([web.get("/favicon.ico", favicon), web.get("/favicon.svg", favicon)])
    mount_hotline(app)
    setup_console(app)
    app.on_shutdown.append(_shutdown_adapters)
    for name, cls in (discover() if adapters is None else adapters).items():
        raw = settings.channels.get(name, {})
        if raw.get("enabled", True) is False:
            continue  # an installed but disabled channel must not need valid settings
        try:
            config = cls.config_model.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in ("channels", name, *err["loc"]))
            raise ConfigError(f"invalid configuration: {field}: {err['msg']}") from None
        if not config.enabled:
            continue
        adapter = cls(hub, config)
        hub.adapters[name] = adapter
        app.add_routes(adapter.routes())
    return app
