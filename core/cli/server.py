"""serve, worker and db commands."""

from __future__ import annotations

import asyncio
import errno
import logging

import click

from ..config import Settings
from ..db import create_engine, current_revision, upgrade
from ..redisconn import embedded_for, sync_client
from .common import cli, export_given_settings, settings_options

log = logging.getLogger("bangban")


@cli.command()
@settings_options
@click.option("--host", help="Address to listen on (default 127.0.0.1; also BANGBAN_HOST).")
@click.option("--port", type=int, help="Port to listen on (default 8080; also BANGBAN_PORT).")
@click.option("--no-seed", is_flag=True, help="Do not load the seed KB into an empty KB.")
def serve(settings: Settings, host: str | None, port: int | None, no_seed: bool) -> None:
    """Run the web service: citizen channels, staff pages and the APIs.

    Migrates the database first and loads the seed KB when the KB is empty. Ctrl-C stops it
    cleanly, the embedded Redis included.
    """
    from aiohttp import web

    from ..app import create_app

    update: dict = {}
    if host or port:
        update["server"] = settings.server.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v}
        )
    if no_seed:
        update["kb"] = settings.kb.model_copy(update={"load_seed_on_start": False})
    settings = settings.model_copy(update=update)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"帮办 Bangban starting on {settings.public_url} "
               f"(database: {_safe_url(settings.database_url)}, "
               f"redis: {'embedded' if settings.embedded_redis else _safe_url(settings.redis.url)})",
               err=True)
    try:
        web.run_app(create_app(settings), host=settings.server.host, port=settings.server.port,
                    print=None, access_log=None, shutdown_timeout=10)
    except OSError as exc:
        # the port is taken (another serve?) or not ours to use: run_app has already stopped
        # what it started (the embedded Redis included); say so in one line, not a traceback
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        raise click.ClickException(
            f"cannot listen on {settings.server.host}:{settings.server.port}: "
            f"{exc.strerror or exc} (another bangban serve on that port? use --port)") from None
    click.echo("stopped", err=True)


def _safe_url(url: str | None) -> str:
    """A URL fit for logs: the password, if any, replaced."""
    from sqlalchemy.engine import make_url

    if not url:
        return ""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (redis://): drop the userinfo part
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"


@cli.command()
@settings_options
@click.option("--burst", is_flag=True, help="Run the jobs waiting now, then exit.")
@click.option("--queue", "queues", multiple=True,
              help="Queue to listen on (repeatable; default: high, default, low).")
def worker(settings: Settings, burst: bool, queues: tuple[str, ...]) -> None:
    """Run an RQ worker for background jobs (12345 dispatch, channel pushes, KB upkeep)."""
    from rq import Worker

    export_given_settings()  # the jobs load their settings themselves

    embedded = embedded_for(settings)
    url = embedded.start() if embedded else settings.redis.url
    try:
        conn = sync_client(url)
        names = list(queues) or settings.worker.queues
        w = Worker(names, connection=conn)
        click.echo(f"worker listening on {', '.join(names)}", err=True)
        w.work(burst=burst, with_scheduler=not burst)
    finally:
        if embedded is not None:
            embedded.stop()


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@settings_options
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(settings: Settings, revision: str) -> None:
    """Create or migrate the database schema (serve does this too)."""

    async def run() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine, revision)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    rev = asyncio.run(run())
    click.echo(f"database at revision {rev}")


@db.command("current")
@settings_options
def db_current(settings: Settings) -> None:
    """Print the schema revision the database is at."""

    async def run() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    click.echo(asyncio.run(run()) or "empty (run `bangban db upgrade`)")
