"""Sending by the customer-service message API (客服消息): an RQ job, with retries and one shared
access token.

One job sends one batch of parts to one citizen, in order (``adapters.wechat.outbox`` makes the
batch and guarantees one job per message). A part is a text, or ``{"image": <attachment id>}``
/ ``{"voice": <attachment id>}``: an agent's picture or voice message (AMR / MP3, which WeChat
plays), read from SQL, uploaded as temporary media of that type (``media/upload``, valid three
days; the media id is kept in Redis so a retry does not upload it again) and sent as an image /
voice message. Media the platform refuses for what they are (type, size, a voice over 60 s) are
announced with the "[图片]" / "[语音]" note instead. Exactly once towards the platform:

- each part is one send whose success is recorded in Redis under the job's id and the
  part's index *before* the job goes on, so a retried job skips what was accepted already;
- a failure the platform reports (an ``errcode``, an HTTP error) or a connection that could not
  be made means "not accepted": safe to retry (RQ, with back-off, up to ``max_attempts``);
- a request that was sent but whose answer never came (a read timeout, a dropped connection)
  may have been accepted: it is *not* retried, so the citizen never gets a message twice; it is
  logged and counted as uncertain (a lost answer is rare; a duplicate would be visible);
- the platform's refusals that no retry can change end the job at once: 45015 (the citizen has
  not written for 48 hours) and 45047 (this citizen message's quota of customer-service
  messages is spent) tell the agent through a ``channel_window_closed`` workspace event; an
  unknown openid, an unfollowed account and the like are logged.

Access tokens (``stable_token``) are cached in Redis for every worker and app process, fetched by
one process at a time (a short Redis lock), and dropped and fetched again when the platform says
the token is no longer valid. ``stable_token`` hands every caller the same token until it nears
expiry, so this deployment never invalidates a token another system uses for the same account.
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from typing import Any

from rq import Callback, Retry
from rq.job import Job, get_current_job
from sqlalchemy.ext.asyncio import AsyncEngine

from core.attachments import AttachmentStore
from core.config import Settings, load_settings
from core.errors import BangbanError, NotFound
from core.jobs import queue, with_engine

from .config import WeChatAccount, WeChatConfig
from .render import note, sendable

log = logging.getLogger(__name__)

CHANNEL = "wechat"
#: the platform's answers that mean "this access token is no longer valid"
TOKEN_INVALID = {40001, 40014, 42001}
#: answers no retry can change: window closed, quota spent, unknown / unfollowed user, no right
WINDOW_CLOSED = {45015: "window", 45047: "quota"}
PERMANENT = {40003, 43004, 48001, 45002, 40008, 41001, 40013, 40125, 40164, 61024}
#: refusals of a picture or voice itself: media type, file type, file size, too large, too long
MEDIA_REFUSED = {40004, 40005, 40006, 45001, 45007}
#: how long the outcome of each part of a job is remembered (a retry reads it)
PART_TTL_S = 7 * 24 * 3600
#: an uploaded picture's or voice's media id is kept this long: temporary media live three days
MEDIA_TTL_S = 2 * 24 * 3600
DEAD_LETTERS = "wechat:dead"


class SendError(BangbanError):
    """Not accepted by the platform, and worth another try."""

    code = "wechat_send_failed"


class Refused(BangbanError):
    """The platform refused for good (see WINDOW_CLOSED and PERMANENT)."""

    code = "wechat_refused"

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"errcode {errcode}: {errmsg[:200]}")
        self.errcode = errcode


class Unsendable(SendError):
    """The platform refused a picture or voice for what it is: no retry will change that."""

    code = "wechat_media_refused"


class Uncertain(BangbanError):
    """Sent, but no answer came: it may have been accepted, so it is not sent again."""

    code = "wechat_uncertain"


# -- HTTP -------------------------------------------------------------------------------------


def _call(url: str, payload: dict[str, Any] | None, timeout: float, *,
          sent_matters: bool, body: tuple[bytes, str] | None = None) -> dict[str, Any]:
    """POST JSON (GET when ``payload`` is None; ``body``: raw bytes and their content type
    instead) and return the JSON answer.

    ``sent_matters``: whether a request that reached the platform unanswered is Uncertain (a
    send) or merely failed (a token fetch or an upload, which are safe to repeat).
    """
    data, ctype = body or (None if payload is None else
                           json.dumps(payload, ensure_ascii=False).encode(),
                           "application/json; charset=utf-8")
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": ctype})
    try:
        # urllib wraps failures *before* the request was fully sent (DNS, connect, write) in
        # URLError; what fails after it (waiting for or reading the answer) comes through as is
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our config
            body = resp.read(1024 * 1024)
    except urllib.error.HTTPError as exc:  # an HTTP error status: the API did not take it
        raise SendError(f"HTTP {exc.code} from the platform API") from None
    except urllib.error.URLError as exc:
        raise SendError(f"cannot reach the platform API: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        if sent_matters:
            raise Uncertain(f"no answer from the platform API: {exc!r}") from None
        raise SendError(f"no answer from the platform API: {exc!r}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        if sent_matters:
            raise Uncertain("the platform API's answer is not JSON") from None
        raise SendError("the platform API's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise SendError("the platform API's answer is not a JSON object")
    return answer


# -- access tokens ----------------------------------------------------------------------------

_DELETE_IF = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
              "return redis.call('del', KEYS[1]) end return 0")


class Tokens:
    """The account's access token, shared through Redis."""

    def __init__(self, connection, prefix: str, account: WeChatAccount,  # noqa: ANN001
                 timeout: float) -> None:
        self.redis = connection
        self.account = account
        self.timeout = timeout
        self.key = f"{prefix}wechat:token:{account.app_id}"
        self.lock = f"{prefix}wechat:token-lock:{account.app_id}"

    def get(self) -> str:
        cached = self.redis.get(self.key)
        if cached:
            return cached.decode() if isinstance(cached, bytes) else cached
        mine = secrets.token_hex(8)
        if not self.redis.set(self.lock, mine, nx=True, px=int(self.timeout * 2000) + 1000):
            # another process is fetching: wait for its token rather than ask the platform too
            # (asking again is harmless with stable_token, only wasteful)
            deadline = time.monotonic() + self.timeout * 2
            while time.monotonic() < deadline:
                time.sleep(0.1)
                cached = self.redis.get(self.key)
                if cached:
                    return cached.decode() if isinstance(cached, bytes) else cached
        try:
            return self._fetch(force=False)
        finally:
            self.redis.eval(_DELETE_IF, 1, self.lock, mine)

    def _fetch(self, *, force: bool) -> str:
        answer = _call(f"{self.account.api_base}/cgi-bin/stable_token", {
            "grant_type": "client_credential", "appid": self.account.app_id,
            "secret": self.account.app_secret.get_secret_value(), "force_refresh": force,
        }, self.timeout, sent_matters=False)
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise SendError(f"no access token: errcode {answer.get('errcode')}: "
                            f"{str(answer.get('errmsg'))[:200]}")
        expires = answer.get("expires_in")
        ttl = int(expires) - 300 if isinstance(expires, int) and expires > 600 else 300
        self.redis.set(self.key, token, ex=ttl)  # refreshed 5 minutes before it expires
        return token

    def renew(self, bad: str) -> str:
        """The platform refused ``bad``: forget it and get a valid one."""
        self.redis.eval(_DELETE_IF, 1, self.key, bad)
        token = self._fetch(force=False)
        if token == bad:  # the platform still hands out the one it refuses: force a new one
            token = self._fetch(force=True)
        return token


