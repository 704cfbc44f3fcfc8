"""What every request to the APP API passes before it reaches the dialog.

In order: the four signature headers are present; the app is known; the timestamp is within
the replay window; the nonce is well formed; the body is no larger than ``max_body_bytes``
(413); the HMAC matches (constant-time); the nonce was not used before (Redis ``SET NX EX``,
remembered for twice the replay window, which is how long one signed request stays valid);
then the JSON parses (400) and validates (422); and the user is within their rate limit (429).
Each refusal is an :class:`ApiError`, answered as ``{"error", "message"[, "problems"]}``.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from core.bodies import read_limited

from . import signing
from .models import (APP_ID_PATTERN, TEXT_PATTERN, TOKEN_PATTERN, USER_PATTERN, AppConfig, ErrorBody,
                     Problem)

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """A refusal with a status, a code and a reason."""

    def __init__(self, status: int, code: str, message: str, *,
                 problems: list[Problem] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.problems = problems
        self.headers = headers

    def body(self) -> dict:
        return ErrorBody(error=self.code, message=self.message,
                         problems=self.problems).model_dump(mode="json", exclude_none=True)

    def response(self) -> web.Response:
        resp = web.json_response(self.body(), status=self.status, headers=self.headers)
        if self.status == 413:
            resp.force_close()  # the rest of the body was not read: don't reuse the connection
        return resp


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


#: what a pattern means, said in words: pydantic's own message quotes the regular expression
PATTERN_REASONS = {
    TEXT_PATTERN: "must contain a visible character and no control characters",
    USER_PATTERN: "must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '@' or '-'",
    TOKEN_PATTERN: "must be printable ASCII without spaces",
    APP_ID_PATTERN: "must be 1-32 characters of A-Z, a-z, 0-9, '_' or '-'",
}


def problems_of(exc: ValidationError, where: str = "") -> list[Problem]:
    found = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in (where, *err["loc"]) if p != "") or "(body)"
        reason = err["msg"]
        if err["type"] == "string_pattern_mismatch":
            reason = PATTERN_REASONS.get((err.get("ctx") or {}).get("pattern", ""),
                                         "has characters that are not allowed here")
        found.append(Problem(field=loc, reason=reason))
    return found


def invalid(exc: ValidationError, where: str = "") -> ApiError:
    problems = problems_of(exc, where)
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApiError(422, "invalid", f"{first.field}: {first.reason}{more}", problems=problems)


def validate(model: type[M], data: object, where: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, where) from None


def parse_json(body: bytes) -> object:
    """The body as JSON, or 400 with the reason (strict UTF-8, no lone surrogates)."""
    try:
        data = json.loads(body.decode("utf-8"))
        # "\ud800" is valid JSON but no database can store it
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeError:
        raise ApiError(400, "malformed_json", "the body is not valid UTF-8 text") from None
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    return data


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed ``limit`` bytes."""
    too_large = ApiError(413, "body_too_large",
                         f"the request body exceeds the limit of {limit} bytes")
    body = await read_limited(request, limit)
    if body is None:
        raise too_large
    return body


class Guard:
    def __init__(self, config: AppConfig, hub, prefix: str,
                 count: Callable[[str, int], Awaitable[tuple[int, int]]]) -> None:
        self.config = config
        self.hub = hub  # its Redis client exists once the application has started
        self.prefix = prefix
        #: the adapter's per-citizen message counter (ChannelAdapter.count_message)
        self.count = count

    async def authenticate(self, request: web.Request, *, read: bool = True,
                           reader: Callable[[web.Request], Awaitable[bytes]] | None = None
                           ) -> tuple[str, bytes]:
        """The calling app's id and the request body, or a 401/413 ApiError.

        ``reader`` reads the body instead of :func:`read_body` (uploads have limits of their
        own, by type); it raises the 413 ApiError itself. Either way the body is read, within
        its limit, before the signature over its digest can be checked.
        """
        headers = request.headers
        missing = [h for h in signing.HEADERS if not headers.get(h)]
        if missing:
            raise unauthorized("missing_signature",
                               f"the request is not signed: missing {', '.join(missing)}")
        app_id = headers[signing.HEADER_APP]
        key = self.config.apps.get(app_id)
        if key is None:
            raise unauthorized("unknown_app", f"unknown app {app_id[:40]!r}")
        ts_raw = headers[signing.HEADER_TIMESTAMP]
        if not (ts_raw.isascii() and ts_raw.isdigit() and len(ts_raw) <= 12):
            raise unauthorized("bad_timestamp",
                               f"{signing.HEADER_TIMESTAMP} must be unix time in seconds")
        skew = int(ts_raw) - time.time()
        window = self.config.replay_window_s
        if abs(skew) > window:
            when = "in the future" if skew > 0 else "old"
            raise unauthorized("stale_timestamp",
                               f"the timestamp is {abs(int(skew))} s {when}; requests must be "
                               f"signed within {window} s of the server's clock")
        nonce = headers[signing.HEADER_NONCE]
        if not (signing.NONCE_MIN <= len(nonce) <= signing.NONCE_MAX
                and set(nonce) <= signing.NONCE_CHARS):
            raise unauthorized("bad_nonce", f"{signing.HEADER_NONCE} must be "
                               f"{signing.NONCE_MIN}-{signing.NONCE_MAX} characters "
                               "from A-Z a-z 0-9 . _ ~ -")
        if not read:
            body = b""
        elif reader is not None:
            body = await reader(request)
        else:
            body = await read_body(request, self.config.max_body_bytes)
        expected = signing.signature(key, request.method, request.raw_path, ts_raw, nonce, body)
        given = headers[signing.HEADER_SIGNATURE].strip().lower()
        if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
            raise unauthorized("bad_signature",
                               "the signature does not match the request (method, path with "
                               "query, timestamp, nonce and body must be signed as sent)")
        fresh = await self.hub.redis.set(f"{self.prefix}app:nonce:{app_id}:{nonce}", 1,
                                         nx=True, ex=2 * window + 1)
        if not fresh:
            raise unauthorized("nonce_reused", "this nonce was already used; sign every "
                               "request with a new one")
        return app_id, body

    async def within_rate(self, channel_user: str) -> None:
        """Count one message for this user; 429 with Retry-After once over the limit."""
        limit = self.config.rate_limit
        count, retry = await self.count(channel_user, limit.window_s)
        if count > limit.messages:
            raise ApiError(429, "rate_limited",
                           f"more than {limit.messages} messages in {limit.window_s} s; "
                           f"try again in {retry} s", headers={"Retry-After": str(retry)})
