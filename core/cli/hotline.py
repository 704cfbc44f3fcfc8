"""``bangban hotline-sim``: a stand-in 12345 ticket receiver for demos and tests."""

from __future__ import annotations

import click

from .common import cli


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