def _api(tokens: Tokens, path: str, payload: dict[str, Any] | None, *, sent_matters: bool,
         body: tuple[bytes, str] | None = None) -> dict[str, Any]:
    """One platform call with the shared token (renewed once if the platform refuses it);
    raises Refused / SendError on an errcode, returns the answer otherwise."""
    token = tokens.get()
    for attempt in (1, 2):
        sep = "&" if "?" in path else "?"
        answer = _call(f"{tokens.account.api_base}{path}{sep}access_token={token}", payload,
                       tokens.timeout, sent_matters=sent_matters, body=body)
        code = answer.get("errcode", 0)
        if code == 0:
            return answer
        errmsg = str(answer.get("errmsg", ""))
        if code in TOKEN_INVALID and attempt == 1:
            token = tokens.renew(token)
            continue
        if code in WINDOW_CLOSED or code in PERMANENT:
            raise Refused(code, errmsg)
        if code in MEDIA_REFUSED:
            raise Unsendable(f"errcode {code}: {errmsg[:200]}")
        raise SendError(f"errcode {code}: {errmsg[:200]}")
    raise SendError("the platform refused a fresh access token")  # pragma: no cover


def send_text(tokens: Tokens, openid: str, text: str) -> None:
    """One customer-service text message; returns once the platform accepted it."""
    _api(tokens, "/cgi-bin/message/custom/send", {"touser": openid, "msgtype": "text",
                                                  "text": {"content": text}}, sent_matters=True)


