"""Replies to citizens by ``alipay.open.public.message.custom.send``, from an RQ job.

The adapter's ``push`` claims each message once (Redis ``SET NX`` in every process, one wins)
and the winner enqueues :func:`send_replies` with the batch it claimed, in order. The job posts
one custom.send per message (or per part of a long one), signed with the app's private key, and:

* records each accepted part in Redis (``alipay:done:<part>``) **before** it goes on, so a
  retried or re-run job skips what the gateway already accepted (and what was given up);
* retries with back-off (RQ ``Retry``, ``retry_intervals``) when the gateway certainly did not
  take the message: it could not be reached, answered 5xx / 429, or said ``20000`` / ``isp.*``;
* never sends a part twice when the outcome is unknown: a part is marked in flight before the
  request goes out; if the answer is lost (timeout, reset, a worker killed mid-request) or the
  answer's signature does not verify, a later attempt finds the mark and gives the part up to
  the dead-letter list instead of risking a second copy — custom.send has no idempotency key;
* gives up (dead letter, no retry) on a definite refusal (``40004`` user not following, bad
  parameters …) and once the attempts are spent.

An agent's picture is a part of its own, after its message's text: custom.send has no media
upload, so it goes as an image-text message whose picture and link are the signed, expiring URL
of ``media`` (made at send time, so a retry never sends a link that is about to expire). The
picture is read from SQL first. If it is gone, or not an agent's picture of this app's citizens
(which the route would refuse to serve), it is skipped and logged, and the rest still goes.

The private key is not in the job: the job names the app, and the worker reads the key from
its own configuration (or from the ``settings`` it is given, in tests).
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, model_validator
from rq import Callback, Retry
from rq.job import Job, get_current_job
from sqlalchemy.ext.asyncio import AsyncEngine

from core.attachments import AttachmentStore, valid_id
from core.config import Settings, load_settings
from core.errors import BangbanError, NotFound
from core.jobs import with_engine

from .config import AlipayApp, AlipayConfig
from .media import media_url, not_servable
from .signing import load_private_key, load_public_key, response_member, rsa2_verify, sign_params

log = logging.getLogger("adapters.alipay")

METHOD = "alipay.open.public.message.custom.send"
#: accepted parts are remembered this long (a job can be retried for hours, not weeks)
SENT_TTL_S = 30 * 24 * 3600
SHANGHAI = ZoneInfo("Asia/Shanghai")
MAX_ANSWER_BYTES = 256 * 1024
MAX_DEAD_LETTERS = 1000
#: the image-text message of an agent's picture: its title and the label of its link
PICTURE_TITLE = "图片"
PICTURE_ACTION = "查看图片"


class SendError(BangbanError):
    """The gateway certainly did not take the message; trying again is safe."""

    code = "alipay_send_failed"


class PermanentSendError(SendError):
    """Retrying would not help (a definite refusal) or might deliver a second copy."""


class UnknownOutcome(PermanentSendError):
    """The request went out and its answer is lost or untrustworthy: never sent again."""


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: the message id, with ``.n`` for the parts of a message too long for one send and
    #: ``.pic<n>`` for its pictures
    id: str
    message_id: str
    #: a text, or an agent's picture (sent as an image-text message). The default keeps jobs
    #: queued before pictures were sent readable.
    kind: Literal["text", "image"] = "text"
    #: the text; for a picture, the image-text message's description ("张警官发来的图片")
    text: str
    #: the picture's attachment id (``core.attachments``), for a picture only
    attachment_id: str | None = None

    @model_validator(mode="after")
    def _picture_has_its_attachment(self) -> Part:
        if (self.kind == "image") != valid_id(self.attachment_id):
            raise ValueError("a picture part needs an attachment id, and only a picture has one")
        return self

    def message(self, picture_url: str | None = None) -> dict[str, Any]:
        """What custom.send's biz_content says besides ``to_user_id`` and ``chat``."""
        if self.kind == "text":
            return {"msg_type": "text", "text": {"content": self.text}}
        return {"msg_type": "image-text", "articles": [{
            "title": PICTURE_TITLE, "desc": self.text, "image_url": picture_url,
            "url": picture_url, "action_name": PICTURE_ACTION}]}


class Delivery(BaseModel):
    """What one job sends: one citizen's messages, in order (JSON, so any worker can run it)."""

    model_config = ConfigDict(extra="forbid")
    app: str
    to_user_id: str
    conversation_id: str
    parts: list[Part]


def keys(prefix: str, part_id: str) -> tuple[str, str]:
    """(done, in-flight) keys of a part; done holds ``{"outcome": "sent" | "dead" | "gone", …}``
    ("gone": a picture not sent because it no longer exists or may not be served)."""
    return f"{prefix}alipay:done:{part_id}", f"{prefix}alipay:inflight:{part_id}"


def dead_letter_key(prefix: str) -> str:
    return f"{prefix}alipay:dead"


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at paragraph or line ends."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = max(text.rfind("\n\n", 0, limit), text.rfind("\n", 0, limit))
        cut = cut if cut > limit // 2 else limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip("\n")
    if text or not pieces:
        pieces.append(text)
    return pieces


