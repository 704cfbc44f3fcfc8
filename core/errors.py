"""The one exception root of Bangban.

Every error we raise on purpose derives from :class:`BangbanError`, so callers (the CLI, HTTP
handlers, RQ jobs) can tell "we refused this, with a reason" apart from a bug. Third-party errors
are wrapped with ``raise ... from exc`` at the boundary where they enter our code.
"""

from __future__ import annotations


class BangbanError(Exception):
    """Root of every error Bangban raises deliberately."""

    #: short machine-readable code, used in JSON error bodies
    code = "error"


class ConfigError(BangbanError):
    """The configuration cannot be used; the message names the source, the field and the fix."""

    code = "config_error"


class StorageError(BangbanError):
    """The database or Redis failed or is unreachable."""

    code = "storage_error"


class NotFound(BangbanError):
    code = "not_found"


class Forbidden(BangbanError):
    """The signed-in user may not read or act on this (e.g. another unit's conversation)."""

    code = "forbidden"


class Conflict(BangbanError):
    code = "conflict"


class ValidationFailed(BangbanError):
    """Input failed validation; ``problems`` lists (where, field, reason) triples."""

    code = "invalid"

    def __init__(self, message: str, problems: list[tuple[str, str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class ImportFailed(ValidationFailed):
    """A KB import was refused as a whole; nothing was written."""

    code = "import_failed"


class MalformedBody(BangbanError):
    """A request body that is not what its Content-Type says (not UTF-8, a broken multipart):
    the client's fault, answered 400 with the reason (core.app.error_middleware)."""

    code = "bad_request"


#: the HTTP status of each refusal (the first class that matches; anything else 400)
_HTTP_STATUS = ((NotFound, 404), (Forbidden, 403), (Conflict, 409), (ValidationFailed, 422))


def http_status(exc: BangbanError) -> int:
    """The HTTP status a handler answers ``exc`` with: the error's own ``status`` when it names
    one (e.g. 413 too large, 415 unsupported type), else by its class."""
    return getattr(exc, "status", None) or next(
        (s for cls, s in _HTTP_STATUS if isinstance(exc, cls)), 400)