def upload_media(tokens: Tokens, kind: str, data: bytes, mime: str, name: str) -> str:
    """Upload a picture or voice as temporary media of type ``kind`` (``image`` / ``voice``;
    multipart, field ``media``); its media id."""
    boundary = f"----bangban{secrets.token_hex(12)}"
    safe = "".join(c for c in name if c.isascii() and c.isalnum() or c in "._-")
    if not safe or safe.startswith("."):  # a Chinese name keeps only its extension
        safe = kind + safe
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; "
            f"filename=\"{safe}\"\r\nContent-Type: {mime}\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    answer = _api(tokens, f"/cgi-bin/media/upload?type={kind}", None, sent_matters=False,
                  body=(body, f"multipart/form-data; boundary={boundary}"))
    media_id = answer.get("media_id")
    if not isinstance(media_id, str) or not media_id:
        raise SendError("the platform took the upload but returned no media_id")
    return media_id


def send_media(tokens: Tokens, openid: str, kind: str, media_id: str) -> None:
    """One customer-service image or voice message; returns once the platform accepted it."""
    _api(tokens, "/cgi-bin/message/custom/send", {"touser": openid, "msgtype": kind,
                                                  kind: {"media_id": media_id}},
         sent_matters=True)


def _attachment(cfg: Settings, kind: str, attachment_id: str) -> tuple[bytes, str, str] | None:
    """(bytes, mime, file name) of an agent's attachment that goes as a ``kind`` message, from
    SQL; None if it is gone (or, judged by what was stored, is not one WeChat takes as that)."""

    async def read(engine: AsyncEngine) -> tuple[bytes, str, str] | None:
        try:
            meta, data = await AttachmentStore(engine, cfg.handoff.max_image_bytes,
                                               cfg.handoff.max_voice_bytes).get(attachment_id)
        except NotFound:
            return None
        return (data, meta.mime, meta.name) if sendable(meta.to_attachment()) == kind else None

    return with_engine(cfg.database_url, read)


# -- the job ----------------------------------------------------------------------------------


def _settings(settings: dict[str, Any] | None) -> Settings:
    return Settings.model_validate(settings) if settings else load_settings()


def _publish(connection, prefix: str, event: dict[str, Any]) -> None:  # noqa: ANN001
    try:
        connection.publish(f"{prefix}workspace", json.dumps(event, ensure_ascii=False))
    except Exception:  # the workspace misses a notice; the send's outcome stands
        log.warning("could not publish %s", event.get("type"), exc_info=True)


def window_closed_event(context: dict[str, Any], reason: str) -> dict[str, Any]:
    text = ("群众已超过48小时未发消息，微信不允许再向其发送客服消息；请等待群众再次来信，或通过其他方式联系。"
            if reason == "window" else
            "本次群众来信后可发送的微信客服消息条数已用完；请等待群众回复后再发送。")
    return {"type": "channel_window_closed", "unit": context.get("unit"),
            "conversation": context.get("conversation"), "handoff": context.get("handoff"),
            "channel": CHANNEL, "reason": reason, "text": text}


