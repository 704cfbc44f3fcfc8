"""Reading request bodies within a limit, for every HTTP entry point that takes one.

A body is refused as soon as it is known to be too large — from Content-Length before any byte
is read, else while reading (chunked uploads) — so an oversized request never fills memory.
Each caller answers the refusal in its own protocol's form (413 with a reason).
"""

from __future__ import annotations

from aiohttp import web

CHUNK = 64 * 1024


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None when it is longer than ``limit`` bytes (read no further)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    while chunk := await request.content.read(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
