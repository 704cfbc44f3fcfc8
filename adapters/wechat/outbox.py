"""Getting each message to the platform exactly once, from N app processes.

Every stored message of a WeChat citizen reaches ``push`` in *every* app process (the bus). Of
those, some were already delivered in the HTTP response (the 5-second rule), and each of the
others must be handed to exactly one send job. Three Redis mechanisms do it:

- **the claim**: ``SET NX wechat:sent:<message_id>``, value ``reply`` (the request handler put it
  in its response) or ``api`` (a send job was enqueued). Whoever sets it first delivers; every
  other process skips the message.
- **the in-flight counter** ``wechat:inflight:<citizen>``: while a request of this citizen is
  waiting for its answer, the answer must not be claimed for the API before the handler could
  claim it for the response. So ``push`` does not claim anything for that citizen then: it
  parks the messages in ``wechat:deferred:<citizen>`` (a hash by message id, so the N
  processes' copies are one). The handler claims what goes in its response, then decrements
  the counter; whoever brings it to zero takes the parked messages and claims them. Parking and
  draining are single Lua scripts, so a message is either parked while someone is in flight
  (who will drain it) or claimed at once: none can fall between. A handler that died leaves
  parked messages behind for at most ``PARK_TTL_S``; the citizen's next push drains them.
- **the window**: the platform accepts customer-service messages only within 48 hours of the
  citizen's last message (and one minute after a subscribe / entering the session). The time
  of the last inbound message is kept in Redis; an agent's message outside the window is not
  sent, and the agent is told (``channel_window_closed`` workspace event).

Transient status updates (``seq`` 0) are never sent: the stored messages that start, move or end
a wait already say everything in text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from core.dialog.models import Outbound
from core.handoff.store import HandoffStore

from . import sender
from .render import parts

if TYPE_CHECKING:
    from .adapter import WeChatAdapter

log = logging.getLogger(__name__)

#: how long a claim is kept (a bus message older than this is not worth sending anyway)
CLAIM_TTL_S = 7 * 24 * 3600
WINDOW_S = 48 * 3600
#: a welcome event (subscribe, entering the session) opens a short window of its own
EVENT_WINDOW_S = 60
PARK_TTL_S = 120

_PARK = """
local n = tonumber(redis.call('get', KEYS[1]) or '0')
if n > 0 then
  for i = 2, #ARGV, 2 do redis.call('hset', KEYS[2], ARGV[i], ARGV[i + 1]) end
  redis.call('pexpire', KEYS[2], ARGV[1])
  return {'parked'}
end
local rest = redis.call('hvals', KEYS[2])
redis.call('del', KEYS[2])
table.insert(rest, 1, 'send')
return rest
"""
_FINISH = """
local n = redis.call('decr', KEYS[1])
if n > 0 then return {} end
redis.call('del', KEYS[1])
local rest = redis.call('hvals', KEYS[2])
redis.call('del', KEYS[2])
return rest
"""


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def deliverable(outs: list[Outbound]) -> list[Outbound]:
    """What the platform should show: stored, not the citizen's own, not a bare status."""
    return [o for o in outs if o.seq > 0 and o.message_id and o.sender != "citizen"]


