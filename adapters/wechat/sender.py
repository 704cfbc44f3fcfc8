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

The platform calls and the shared access token are in :mod:`adapters.wechat.api`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from rq import Callback, Retry
from rq.job import Job, get_current_job
from sqlalchemy.ext.asyncio import AsyncEngine

from core.attachments import AttachmentStore
from core.config import Settings, load_settings
from core.errors import BangbanError, NotFound
from core.jobs import queue, with_engine

from .api import (WINDOW_CLOSED, Refused, SendError, Tokens, Uncertain, Unsendable, send_media,
                  send_text, upload_media)
from .config import WeChatConfig
from .pictures import fit
from .render import note, sendable

log = logging.getLogger(__name__)

CHANNEL = "wechat"
#: how long the outcome of each part of a job is remembered (a retry reads it)
PART_TTL_S = 7 * 24 * 3600
#: an uploaded picture's or voice's media id is kept this long: temporary media live three days
MEDIA_TTL_S = 2 * 24 * 3600
DEAD_LETTERS = "wechat:dead"


def _attachment(cfg: Settings, kind: str, attachment_id: str) -> tuple[bytes, str, str] | None:
    """(bytes, mime, file name) of an agent's attachment that goes as a ``kind`` message, from
    SQL; None if it is gone (or, judged by what was stored, is not one WeChat takes as that)."""

    async def read(engine: AsyncEngine) -> tuple[bytes, str, str] | None:
        try:
            meta, data = await AttachmentStore(engine, cfg.handoff.max_image_bytes,
                                               cfg.handoff.max_voice_bytes).get(attachment_id)
        except NotFound:
            return None
        if sendable(meta.to_attachment()) != kind:
            return None
        # WebP, or a picture over 2 MB, as a JPEG WeChat takes (adapters.wechat.pictures)
        return fit(data, meta.mime, meta.name) if kind == "image" else (data, meta.mime, meta.name)

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
