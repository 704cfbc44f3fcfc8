"""Background asyncio tasks owned by a resource (started in start(), ended in stop())."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel a background loop and wait until it has really finished (its finally blocks
    ran), so a stopped resource leaves nothing running behind it."""
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