# -- one request ----------------------------------------------------------------------------------


def custom_send(app: AlipayApp, to_user_id: str, message: dict[str, Any], *,
                now: datetime | None = None) -> tuple[str, bytes]:
    """The signed request: (URL with the common parameters, form body with biz_content).

    ``message`` is :meth:`Part.message`: a text or an image-text message. As Alipay's SDKs
    send it: the common parameters and ``sign`` in the query string, ``biz_content`` in the
    body, everything signed together (sorted, ``sign_type`` included). ``chat: "1"`` shows the
    message in the citizen's conversation, not on the 生活号's page.
    """
    biz = json.dumps({"to_user_id": to_user_id, **message, "chat": "1"}, ensure_ascii=False,
                     separators=(",", ":"))
    stamp = (now or datetime.now(UTC)).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    params = {"app_id": app.app_id, "method": METHOD, "format": "JSON", "charset": "utf-8",
              "sign_type": "RSA2", "timestamp": stamp, "version": "1.0", "biz_content": biz}
    params["sign"] = sign_params(params, load_private_key(app.app_private_key.get_secret_value()))
    query = urlencode({k: v for k, v in params.items() if k != "biz_content"})
    url = app.gateway + ("&" if "?" in app.gateway else "?") + query
    return url, urlencode({"biz_content": biz}).encode("utf-8")


