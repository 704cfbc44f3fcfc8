"""Background asyncio tasks owned by a resource (started in start(), ended in stop())."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task | None, *, retry_s: float = 1.0) -> None:
    """Cancel a background loop and wait until it has really finished (its finally blocks
    ran), so a stopped resource leaves nothing running behind it.

    A library awaited inside the loop may swallow one cancellation (some client libraries turn
    a cancelled I/O into a reconnect); the loop would then run on and this would wait for ever.
    So the cancellation is repeated until the task is done.
    """
    if task is None or task.done():
        return
    while not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), retry_s)
        if not task.done():
            log.warning("task %s ignored a cancellation; cancelling again", task.get_name())
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
