"""The contract with 12345 (派单): how tickets and status callbacks are signed, what the statuses
mean, and where and how tickets are delivered (``DispatchConfig``).

Both directions are signed alike: ``X-Bangban-Signature: sha256=<hex>``, an HMAC-SHA256 over
``"<X-Bangban-Timestamp>." + body`` with the secret shared with 12345. The timestamp is signed
too, so an old request cannot be replayed beyond ``MAX_SKEW_S``. core.tickets delivers with it,
core.hotline_api checks the callbacks with it, and core.hotline_sim (the stand-in receiver for
tests and demos) does both ends.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rq import Retry

from .config import Settings
from .errors import BangbanError, ConfigError

#: where 12345 posts status updates (core.hotline_api serves it)
CALLBACK_PATH = "/api/hotline/v1/callback"
SIGNATURE_HEADER = "X-Bangban-Signature"
TIMESTAMP_HEADER = "X-Bangban-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: how far a signed request's timestamp may be from our clock
MAX_SKEW_S = 300

STATUSES = ("created", "sending", "sent", "accepted", "done", "returned", "dead")
#: statuses 12345 reports back, with the words its staff use
CALLBACK_STATUSES = {"accepted": "受理", "done": "办结", "returned": "退回"}
#: forward-only progress; a callback never moves a ticket backwards
PROGRESS = {"created": 0, "sending": 1, "dead": 1, "sent": 2, "accepted": 3, "done": 4,
            "returned": 4}


class BadSignature(BangbanError):
    code = "bad_signature"


class DispatchConfig(BaseModel):
    """Where and how tickets are delivered (passed to the job, so any worker can run it)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str
    secret: str = Field(min_length=8)
    #: seconds before each retry (exponential back-off); the last one repeats if needed
    retry_intervals: list[int] = Field(default_factory=lambda: [5, 30, 120, 600])
    #: the cap: attempts in all, the first one included
    max_attempts: int = Field(default=5, ge=1, le=50)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: where 12345 should send status updates (sent along with the ticket)
    callback_url: str | None = None
    queue: str = "default"
    #: the deployment's Redis key prefix (``redis.prefix``): a worker serving several
    #: deployments keeps each one's dead letters and job markers apart
    key_prefix: str = "bangban:"

    @field_validator("endpoint", "callback_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("retry_intervals")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if not v or any(i < 0 for i in v):
            raise ValueError("at least one interval, none negative")
        return v

    def retry(self) -> Retry | None:
        if self.max_attempts <= 1:
            return None
        return Retry(max=self.max_attempts - 1, interval=self.retry_intervals)


def dispatch_config(settings: Settings) -> DispatchConfig | None:
    """The delivery configuration from ``settings.dispatch``; None when dispatch is off.

    The one place settings become a DispatchConfig, so the workspace, the recovery sweep and a
    job enqueued without one all deliver the same way. Raises ConfigError on an unusable value.
    """
    d = settings.dispatch
    if not d.endpoint:
        return None
    try:
        return DispatchConfig(
            endpoint=d.endpoint, secret=d.secret or "", retry_intervals=d.retry_intervals,
            max_attempts=d.max_attempts, timeout_s=d.timeout_s, queue=d.queue,
            key_prefix=settings.redis.prefix,
            callback_url=d.callback_url or settings.public_url.rstrip("/") + CALLBACK_PATH)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in ("dispatch", *err["loc"]))
        raise ConfigError(f"invalid configuration: {field}: "
                          f"{err['msg'].removeprefix('Value error, ')}") from None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = str(int(now if now is not None else time.time()))
    return {"Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(secret, ts, body)}


def verify(secret: str, body: bytes, signature: str | None, timestamp: str | None, *,
           now: float | None = None, max_skew: int = MAX_SKEW_S) -> None:
    """Raise :class:`BadSignature` unless ``signature`` is ours over ``timestamp`` and ``body``."""
    if not signature or not timestamp or not timestamp.isdigit():
        raise BadSignature("missing or malformed signature headers")
    if abs((now if now is not None else time.time()) - int(timestamp)) > max_skew:
        raise BadSignature("timestamp outside the allowed window")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        raise BadSignature("signature does not match")


__all__ = ["CALLBACK_PATH", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "IDEMPOTENCY_HEADER",
           "MAX_SKEW_S", "STATUSES", "CALLBACK_STATUSES", "PROGRESS", "BadSignature",
           "DispatchConfig", "dispatch_config", "sign", "signed_headers", "verify"]
