"""Fan-out of outbound messages to every app process (Redis pub/sub).

A citizen's websocket or long-poll may be held by any process behind the load balancer, while
the message for them (a bot reply, later an agent's) is produced in another. Every message
stored for a conversation is published here after it is committed to SQL; each process
listens and hands it to the channel adapter, which delivers it to the connections it holds.
Pub/sub is fire-and-forget: a process that misses a message (restart, network blip) loses
nothing, because clients resume from SQL by sequence number.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from .dialog.models import Outbound
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

Handler = Callable[[str, str, list[Outbound]], Awaitable[None]]


class Bus:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.topic = f"{prefix}outbound"
        self._handlers: list[Handler] = []
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def publish(self, channel: str, channel_user: str, outs: list[Outbound]) -> None:
        if not outs:
            return
        body = json.dumps({"channel": channel, "user": channel_user,
                           "outs": [o.model_dump(mode="json") for o in outs]},
                          ensure_ascii=False)
        try:
            await self.redis.publish(self.topic, body)
        except Exception:  # the SQL record stands; clients catch up from it
            log.warning("could not publish outbound messages; clients will catch up from SQL",
                        exc_info=True)

    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.topic)
                self._ready.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    await self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("bus connection lost; resubscribing in 1 s", exc_info=True)
                await asyncio.sleep(1)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def _dispatch(self, raw: bytes | str) -> None:
        try:
            data = json.loads(raw)
            outs = [Outbound.model_validate(o) for o in data["outs"]]
        except (ValueError, KeyError):
            log.warning("ignoring a malformed bus message")
            return
        for handler in self._handlers:
            try:
                await handler(data["channel"], data["user"], outs)
            except Exception:
                log.exception("outbound handler failed")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="bus-listener")
        try:
            await asyncio.wait_for(self._ready.wait(), 5)
        except TimeoutError:
            log.warning("bus not subscribed yet; continuing (it retries in the background)")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
