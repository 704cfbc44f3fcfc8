"""Reading request bodies within a limit, for every HTTP entry point that takes one.

A body is refused as soon as it is known to be too large — from Content-Length before any byte
is read, else while reading (chunked uploads) — so an oversized request never fills memory.
Each caller answers the refusal in its own protocol's form (413 with a reason). A form that
cannot be parsed at all is refused the same way for every form handler (``read_form``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from .errors import MalformedBody

if TYPE_CHECKING:
    from multidict import MultiDictProxy

log = logging.getLogger(__name__)

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


#: what aiohttp raises reading a form it cannot parse: undecodable text (ValueError, LookupError
#: for an unknown charset), a broken multipart (ValueError, RuntimeError for an unknown transfer
#: encoding, HttpProcessingError for a bad part header)
_UNPARSABLE = (ValueError, LookupError, RuntimeError, HttpProcessingError)


async def read_form(request: web.Request) -> MultiDictProxy:
    """The request's form fields, as ``request.post()`` gives them; a body that cannot be
    parsed raises MalformedBody instead of ending as a 500 with a traceback. Every form
    handler reads through this: login and kiosk registration need no sign-in, so anyone
    could otherwise fill the log with tracebacks."""
    try:
        return await request.post()
    except _UNPARSABLE as exc:
        raise _refused(request, exc, "form", "提交的表单内容无法解析，请刷新页面后重试。") from None


async def first_part(request: web.Request) -> BodyPartReader | None:
    """The first part of a multipart/form-data body (an upload sends one), None for any other
    body; a multipart body that cannot be parsed raises MalformedBody, as read_form does."""
    if not request.content_type.startswith("multipart/form-data"):
        return None
    try:
        reader = await request.multipart()
        part = await reader.next()
    except _UNPARSABLE as exc:
        raise _refused(request, exc, "multipart", "上传的内容无法解析，请重新选择文件后再试。") from None
    return part if isinstance(part, BodyPartReader) else None


def _refused(request: web.Request, exc: Exception, kind: str, reason: str) -> MalformedBody:
    # one line, no traceback: the client's mistake, not ours
    log.warning("malformed %s body refused: %s %s from %s: %s", kind, request.method,
                request.path, request.remote, type(exc).__name__)
    return MalformedBody(reason)
