"""Fan-out between app processes (Redis pub/sub): citizens' outbound messages, workspace events.

A citizen's websocket or long-poll may be held by any process behind the load balancer, while
the message for them (a bot reply, an agent's) is produced in another. Every message stored for
a conversation is published on the outbound topic after it is committed to SQL; each process
listens and hands it to the channel adapter, which delivers it to the connections it holds. The
agent workspace works the same way on its own topic (:class:`Events`): a citizen's message, an
assignment or an SLA breach reaches the agents' browsers whichever process holds their sockets.

Pub/sub is fire-and-forget: a process that misses a message (restart, network blip) loses
nothing, because clients resume from SQL (by sequence number, or by reloading the workspace).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from .dialog.models import Outbound
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

Handler = Callable[[str, str, list[Outbound]], Awaitable[None]]
EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


class _Topic:
    """One Redis pub/sub topic: publish JSON, and a listener task that resubscribes on errors."""

    def __init__(self, redis: aioredis.Redis, topic: str) -> None:
        self.redis = redis
        self.topic = topic
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

    async def _publish_json(self, data: dict[str, Any]) -> None:
        try:
            await self.redis.publish(self.topic, json.dumps(data, ensure_ascii=False))
        except Exception:  # the SQL record stands; clients catch up from it
            log.warning("could not publish on %s; clients will catch up from SQL", self.topic,
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
                    try:
                        data = json.loads(message["data"])
                    except ValueError:
                        log.warning("ignoring a malformed message on %s", self.topic)
                        continue
                    await self._dispatch(data)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("%s: connection lost; resubscribing in 1 s", self.topic,
                            exc_info=True)
                await asyncio.sleep(1)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def _dispatch(self, data: Any) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name=f"listener:{self.topic}")
        try:
            await asyncio.wait_for(self._ready.wait(), 5)
        except TimeoutError:
            log.warning("%s not subscribed yet; continuing (it retries in the background)",
                        self.topic)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


class Bus(_Topic):
    """Outbound messages for citizens: ``(channel, channel_user, [Outbound])``."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        super().__init__(redis, f"{prefix}outbound")
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def publish(self, channel: str, channel_user: str, outs: list[Outbound]) -> None:
        if not outs:
            return
        await self._publish_json({"channel": channel, "user": channel_user,
                                  "outs": [o.model_dump(mode="json") for o in outs]})

    async def _dispatch(self, data: Any) -> None:
        try:
            outs = [Outbound.model_validate(o) for o in data["outs"]]
            channel, user = data["channel"], data["user"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed bus message")
            return
        for handler in self._handlers:
            try:
                await handler(channel, user, outs)
            except Exception:
                log.exception("outbound handler failed")


class Events(_Topic):
    """Workspace events: dicts with at least ``type`` and ``unit`` (see core.handoff.events)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        super().__init__(redis, f"{prefix}workspace")
        self._handlers: list[EventHandler] = []

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def unsubscribe(self, handler: EventHandler) -> None:
        if handler in self._handlers:
            self._handlers.remove(handler)

    async def publish(self, event: dict[str, Any]) -> None:
        await self._publish_json(event)

    async def _dispatch(self, data: Any) -> None:
        if not isinstance(data, dict) or "type" not in data:
            log.warning("ignoring a malformed workspace event")
            return
        for handler in list(self._handlers):
            try:
                await handler(data)
            except Exception:
                log.exception("workspace event handler failed")