def post(url: str, body: bytes, timeout: float) -> tuple[int, str]:
    """POST and read the answer. :class:`SendError` if the request could not be sent (safe to
    repeat); :class:`UnknownOutcome` if it was sent and the answer was lost."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        try:
            conn.request("POST", target, body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded;charset=utf-8"})
        except (OSError, http.client.HTTPException) as exc:
            raise SendError(f"cannot reach the gateway {parts.hostname}: "
                            f"{type(exc).__name__}") from exc
        try:
            resp = conn.getresponse()
            data = resp.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise UnknownOutcome(f"the request was sent but its answer was lost "
                                 f"({type(exc).__name__})") from exc
    finally:
        conn.close()
    return resp.status, data.decode("utf-8", "replace")


def check_answer(status: int, text: str, app: AlipayApp, verify: bool) -> None:
    """Return if the gateway accepted the message; raise the right error otherwise."""
    if status >= 500 or status in (408, 429):
        raise SendError(f"the gateway answered HTTP {status}")
    if status != 200:
        raise PermanentSendError(f"the gateway answered HTTP {status}")
    member, sign = response_member(text, METHOD)
    if member is None:
        raise UnknownOutcome("the gateway's answer has no custom.send result")
    result = json.loads(member)
    code = str(result.get("code", "")) if isinstance(result, dict) else ""
    sub_code = str(result.get("sub_code", "")) if isinstance(result, dict) else ""
    if code == "10000":
        if verify and not (sign and rsa2_verify(member, sign, load_public_key(
                app.alipay_public_key))):
            raise UnknownOutcome("the gateway said the message was accepted, but its answer's "
                                 "signature does not verify with alipay_public_key")
        return
    if code == "20000" or sub_code.startswith("isp."):
        raise SendError(f"the gateway is unavailable (code {code} {sub_code[:60]})")
    raise PermanentSendError(f"the gateway refused the message (code {code[:10]} "
                             f"{sub_code[:60]})")


# -- the job ----------------------------------------------------------------------------------


def _settings(settings: dict[str, Any] | None) -> Settings:
    return Settings.model_validate(settings) if settings else load_settings()


def _not_sendable(cfg: Settings, app: AlipayApp, attachment_id: str) -> str | None:
    """Why a picture cannot go (gone, or one the media route would not serve), or None."""

    async def read(engine: AsyncEngine) -> str | None:
        store = AttachmentStore(engine, cfg.handoff.max_image_bytes, cfg.handoff.max_voice_bytes)
        try:
            meta, _ = await store.get(attachment_id)
        except NotFound:
            return "the picture no longer exists"
        return not_servable(meta, await store.owner(meta.conversation_id), app)

    return with_engine(cfg.database_url, read)


def _done(connection, prefix: str, part: Part, outcome: str) -> None:  # noqa: ANN001
    connection.set(keys(prefix, part.id)[0], json.dumps({"outcome": outcome, "at": time.time()}),
                   ex=SENT_TTL_S)


def _dead(connection, prefix: str, delivery: Delivery, part: Part,  # noqa: ANN001
          reason: str) -> None:
    """Give a part up for good: marked done, so no retry sends it, and listed for supervisors
    with which message of which conversation and why (never the text or the citizen's id)."""
    _done(connection, prefix, part, "dead")
    entry = json.dumps({"app": delivery.app, "conversation_id": delivery.conversation_id,
                        "message_id": part.message_id, "part": part.id, "reason": reason[:300],
                        "at": datetime.now(UTC).isoformat()}, ensure_ascii=False)
    key = dead_letter_key(prefix)
    connection.rpush(key, entry)
    connection.ltrim(key, -MAX_DEAD_LETTERS, -1)
    log.warning("alipay: message %s of %s not delivered: %s", part.id,
                delivery.conversation_id, reason)


def send_replies(delivery: dict[str, Any], settings: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """RQ job: send a batch of replies by custom.send. Raises SendError to be retried."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("send_replies runs as an RQ job (it uses the job's Redis)")
    connection = job.connection
    d = Delivery.model_validate(delivery)
    cfg = _settings(settings)
    prefix = cfg.redis.prefix
    config = AlipayConfig.model_validate(cfg.channels.get("alipay", {}))
    app = config.app_named(d.app)
    done = {"sent": 0, "skipped": 0, "dead": 0, "gone": 0}
    for part in d.parts:
        done_key, inflight_key = keys(prefix, part.id)
        if connection.exists(done_key):
            done["skipped"] += 1
            continue
        if app is None:
            _dead(connection, prefix, d, part, f"no app named {d.app!r} in this worker's "
                  "channels.alipay configuration")
            done["dead"] += 1
            continue
        picture_url = None
        if part.kind == "image":
            # read before the in-flight mark: a database error is retried like a busy gateway
            problem = _not_sendable(cfg, app, part.attachment_id)
            if problem:
                _done(connection, prefix, part, "gone")
                log.warning("alipay: picture %s of message %s of %s not sent: %s",
                            part.attachment_id, part.message_id, d.conversation_id, problem)
                done["gone"] += 1
                continue
            picture_url = media_url(cfg.public_url, config, app, part.attachment_id)
        mark = json.dumps({"job": job.id, "at": time.time()})
        if not connection.set(inflight_key, mark, nx=True, ex=SENT_TTL_S):
            _dead(connection, prefix, d, part, "an earlier attempt sent it and its outcome is "
                  "unknown; not sent again, to never send a message twice")
            done["dead"] += 1
            continue
        try:
            url, body = custom_send(app, d.to_user_id, part.message(picture_url))
            status, text = post(url, body, config.timeout_s)
            check_answer(status, text, app, config.verify_responses)
        except UnknownOutcome as exc:
            _dead(connection, prefix, d, part, str(exc))  # the in-flight mark stays
            done["dead"] += 1
            continue
        except PermanentSendError as exc:
            connection.delete(inflight_key)
            _dead(connection, prefix, d, part, str(exc))
            done["dead"] += 1
            continue
        except SendError:
            connection.delete(inflight_key)  # certainly not taken: the retry may send it
            raise
        # recorded before anything else can fail, so no later attempt sends it again
        _done(connection, prefix, part, "sent")
        connection.delete(inflight_key)
        done["sent"] += 1
    log.info("alipay: %s: %d sent, %d already sent, %d given up, %d pictures gone",
             d.conversation_id, done["sent"], done["skipped"], done["dead"], done["gone"])
    return done


def send_failed(job: Job, connection, exc_type, exc_value, tb) -> None:  # noqa: ANN001
    """RQ failure callback: once the retries are spent, the unsent parts go to dead letters."""
    if job.should_retry:
        return
    d = Delivery.model_validate(job.args[0])
    prefix = _settings(job.args[1] if len(job.args) > 1 else None).redis.prefix
    reason = f"gave up after the last attempt: {exc_value}" if exc_value else "gave up"
    for part in d.parts:
        done_key, inflight_key = keys(prefix, part.id)
        if connection.exists(done_key):
            continue
        if connection.exists(inflight_key):  # e.g. the worker was killed mid-request
            _dead(connection, prefix, d, part, "the last attempt sent it and its outcome is "
                  "unknown; not sent again")
        else:
            _dead(connection, prefix, d, part, reason)


def enqueue(connection, delivery: Delivery, config: AlipayConfig,  # noqa: ANN001
            settings: dict[str, Any] | None = None) -> Job:
    """Queue the job for ``delivery`` (raises RedisError when Redis is down)."""
    from core.jobs import queue

    retry = None
    if config.max_attempts > 1:
        retry = Retry(max=config.max_attempts - 1, interval=config.retry_intervals)
    first = re.sub(r"[^A-Za-z0-9_-]", "_", delivery.parts[0].id)[:64]  # RQ's id alphabet
    return queue(config.queue, connection).enqueue(
        send_replies, delivery.model_dump(mode="json"), settings,
        job_id=f"alipay-{first}-{secrets.token_hex(4)}", retry=retry,
        on_failure=Callback(send_failed),
        # each part may take up to timeout_s to send and as long to be refused
        job_timeout=int(30 + 2 * config.timeout_s * len(delivery.parts)),
        description=f"alipay custom.send {delivery.conversation_id} "
                    f"({len(delivery.parts)} parts)")


__all__ = ["Delivery", "Part", "METHOD", "PICTURE_ACTION", "PICTURE_TITLE", "PermanentSendError",
           "SendError", "UnknownOutcome", "check_answer", "custom_send", "dead_letter_key",
           "enqueue", "keys", "post", "send_failed", "send_replies", "split_text"]
