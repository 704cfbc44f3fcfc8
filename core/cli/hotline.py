"""``bangban hotline-sim`` (a stand-in 12345 ticket receiver for demos and tests) and
``bangban dispatch recover``."""

from __future__ import annotations

import click

from ..config import Settings
from .common import cli, settings_options


@cli.command("hotline-sim")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8345, show_default=True, help="Port to listen on.")
@click.option("--secret", required=True, envvar="BANGBAN_HOTLINE_SECRET",
              help="HMAC secret shared with Bangban's dispatch (also BANGBAN_HOTLINE_SECRET).")
@click.option("--fail-first", type=click.IntRange(min=0), default=0, show_default=True,
              help="Answer 503 to the first N ticket deliveries (to exercise retries).")
def hotline_sim(host: str, port: int, secret: str, fail_first: int) -> None:
    """Run a small stand-in 12345 receiver that records tickets and sends callbacks.

    \b
    POST /tickets                  signed ticket delivery (de-duplicated by Idempotency-Key)
    GET  /tickets                  the tickets recorded so far
    POST /tickets/ID/callback?status=accepted|done|returned&to=URL
                                   send a signed status update to Bangban
    """
    from ..hotline_sim import HotlineSim, serve

    if len(secret) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="--secret")
    click.echo(f"12345 simulator listening on http://{host}:{port}"
               + (f" (failing the first {fail_first} deliveries)" if fail_first else ""),
               err=True)
    serve(HotlineSim(secret, fail_first=fail_first), host, port, print_fn=None)
    click.echo("stopped", err=True)


@cli.group()
def dispatch() -> None:
    """12345 dispatch (派单): tickets and their delivery."""


@dispatch.command("recover")
@settings_options
@click.option("--older-than", type=click.FloatRange(min=0), default=None,
              help="Seconds a ticket must have been stuck (default: the sweep's, 90).")
def dispatch_recover(settings: Settings, older_than: float | None) -> None:
    """Queue again every ticket stuck undelivered without a live delivery job.

    The service does this by itself every few seconds; run it by hand after an outage to see
    what it picks up. Tickets queued, waiting for a retry or being sent are left alone.
    """
    import asyncio

    from ..db import create_engine
    from ..errors import ConfigError
    from ..redisconn import embedded_for, sync_client
    from ..hotline_wire import dispatch_config
    from ..ticket_recovery import RECOVER_AFTER_S, recover_stuck

    d = dispatch_config(settings)
    if d is None:
        raise ConfigError("dispatch is off: set dispatch.endpoint and dispatch.secret")
    embedded = embedded_for(settings)
    url = embedded.start() if embedded else settings.redis.url

    async def run() -> list[str]:
        engine = create_engine(settings.database_url)
        connection = sync_client(url)
        try:
            return await recover_stuck(engine, connection, d, stale_after_s=RECOVER_AFTER_S
                                       if older_than is None else older_than)
        finally:
            connection.close()
            await engine.dispose()

    try:
        recovered = asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.stop()
    for ticket_id in recovered:
        click.echo(ticket_id)
    click.echo(f"{len(recovered)} ticket(s) queued again", err=True)
