"""The Alipay channel: the app gateway of mini programs and 生活号 (``/channels/alipay/<name>``).

Alipay posts every notification for an app to the gateway URL configured for it. Each one is
checked (size, form, RSA2 signature with the app's Alipay public key — both of Alipay's
sign-content rules — then the XML) before anything is acted on; see ``gateway`` and
``signing``. Then, by ``service``:

- ``alipay.service.check`` (verifygw, when the gateway URL is set up): answered at once with
  the signed XML Alipay expects, holding the app's public key;
- ``alipay.mobile.public.message.notify``: a text, picture or event of a citizen, handed to the
  core as an ``Inbound`` and acknowledged with a signed ack;
- anything else Alipay signs for the app (payment, service-market notifications): ``success``.

Replies never go in the HTTP answer: the gateway protocol has no room for them. Every stored
message of an Alipay citizen — the bot's answers, an agent's, the rating request — reaches
:meth:`AlipayAdapter.push` in every app process; the process that wins a Redis claim on the
messages enqueues one RQ job that sends them, in order, by custom.send (``sender``).

An agent's picture goes as an image-text message whose picture is served by a signed,
expiring URL (``media``, ``GET /api/alipay/v1/media/<app>/<id>``): custom.send cannot upload.

Citizens are ``<app_id>:<user id>``: the same person in two apps is two citizens, and a reply
always goes out through the app the citizen wrote to.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from typing import Any, ClassVar

from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError

from adapters.base import ChannelAdapter
from core.attachments import id_from_url
from core.dialog.models import Inbound, Outbound
from core.nlu.text import numbered_choice

from .config import AlipayApp, AlipayConfig
from .gateway import (
    SERVICE_CHECK, SERVICE_MESSAGE, GatewayError, GatewayMessage, malformed, parse_form,
    parse_message, read_body,
)
from .media import ROUTE, serve
from .sender import Delivery, Part, enqueue, split_text
from .signing import (
    DEFAULT_CHARSET, BadSignature, codec, load_private_key, load_public_key, signed_response,
    verify_params, verifygw_response,
)

#: a claimed message is not claimed again for this long (bus messages arrive within seconds)
CLAIM_TTL_S = 7 * 24 * 3600
#: notifications stamped this far in the future (clock skew) are still taken
MAX_FUTURE_S = 600
#: what an attachment that cannot be shown becomes in the text: a voice message (Alipay's
#: clients cannot play the formats we store), a file, a picture that is not ours to serve
ATTACHMENT_NOTE = {"image": "[图片]", "voice": "[语音]", "file": "[文件]"}
UNSHOWN = "（支付宝渠道暂不能显示，请在“一网通办”网站或随申办APP中查看）"
#: events that start a conversation with the greeting; others (unfollow, enter …) are only
#: acknowledged, so opening the chat does not make the bot speak every time
GREET_EVENTS = {"follow"}


class AlipayAdapter(ChannelAdapter):
    name: ClassVar[str] = "alipay"
    config_model: ClassVar[type[AlipayConfig]] = AlipayConfig
    config: AlipayConfig

    def __init__(self, hub, config: AlipayConfig) -> None:
        super().__init__(hub, config)
        self.prefix = f"{hub.settings.redis.prefix}{self.name}:"
        #: the settings jobs are given; None (production): the worker uses its own
        #: configuration, so the apps' private keys never travel through Redis
        self.job_settings: dict[str, Any] | None = None
        #: messages handed to the core and still running past the answer deadline
        self._tasks: set[asyncio.Task] = set()
        #: pushes between their claim and their enqueue (stop waits for them)
        self._pushing = 0
        self._closing = False

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post("/channels/alipay/{name:[a-z0-9][a-z0-9_-]{0,31}}", self.notify),
                web.get(ROUTE, self.media)]

    async def start(self) -> None:
        if self.config.apps and not self.hub.settings.server.public_url:
            # the workers put this address in the links of agents' pictures
            self.log.warning("alipay: server.public_url is not set, so agents' pictures will "
                             "link to %s, which Alipay's clients cannot reach",
                             self.hub.settings.public_url)

    async def stop(self) -> None:
        # from now on other processes claim the messages: this one could not queue them
        self._closing = True
        # messages still in the core past the answer deadline: let them finish briefly
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        deadline = time.monotonic() + 5
        while self._pushing and time.monotonic() < deadline:  # an enqueue is using the client
            await asyncio.sleep(0.05)

    # -- the gateway --------------------------------------------------------------------------
    async def notify(self, request: web.Request) -> web.Response:
        """POST /channels/alipay/{name}: one notification from Alipay for that app."""
        name = request.match_info["name"]
        try:
            return await self._notify(request, name)
        except GatewayError as exc:
            self.log.info("alipay/%s: refused %d %s", name, exc.status, exc.code)
            return exc.response()

    async def media(self, request: web.Request) -> web.Response:
        """GET /api/alipay/v1/media/{app}/{id}?exp=&sig=: an agent's picture, for Alipay's
        clients (``media``: a signed link or 403, an agent's picture of that app or 404)."""
        try:
            return await serve(request, self.config, self.hub.attachments)
        except GatewayError as exc:
            self.log.info("alipay: media link refused %d %s", exc.status, exc.code)
            return exc.response()

    async def _notify(self, request: web.Request, name: str) -> web.Response:
        app = self.config.app_named(name)
        if app is None:
            raise GatewayError(404, "unknown_app", f"no Alipay app named {name!r} is configured")
        params = parse_form(await read_body(request, self.config.max_body_bytes))
        try:
            rule = verify_params(params, load_public_key(app.alipay_public_key))
        except BadSignature as exc:
            raise GatewayError(401, "bad_signature", str(exc)) from None
        if params.get("app_id") and params["app_id"] != app.app_id:
            raise GatewayError(403, "wrong_app", "the notification is for another app_id than "
                               f"the one configured for {name!r}")
        charset = params.get("charset") or DEFAULT_CHARSET
        service = params.get("service", "")
        biz = params.get("biz_content", "")
        msg = parse_message(biz) if biz and service in (SERVICE_CHECK, SERVICE_MESSAGE) else None
        if msg is not None and msg.app_id and msg.app_id != app.app_id:
            raise GatewayError(403, "wrong_app", "biz_content names another AppId than the one "
                               f"configured for {name!r}")
        self.log.info("alipay/%s: %s verified (%s rule)", name, service or "notification", rule)
        if service == SERVICE_CHECK or (msg is not None and msg.event_type == "verifygw"):
            return self._xml(verifygw_response(self._key(app), charset), charset)
        if service != SERVICE_MESSAGE:
            # signed by Alipay for this app but not a message (a payment, the service
            # market …): nothing for the help desk to do; "success" stops Alipay's retries
            return web.Response(text="success", content_type="text/plain")
        if msg is None:
            raise malformed("missing_biz_content", "a message notification needs biz_content")
        if not (params.get("app_id") or msg.app_id):
            raise GatewayError(403, "wrong_app", "the message names no app (neither app_id nor "
                               "AppId)")
        if not msg.from_user_id:
            raise malformed("missing_user", "biz_content has no FromUserId")
        self._check_time(msg)
        inbound = await self._inbound(app, msg)
        if inbound is not None:
            await self._within_rate(inbound.channel_user)
            await self._handle(inbound)
        return self._ack(app, msg.from_user_id, charset)

    @staticmethod
    def _key(app: AlipayApp):
        return load_private_key(app.app_private_key.get_secret_value())

    @staticmethod
    def _xml(text: str, charset: str) -> web.Response:
        return web.Response(body=text.encode(codec(charset)),
                            content_type="text/xml", charset=charset)

    def _ack(self, app: AlipayApp, user: str, charset: str) -> web.Response:
        """The signed acknowledgement of a message (user and app ids are checked tokens)."""
        inner = (f"<XML><ToUserId><![CDATA[{user}]]></ToUserId><AppId><![CDATA[{app.app_id}]]>"
                 f"</AppId><CreateTime>{int(time.time() * 1000)}</CreateTime>"
                 "<MsgType><![CDATA[ack]]></MsgType></XML>")
        return self._xml(signed_response(inner, self._key(app), charset), charset)

    def _check_time(self, msg: GatewayMessage) -> None:
        """Notifications carry no nonce: the time bounds how long a captured one could be
        replayed, and stays within the 24 h the core remembers message ids for."""
        if msg.create_time is None:
            raise malformed("missing_create_time", "biz_content has no CreateTime")
        created = msg.create_time / 1000 if msg.create_time > 10**11 else msg.create_time
        age = time.time() - created
        if age > self.config.max_message_age_s or age < -MAX_FUTURE_S:
            raise malformed("stale_message", f"CreateTime is {int(abs(age))} s in the "
                            f"{'past' if age > 0 else 'future'}; messages older than "
                            f"{self.config.max_message_age_s} s are not taken")

    async def _inbound(self, app: AlipayApp, msg: GatewayMessage) -> Inbound | None:
        """The core's Inbound for a message, or None for what only needs acknowledging."""
        user = f"{app.app_id}:{msg.from_user_id}"
        if msg.msg_id:
            msg_id = f"{app.app_id}:{msg.msg_id}"
        elif msg.create_time is not None:  # events carry no MsgId: their content is their id
            seed = f"{msg.from_user_id}\n{msg.event_type}\n{msg.action_param}\n{msg.create_time}"
            msg_id = f"{app.app_id}:ev:{hashlib.sha256(seed.encode()).hexdigest()[:40]}"
        else:
            msg_id = None
        base: dict[str, Any] = {"channel": self.name, "channel_user": user, "msg_id": msg_id,
                                "meta": {"alipay_app": app.name}}
        try:
            if msg.msg_type == "text":
                if not msg.text.strip():
                    return None
                picked = await self._picked(user, msg.text)
                if picked is not None:
                    return Inbound(**base, kind="quick_reply", text=picked["label"],
                                   payload=picked["payload"])
                return Inbound(**base, text=msg.text)
            if msg.msg_type == "image":
                return Inbound(**base, kind="image")
            if msg.msg_type == "event" and msg.event_type == "click" and msg.action_param:
                return Inbound(**base, kind="event", text=msg.action_param)
            if msg.msg_type == "event" and msg.event_type in GREET_EVENTS:
                return Inbound(**base, kind="event")
        except ValidationError as exc:
            err = exc.errors()[0]
            raise malformed("invalid", f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        return None

    async def _within_rate(self, channel_user: str) -> None:
        limit = self.config.rate_limit_per_minute
        count, retry = await self.count_message(channel_user)
        if count > limit:
            raise GatewayError(429, "rate_limited", f"more than {limit} messages a minute from "
                               f"this citizen; try again in {retry} s",
                               headers={"Retry-After": str(retry)})

    async def _handle(self, inbound: Inbound) -> None:
        """Run the message through the core, waiting at most ``answer_within_s``: past that
        the notification is acknowledged and the work goes on (its replies go by push)."""
        task = asyncio.create_task(self.hub.handle(inbound))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        try:
            await asyncio.wait_for(asyncio.shield(task), self.config.answer_within_s)
        except TimeoutError:
            self.log.warning("alipay: the core took over %.1f s; acknowledged, still working",
                             self.config.answer_within_s)
        except Exception:  # logged by _finished; the core let go of the MsgId: a retry is taken
            raise GatewayError(503, "unavailable", "the help desk cannot take the message "
                               "now; retry later") from None

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # raised within the deadline too, where the request answers 500 and Alipay retries
            self.log.error("alipay: handling a message failed: %r", task.exception())

    # -- numbered menus -----------------------------------------------------------------------
    def _menu_key(self, channel_user: str) -> str:
        return f"{self.prefix}menu:{channel_user}"

    async def _picked(self, channel_user: str, text: str) -> dict[str, str] | None:
        """The quick reply a typed number picks from the last menu this citizen was shown."""
        choice = numbered_choice(text)
        if choice is None:
            return None
        raw = await self.hub.redis.get(self._menu_key(channel_user))
        menu = json.loads(raw) if raw else []
        return menu[choice - 1] if 1 <= choice <= len(menu) else None

    async def _remember_menu(self, channel_user: str, last: Outbound) -> None:
        """The numbers of the newest message are the ones that count: a message without a menu
        (an agent's answer, say) clears it, so a "1" typed to a person stays a "1"."""
        key = self._menu_key(channel_user)
        if last.quick_replies:
            menu = [{"label": q.label, "payload": q.payload} for q in last.quick_replies]
            await self.hub.redis.set(key, json.dumps(menu, ensure_ascii=False),
                                     ex=self.hub.settings.bot.context_ttl_s)
        else:
            await self.hub.redis.delete(key)

    # -- delivery -----------------------------------------------------------------------------
    @staticmethod
    def pictures(out: Outbound) -> list[str]:
        """The attachment ids of an agent's stored pictures in the message: each goes as an
        image-text message of its own, after the message's text."""
        if out.sender != "agent":
            return []
        return [i for a in out.attachments if a.kind == "image" and (i := id_from_url(a.url))]

    def render(self, out: Outbound) -> str:
        """The message's text: links as "title: url", quick replies as a numbered menu ("回复
        1、2 选择"), an agent's rating request as "回复1-5", voice messages and files as a note.
        The pictures of :meth:`pictures` are left out: they go as image-text messages. Empty
        when the message is only such pictures."""
        if out.rating is not None and out.rating.segment == "agent":
            text = out.plain_text(numbered_replies=False) + "\n\n（回复1-5评价）"
        elif out.rating is not None:  # the bot's 已解决 / 未解决: the question, then the menu
            body = out.model_copy(update={"quick_replies": []}).plain_text()
            menu = out.model_copy(update={"text": "", "links": [], "cards": []}).plain_text()
            text = "\n\n".join(p for p in (body, out.rating.prompt, menu) if p)
        else:
            text = out.plain_text()
        sent = set(self.pictures(out))
        notes = [ATTACHMENT_NOTE.get(a.kind, "[文件]") for a in out.attachments
                 if not (a.kind == "image" and id_from_url(a.url) in sent)]
        if notes:
            text = "\n".join(p for p in (text, "".join(notes) + UNSHOWN) if p)
        if text and out.sender == "agent" and out.sender_name:
            text = f"{out.sender_name}：{text}"
        return text

    def parts(self, out: Outbound) -> list[Part]:
        """What custom.send sends for one message, in order: its text (in pieces if long),
        then each of its pictures."""
        text = self.render(out)
        pieces = split_text(text, self.config.max_send_chars) if text else []
        parts = [Part(id=out.message_id if len(pieces) == 1 else f"{out.message_id}.{i}",
                      message_id=out.message_id, text=piece)
                 for i, piece in enumerate(pieces, 1)]
        desc = f"{out.sender_name or '工作人员'}发来的图片"
        parts += [Part(id=f"{out.message_id}.pic{i}", message_id=out.message_id, kind="image",
                       text=desc, attachment_id=attachment_id)
                  for i, attachment_id in enumerate(self.pictures(out), 1)]
        return parts

    async def push(self, channel_user: str, outs: list[Outbound]) -> None:
        """Send each stored message once: claim the batch, then queue one job for it."""
        todo = [o for o in outs if o.seq > 0 and o.sender != "citizen" and o.message_id]
        if not todo or self._closing:
            return  # transient statuses (seq 0) and the citizen's own messages
        self._pushing += 1
        try:
            await self._claim_and_queue(channel_user, todo)
        finally:
            self._pushing -= 1

    async def _claim_and_queue(self, channel_user: str, todo: list[Outbound]) -> None:
        app_id, _, user = channel_user.partition(":")
        app = self.config.app_with_id(app_id)
        if app is None or not user:
            self.log.warning("alipay: no configured app for a citizen of app %s", app_id[:32])
            return
        # one MULTI/EXEC: Redis runs one process's SET NXs without another's in between, so
        # one process wins the whole batch and the messages go out in one job, in order
        async with self.hub.redis.pipeline(transaction=True) as pipe:
            for out in todo:
                pipe.set(f"{self.prefix}claim:{out.message_id}", 1, nx=True, ex=CLAIM_TTL_S)
            won = await pipe.execute()
        mine = [o for o, ok in zip(todo, won, strict=True) if ok]
        if not mine:
            return
        mine.sort(key=lambda o: o.seq)
        await self._remember_menu(channel_user, mine[-1])
        parts = [part for out in mine for part in self.parts(out)]
        if not parts:  # messages with neither text nor a picture: nothing to send
            return
        delivery = Delivery(app=app.name, to_user_id=user, conversation_id=mine[0].conversation_id,
                            parts=parts)
        try:
            await asyncio.to_thread(enqueue, self.hub.rq, delivery, self.config, self.job_settings)
        except Exception:  # Redis down, most likely: the messages stay in SQL, unsent
            self.log.exception("alipay: could not queue messages %s of %s",
                               ", ".join(o.message_id for o in mine), delivery.conversation_id)
            with contextlib.suppress(RedisError, OSError):  # not handled: don't say they were
                await self.hub.redis.delete(*(f"{self.prefix}claim:{o.message_id}"
                                              for o in mine))


__all__ = ["AlipayAdapter"]
