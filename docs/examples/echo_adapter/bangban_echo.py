"""Echo: the smallest complete Bangban channel. Plain text comes in and plain text goes out.

    POST /channels/echo/{user}        body: the citizen's message (UTF-8 text); optional header
                                      X-Echo-Msg-Id de-duplicates retries
                                      → 200 text/plain: the replies, numbered quick replies included
    GET  /channels/echo/{user}/inbox  → 200 JSON: the last messages pushed to {user} (this process)

It trusts whoever can reach it, so it is a demonstration, not a production channel.
docs/adapters.md walks through it; install with ``pip install docs/examples/echo_adapter``.
"""

from __future__ import annotations

from collections import deque

from aiohttp import web
from pydantic import Field, ValidationError

from adapters.base import AdapterConfig, ChannelAdapter
from core.dialog.models import MAX_TEXT, Inbound, Outbound

USER = "{user:[A-Za-z0-9_-]{1,64}}"  # the channel's identity for the citizen (Inbound.channel_user)
MAX_USERS = 10_000  # in-memory inboxes kept; the oldest is dropped beyond this


class EchoConfig(AdapterConfig):
    """``channels.echo`` in Bangban's configuration."""

    #: the answer to an empty message (no conversation is started for it)
    greeting: str = Field("您好，这里是帮办 echo 渠道，请直接输入您的问题。", max_length=500)
    #: pushed messages kept per citizen
    inbox_size: int = Field(20, ge=1, le=1000)


class EchoAdapter(ChannelAdapter):
    name = "echo"  # == the entry-point name == the config key == Inbound.channel
    config_model = EchoConfig
    config: EchoConfig

    def __init__(self, hub, config: EchoConfig) -> None:
        super().__init__(hub, config)
        self.inbox: dict[str, deque[dict]] = {}

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(f"/channels/echo/{USER}", self.receive),
                web.get(f"/channels/echo/{USER}/inbox", self.read_inbox)]

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()  # bounded by server.max_body_bytes (413 beyond it)
        if len(body) > 4 * MAX_TEXT:  # a size check before any parsing
            raise web.HTTPRequestEntityTooLarge(4 * MAX_TEXT, len(body),
                                                text=f"at most {MAX_TEXT} characters")
        user, msg_id = request.match_info["user"], request.headers.get("X-Echo-Msg-Id")
        try:
            inbound = Inbound(channel=self.name, channel_user=user,
                              text=body.decode("utf-8").strip(),
                              # the core de-duplicates per channel: scope the client's id
                              msg_id=f"{user}:{msg_id}" if msg_id else None)
        except (UnicodeDecodeError, ValidationError):
            raise web.HTTPBadRequest(
                text=f"expected UTF-8 text of at most {MAX_TEXT} characters "
                     "and an X-Echo-Msg-Id of at most 63") from None
        if not inbound.text:
            return web.Response(text=self.config.greeting)
        self.log.debug("message of %d characters", len(inbound.text))  # never the text itself
        result = await self.hub.handle(inbound)
        if result.duplicate:  # a retry of a message already handled: its replies went out then
            return web.Response(status=204)
        return web.Response(text="\n\n".join(self.render(out) for out in result.replies))

    def render(self, out: Outbound) -> str:
        return out.plain_text()  # text, links, cards, then "1. … （回复 1、2 选择）"

    async def push(self, channel_user: str, outs: list[Outbound]) -> None:
        box = self.inbox.get(channel_user)
        if box is None:
            if len(self.inbox) >= MAX_USERS:
                self.inbox.pop(next(iter(self.inbox)))
            box = self.inbox[channel_user] = deque(maxlen=self.config.inbox_size)
        box.extend({"seq": out.seq, "sender": out.sender, "text": self.render(out)}
                   for out in outs if out.sender != "citizen")  # not their own messages

    async def read_inbox(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.inbox.get(request.match_info["user"], ())))
