"""The WeChat channel: Official Accounts and Mini Program customer service, one callback URL per
account (``/channels/wechat/<name>``), on wechatpy's crypto.

A request passes, in order: the account exists (404); the body is within ``max_body_bytes``
(413); the query has the signature parameters (400) and the right mode for the account (400);
the timestamp is within the account's replay window (401); the signature — ``signature`` in
plaintext mode, ``msg_signature`` over the ``Encrypt`` value in safe mode — matches (401); the
XML or JSON parses without any DTD (400) and decrypts for this AppID (400); it is a WeChat
message (400). Then the citizen's rate limit (acknowledged with ``success`` and dropped, since
WeChat would only retry a 429) and the core, which drops platform retries by ``MsgId``
(events: sender + ``CreateTime``).

The 5-second rule: the core gets ``reply_budget_s`` (4 s) to answer. An Official Account's
answer that is ready in time goes back in the HTTP response (a passive reply, encrypted in safe
mode); anything else — late answers, what did not fit in one message, everything of a Mini
Program, agents' messages — is sent by the customer-service API from ``push`` through an RQ job
(``adapters.wechat.outbox`` and ``.sender``). Refusals are JSON ``{"error", "message"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from aiohttp import web

from adapters.base import ChannelAdapter
from core.bodies import read_limited
from core.dialog.models import Inbound, Outbound

from .config import WeChatAccount, WeChatConfig
from .crypto import AccountCrypto, BadPayload, BadSignature, new_nonce
from .inbound import Malformed, PushMessage, envelope, message, parse, to_inbound
from .outbox import Outbox, deliverable
from .render import MAX_BYTES, media, passive_xml, render_text

log = logging.getLogger(__name__)

PREFIX = "/channels/wechat"
#: a platform retry within this long gets the same passive reply again (it retries 3 times,
#: 5 s apart, when our answer did not reach it)
REPLY_CACHE_S = 30
UNSUPPORTED = "小申目前只能看懂文字、图片和语音消息，请用文字描述您的问题。"
TOO_FAST = "您发送消息太频繁了，请稍后再试。"
SUCCESS = "success"


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        resp = web.json_response({"error": self.code, "message": self.message},
                                 status=self.status)
        if self.status == 413:
            resp.force_close()  # the rest of the body was not read
        return resp


def _plain(text: str, **headers: str) -> web.Response:
    return web.Response(text=text, content_type="text/plain", headers=headers or None)


class WeChatAdapter(ChannelAdapter):
    name: ClassVar[str] = "wechat"
    config_model: ClassVar[type[WeChatConfig]] = WeChatConfig
    config: WeChatConfig

    def __init__(self, hub, config: WeChatConfig) -> None:
        super().__init__(hub, config)
        self.crypto = {a.name: AccountCrypto(a.token, a.app_id, a.aes_key)
                       for a in config.accounts}
        self.outbox = Outbox(self)
        #: the Settings dump handed to send jobs; None: workers use their own configuration
        #: (production: the same config file), tests: the app's settings
        self.job_settings: dict[str, Any] | None = None
        #: answers still being worked on after their request got ``success``
        self._late: set[asyncio.Task] = set()

    def routes(self) -> list[web.AbstractRouteDef]:
        found = []
        for acc in self.config.accounts:
            path = f"{PREFIX}/{acc.name}"
            found.append(web.get(path, self._bind(self.verify_url, acc), allow_head=False))
            found.append(web.post(path, self._bind(self.receive, acc)))
        return found

    @staticmethod
    def _bind(handler: Callable[[WeChatAccount, web.Request], Awaitable[web.StreamResponse]],
              acc: WeChatAccount):
        async def route(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(acc, request)
            except Refusal as exc:
                log.info("wechat %s: refused %s (%s)", acc.name, exc.code, exc.message)
                return exc.response()

        return route

    async def start(self) -> None:
        self.outbox.rq = self.hub.rq  # the process's RQ client (the core closes it)

    async def stop(self) -> None:
        # a late answer still running finishes its SQL writes; its push needs no request
        if self._late:
            await asyncio.wait(self._late, timeout=5)

    # -- delivery ---------------------------------------------------------------------------
    def render(self, out: Outbound) -> str:
        return render_text(out)

    async def push(self, channel_user: str, outs: list[Outbound]) -> None:
        await self.outbox.push(channel_user, outs)

    # -- checks -----------------------------------------------------------------------------
    def _fresh(self, acc: WeChatAccount, request: web.Request) -> tuple[str, str]:
        timestamp, nonce = request.query.get("timestamp"), request.query.get("nonce")
        if not timestamp or not nonce:
            raise Refusal(400, "missing_signature", "timestamp and nonce are required")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
                and len(nonce) <= 64):
            raise Refusal(400, "bad_timestamp", "timestamp must be unix time in seconds and "
                          "nonce at most 64 characters")
        window = acc.replay_window_s
        skew = int(timestamp) - time.time()
        if window and abs(skew) > window:
            when = "in the future" if skew > 0 else "old"
            raise Refusal(401, "stale_timestamp", f"the timestamp is {abs(int(skew))} s {when}; "
                          f"requests must be signed within {window} s of the server's clock")
        return timestamp, nonce

    async def verify_url(self, acc: WeChatAccount, request: web.Request) -> web.Response:
        """GET: the platform checks the callback URL (服务器配置) by having us echo ``echostr``."""
        timestamp, nonce = self._fresh(acc, request)
        try:
            self.crypto[acc.name].check_signature(request.query.get("signature"), timestamp,
                                                  nonce)
        except BadSignature as exc:
            raise Refusal(401, exc.code, str(exc)) from None
        echostr = request.query.get("echostr", "")
        if not (0 < len(echostr) <= 128 and echostr.isascii() and echostr.isalnum()):
            raise Refusal(400, "bad_echostr", "echostr must be 1-128 letters or digits")
        return _plain(echostr)

    async def _read(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        too_large = Refusal(413, "body_too_large",
                            f"the request body exceeds the limit of {limit} bytes")
        body = await read_limited(request, limit)
        if body is None:
            raise too_large
        return body

    async def _open(self, acc: WeChatAccount, request: web.Request
                    ) -> tuple[PushMessage, str, str]:
        """The verified message, the format it came in, and the request's nonce."""
        body = await self._read(request)
        q = request.query
        encrypted = q.get("encrypt_type", "raw").lower() == "aes"
        if acc.safe_mode and not encrypted:
            raise Refusal(400, "not_encrypted", "this account is in safe mode: messages must "
                          "be encrypted (encrypt_type=aes)")
        if encrypted and not acc.safe_mode:
            raise Refusal(400, "no_aes_key", "this account is in plaintext mode (no "
                          "encoding_aes_key configured) but the message is encrypted")
        timestamp, nonce = self._fresh(acc, request)
        crypto = self.crypto[acc.name]
        try:
            if not encrypted:
                crypto.check_signature(q.get("signature"), timestamp, nonce)
                fmt, data = parse(body)
            else:
                fmt, outer = parse(body)
                sealed = envelope(outer)
                crypto.check_msg_signature(q.get("msg_signature"), timestamp, nonce,
                                           sealed.Encrypt)
                inner_fmt, data = parse(crypto.decrypt(sealed.Encrypt).encode())
                if inner_fmt != fmt:
                    raise Malformed(f"the encrypted message is {inner_fmt}, its envelope {fmt}")
            return message(data), fmt, nonce
        except BadSignature as exc:
            raise Refusal(401, exc.code, str(exc)) from None
        except (Malformed, BadPayload) as exc:
            raise Refusal(400, exc.code, str(exc)) from None

    async def _within_rate(self, channel_user: str) -> int:
        """This minute's count of the citizen's messages (0 when within the limit)."""
        count, _ = await self.count_message(channel_user)
        return 0 if count <= self.config.rate_limit_per_minute else count

    # -- the request ------------------------------------------------------------------------
    async def receive(self, acc: WeChatAccount, request: web.Request) -> web.Response:
        """POST: one message or event from the platform."""
        started = time.monotonic()
        msg, fmt, _ = await self._open(acc, request)
        try:
            inbound = to_inbound(acc.name, acc.app_id, self.name, msg)
        except ValueError as exc:  # pydantic: a field the core cannot take
            raise Refusal(400, "invalid", str(exc).splitlines()[0][:200]) from None
        user = f"{acc.name}:{msg.FromUserName}"
        if msg.MsgType != "event":
            await self.outbox.seen(user, event=False)  # the platform's 48-hour window opens
        if inbound is None:
            if msg.MsgType != "event" and acc.kind == "official_account":
                return self._reply(acc, msg, fmt, UNSUPPORTED)
            return _plain(SUCCESS)
        if inbound.kind == "event":
            await self.outbox.seen(user, event=True)
        over = await self._within_rate(user)
        if over:
            self.log.info("wechat %s: rate limit: message %d this minute dropped", acc.name, over)
            notice = over == self.config.rate_limit_per_minute + 1 \
                and acc.kind == "official_account"
            headers = {"X-Bangban-Dropped": f"rate_limited: more than "
                       f"{self.config.rate_limit_per_minute} messages a minute"}
            resp = self._reply(acc, msg, fmt, TOO_FAST) if notice else _plain(SUCCESS)
            resp.headers.update(headers)
            return resp
        cached = await self.hub.redis.get(self._reply_key(inbound)) if inbound.msg_id else None
        if cached is not None:  # a platform retry of a message we answered in the response
            return self._reply(acc, msg, fmt, cached.decode(), headers={
                "X-Bangban-Dropped": "duplicate: answered before"})
        budget = self.config.reply_budget_s - (time.monotonic() - started)
        return await self._answer(acc, msg, fmt, inbound, user, budget)

    async def _answer(self, acc: WeChatAccount, msg: PushMessage, fmt: str, inbound: Inbound,
                      user: str, budget: float) -> web.Response:
        await self.outbox.begin(user)
        replies: list[Outbound] = []
        in_response: list[Outbound] = []
        failed = False
        try:
            task = asyncio.create_task(self.hub.handle(inbound))
            done, _ = await asyncio.wait({task}, timeout=max(budget, 0.001))
            if not done:
                self._late.add(task)
                task.add_done_callback(self._late_done)
                self.log.info("wechat %s: answer not ready in %.1f s; it goes by the API",
                              acc.name, self.config.reply_budget_s)
            elif task.exception() is not None:
                failed = True
                self.log.error("wechat %s: handling failed", acc.name,
                               exc_info=task.exception())
            else:
                result = task.result()
                if result.duplicate:
                    return _plain(SUCCESS, **{"X-Bangban-Dropped": "duplicate"})
                replies = deliverable(result.replies)
                if acc.kind == "official_account":
                    in_response = await self.outbox.claim(self._fit(replies), "reply")
        finally:
            # after the claims above: what the core published meanwhile was parked for us
            parked = await self.outbox.finish(user)
            taken = {o.message_id for o in in_response}
            await self.outbox.send(user, [o for o in parked + replies
                                          if o.message_id not in taken])
        if failed:
            # the core released the message id: the platform's retry is handled afresh
            raise Refusal(503, "unavailable", "the message could not be handled; retry")
        if not in_response:
            return _plain(SUCCESS)
        content = "\n\n".join(render_text(o) for o in in_response)
        if inbound.msg_id:
            await self.hub.redis.set(self._reply_key(inbound), content, ex=REPLY_CACHE_S)
        return self._reply(acc, msg, fmt, content)

    @staticmethod
    def _fit(replies: list[Outbound]) -> list[Outbound]:
        """The first replies that fit in one passive reply (the rest go by the API). A reply
        with a picture or a playable voice, and what follows it, go by the API: only there can
        it be shown (or heard)."""
        chosen, size = [], -2
        for out in replies:
            if media(out):
                break
            size += 2 + len(render_text(out).encode())
            if size > MAX_BYTES:
                break
            chosen.append(out)
        return chosen

    def _late_done(self, task: asyncio.Task) -> None:
        self._late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("wechat: a late answer failed", exc_info=task.exception())

    def _reply_key(self, inbound: Inbound) -> str:
        return f"{self.outbox.prefix}reply:{inbound.msg_id}"

    def _reply(self, acc: WeChatAccount, msg: PushMessage, fmt: str, content: str, *,
               headers: dict[str, str] | None = None) -> web.Response:
        """A passive text reply (Official Accounts; XML), sealed in safe mode."""
        if acc.kind != "official_account" or fmt != "xml":
            return _plain(SUCCESS, **(headers or {}))
        xml = passive_xml(msg.FromUserName, msg.ToUserName, content)
        if acc.safe_mode:
            xml = self.crypto[acc.name].seal(xml, fmt="xml", timestamp=str(int(time.time())),
                                             nonce=new_nonce())
        return web.Response(text=xml, content_type="application/xml", headers=headers)


__all__ = ["WeChatAdapter", "PREFIX", "Refusal"]