class Outbox:
    def __init__(self, adapter: WeChatAdapter) -> None:
        self.adapter = adapter
        self.hub = adapter.hub
        self.config = adapter.config
        self.prefix = f"{adapter.hub.settings.redis.prefix}wechat:"
        self.rq = None  # a synchronous Redis client for RQ, made in start()

    def _k(self, kind: str, ident: str) -> str:
        return f"{self.prefix}{kind}:{ident}"

    # -- the request side ---------------------------------------------------------------------
    async def seen(self, channel_user: str, *, event: bool) -> None:
        """The citizen wrote (or subscribed / entered): the send window opens or stays open."""
        if event:
            await self.hub.redis.set(self._k("event-in", channel_user), 1, ex=EVENT_WINDOW_S)
        else:
            await self.hub.redis.set(self._k("last-in", channel_user), int(time.time()),
                                     ex=WINDOW_S + 3600)

    async def begin(self, channel_user: str) -> None:
        key = self._k("inflight", channel_user)
        ttl_ms = int((self.config.reply_budget_s + 5) * 1000)
        async with self.hub.redis.pipeline(transaction=True) as pipe:
            await pipe.incr(key).pexpire(key, ttl_ms).execute()

    async def finish(self, channel_user: str) -> list[Outbound]:
        """The request is answered: the messages parked meanwhile, if this was the last one."""
        raw = await self.hub.redis.eval(_FINISH, 2, self._k("inflight", channel_user),
                                        self._k("deferred", channel_user))
        return [Outbound.model_validate_json(r) for r in raw]

    async def claim(self, outs: list[Outbound], how: str) -> list[Outbound]:
        """The messages of ``outs`` this process now delivers (``how``: reply / api)."""
        won = []
        for out in outs:
            if await self.hub.redis.set(self._k("sent", out.message_id), how, nx=True,
                                        ex=CLAIM_TTL_S):
                won.append(out)
        return won

    # -- push ---------------------------------------------------------------------------------
    async def push(self, channel_user: str, outs: list[Outbound]) -> None:
        outs = deliverable(outs)
        if not outs:
            return
        args: list[Any] = [PARK_TTL_S * 1000]
        for out in outs:
            args += [out.message_id, out.model_dump_json()]
        result = await self.hub.redis.eval(_PARK, 2, self._k("inflight", channel_user),
                                           self._k("deferred", channel_user), *args)
        if _text(result[0]) == "parked":
            return  # a request of this citizen is in flight: its handler delivers these
        parked = [Outbound.model_validate_json(r) for r in result[1:]]
        await self.send(channel_user, parked + outs)

    async def send(self, channel_user: str, outs: list[Outbound]) -> None:
        """Claim ``outs`` for the API and enqueue one send job with what this process won."""
        unique = {o.message_id: o for o in deliverable(outs)}
        ordered = sorted(unique.values(), key=lambda o: (o.seq, o.created_at))
        won = await self.claim(ordered, "api")
        if not won:
            return
        account, _, openid = channel_user.partition(":")
        if self.config.account(account) is None:
            log.warning("wechat: no account %r configured; %d message(s) not sent", account,
                        len(won))
            return
        context = await self._context(won)
        if not await self.window_open(channel_user):
            await self._closed(context, won)
            return
        try:
            await asyncio.to_thread(sender.enqueue, self.rq, self.config, account, openid,
                                    parts(won), context, self.adapter.job_settings)
        except Exception:
            # Redis refused the job: give the claims back, so the bus copy that reaches
            # another process (or a later push) can try again
            log.exception("wechat: could not enqueue the send of %s", context["messages"])
            with contextlib.suppress(Exception):
                await self.hub.redis.delete(*[self._k("sent", o.message_id) for o in won])

    async def window_open(self, channel_user: str) -> bool:
        last, event = await self.hub.redis.mget(self._k("last-in", channel_user),
                                                self._k("event-in", channel_user))
        if event is not None:
            return True
        return last is not None and time.time() - int(last) < WINDOW_S

    async def _context(self, outs: list[Outbound]) -> dict[str, Any]:
        """Who to tell when a send fails: the unit of the conversation's open human help."""
        conversation = outs[0].conversation_id
        context: dict[str, Any] = {"conversation": conversation, "unit": None, "handoff": None,
                                   "messages": [o.message_id for o in outs]}
        if conversation and any(o.sender != "bot" for o in outs):
            h = await HandoffStore(self.hub.engine).current(conversation)
            if h is not None:
                context.update(unit=h.unit, handoff=h.id)
        return context

    async def _closed(self, context: dict[str, Any], outs: list[Outbound]) -> None:
        log.info("wechat: 48-hour window closed; %d message(s) of %s not sent", len(outs),
                 context["conversation"])
        if context["unit"]:
            await self.hub.events.publish(sender.window_closed_event(context, "window"))


__all__ = ["Outbox", "deliverable", "WINDOW_S", "EVENT_WINDOW_S"]