def deliver(account: str, openid: str, texts: list[str | dict[str, str]],
            context: dict[str, Any], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """RQ job: send ``texts`` (the parts: texts, ``{"image": id}`` and ``{"voice": id}``) to
    ``openid`` of ``account``, in order.

    ``context``: ``conversation``, ``unit`` and ``handoff`` of an open human-help service (for
    the agent's notices), ``messages`` (the message ids, for the logs). ``settings``: the
    Settings dump the app runs with (None: the worker's own configuration).
    """
    job = get_current_job()
    if job is None:
        raise BangbanError("adapters.wechat.sender.deliver runs as an RQ job")
    cfg = _settings(settings)
    prefix = cfg.redis.prefix
    connection = job.connection
    wcfg = WeChatConfig.model_validate(cfg.channels.get(CHANNEL, {}))
    acc = wcfg.account(account)
    if acc is None:
        log.error("wechat: no account %r in this worker's configuration; message(s) %s dropped",
                  account, context.get("messages"))
        return {"sent": 0, "error": "unknown account"}
    tokens = Tokens(connection, prefix, acc, wcfg.timeout_s)
    sent = skipped = uncertain = 0
    for i, part in enumerate(texts):
        key = f"{prefix}wechat:part:{job.id}:{i}"
        if connection.get(key):
            skipped += 1  # accepted (or uncertain) on an earlier attempt of this job
            continue
        try:
            if isinstance(part, str):
                send_text(tokens, openid, part)
            elif not _send_media(tokens, cfg, connection, f"{prefix}wechat:media:{job.id}:{i}",
                                 openid, part):
                connection.set(key, "gone", ex=PART_TTL_S)
                skipped += 1
                log.warning("wechat: attachment %s of %s is gone; not sent", part,
                            context.get("conversation"))
                continue
        except Uncertain as exc:
            connection.set(key, "uncertain", ex=PART_TTL_S)
            uncertain += 1
            log.warning("wechat: %s part %d to %s may not have arrived (not resent): %s",
                        account, i, context.get("conversation"), exc)
            continue
        except Refused as exc:
            reason = WINDOW_CLOSED.get(exc.errcode)
            log.warning("wechat: %s refused message(s) of %s: %s", account,
                        context.get("conversation"), exc)
            if reason and context.get("unit"):
                _publish(connection, prefix, window_closed_event(context, reason))
            return {"sent": sent, "skipped": skipped, "uncertain": uncertain,
                    "refused": exc.errcode}
        connection.set(key, "sent", ex=PART_TTL_S)
        sent += 1
    return {"sent": sent, "skipped": skipped, "uncertain": uncertain}


def _send_media(tokens: Tokens, cfg: Settings, connection, key: str,  # noqa: ANN001
                openid: str, part: dict[str, str]) -> bool:
    """Upload (once per job part) and send one picture or voice (``part``: ``{kind: attachment
    id}``); False when the attachment is gone. The media id is kept under the part's key and
    its kind, so an image's id can never be sent as a voice."""
    [(kind, attachment_id)] = part.items()
    media_key = f"{key}:{kind}"
    try:
        media = connection.get(media_key)
        if media is None:
            found = _attachment(cfg, kind, attachment_id)
            if found is None:
                return False
            media = upload_media(tokens, kind, *found)
            connection.set(media_key, media, ex=MEDIA_TTL_S)
        send_media(tokens, openid, kind, media.decode() if isinstance(media, bytes) else media)
    except Unsendable as exc:
        # e.g. a voice over 60 s, which only the platform measures: say there is one, as for
        # a format WeChat cannot play, rather than retry in vain and hold up the rest
        log.warning("wechat: the platform refuses %s %s (%s); announced instead", kind,
                    attachment_id, exc)
        send_text(tokens, openid, note([kind]))
    return True


def send_failed(job: Job, connection, exc_type, exc_value, tb) -> None:  # noqa: ANN001
    """RQ failure callback: once the retries are spent, a dead letter and the agent told."""
    if job.should_retry:
        return
    account, _openid, texts, context = job.args[:4]
    settings = job.args[4] if len(job.args) > 4 else None
    prefix = _settings(settings).redis.prefix
    entry = {"job": job.id, "account": account, "conversation": context.get("conversation"),
             "messages": context.get("messages"), "parts": len(texts),
             "error": f"{exc_type.__name__}: {exc_value}" if exc_type else None,
             "at": time.time()}
    connection.rpush(f"{prefix}{DEAD_LETTERS}", json.dumps(entry, ensure_ascii=False))
    log.warning("wechat: gave up sending %s to %s: %s", context.get("messages"),
                context.get("conversation"), entry["error"])
    if context.get("unit"):
        _publish(connection, prefix, {
            "type": "channel_send_failed", "unit": context["unit"],
            "conversation": context.get("conversation"), "handoff": context.get("handoff"),
            "channel": CHANNEL, "text": "消息未能发送到群众的微信，请稍后重试或通过其他方式联系。"})


def enqueue(connection, config: WeChatConfig, account: str, openid: str,  # noqa: ANN001
            texts: list[str | dict[str, str]], context: dict[str, Any],
            settings: dict[str, Any] | None = None) -> Job:
    retry = Retry(max=config.max_attempts - 1, interval=config.retry_intervals) \
        if config.max_attempts > 1 else None
    return queue(config.queue, connection).enqueue(
        deliver, account, openid, texts, context, settings, retry=retry,
        on_failure=Callback(send_failed), job_timeout=int(config.timeout_s * 4 * len(texts)) + 30,
        description=f"wechat send {account} {context.get('conversation')}")


__all__ = ["deliver", "enqueue", "send_failed", "send_text", "send_media", "upload_media",
           "Tokens", "SendError", "Refused", "Uncertain", "Unsendable", "window_closed_event",
           "DEAD_LETTERS"]
