"""Kiosk sessions: one per person at a terminal, kept in Redis, ended by the idle wipe.

A session is the member ``<device>:<session id>`` (the ``channel_user`` of its messages) of one
sorted set, scored by its last activity. Being in the set is what makes a session *alive*: a
websocket may only resume an alive session of its own terminal, so a session that was wiped
cannot come back by reload, by a remembered id, or from another terminal.

Ending a session is claimed with ``ZREM`` (only the caller that removes the member goes on), so
the page's own wipe and the sweeps of several processes never end one session twice. Ending
(``retire``) closes what the server holds for that person:

- a human-help segment: a waiting one / a 留言 is cancelled through core.handoff (the kiosk will
  never see a later answer); an assigned one is finished as ``closed`` / ``no_reply``, the agent
  is told in the conversation and by a workspace event, and their place is freed;
- the conversation is closed in SQL, and its live context (last question, options) dropped
  from Redis;

If that fails (database blip), the session goes on a retry list (not back among the alive: it
must stay unresumable), which the next sweep works through.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .adapter import KioskAdapter

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^s[A-Za-z0-9_-]{16}$")
#: stored in the conversation for the agent (the transcript) when the citizen has gone
LEFT_TEXT = "群众已离开自助终端（长时间无操作，屏幕已清除），本次人工服务结束。"
LEFT_NOTE = "自助终端空闲超时，群众已离开"


def new_session_id() -> str:
    return "s" + secrets.token_urlsafe(12)


class Sessions:
    def __init__(self, adapter: KioskAdapter) -> None:
        self.adapter = adapter

    @property
    def hub(self):
        return self.adapter.hub

    @property
    def _key(self) -> str:
        return f"{self.hub.settings.redis.prefix}kiosk:sessions"

    @property
    def _retry_key(self) -> str:
        return f"{self.hub.settings.redis.prefix}kiosk:retire"

    @staticmethod
    def user(device: str, session_id: str) -> str:
        return f"{device}:{session_id}"

    @staticmethod
    def parse(user: str) -> tuple[str, str]:
        device, _, session_id = user.partition(":")
        return device, session_id

    # -- the registry -------------------------------------------------------------------------
    async def new(self, device: str) -> str:
        user = self.user(device, new_session_id())
        await self.hub.redis.zadd(self._key, {user: time.time()})
        return user

    async def alive(self, user: str) -> bool:
        return await self.hub.redis.zscore(self._key, user) is not None

    async def alive_many(self, users: list[str]) -> dict[str, bool]:
        async with self.hub.redis.pipeline(transaction=False) as pipe:
            for user in users:  # not ZMSCORE: that needs Redis 6.2
                pipe.zscore(self._key, user)
            scores = await pipe.execute()
        return {u: s is not None for u, s in zip(users, scores, strict=True)}

    async def touch(self, user: str) -> bool:
        """Someone used the screen: the session's idle time starts again. False when the
        session has ended (it is not brought back)."""
        async with self.hub.redis.pipeline(transaction=True) as pipe:
            _, score = await pipe.zadd(self._key, {user: time.time()}, xx=True) \
                .zscore(self._key, user).execute()
        return score is not None

    async def keep_pristine(self, users: list[str]) -> None:
        """Sessions nobody has touched yet hold nothing to protect: keep them alive while
        their screen is open, so an unused terminal does not churn through sessions."""
        if users:
            await self.hub.redis.zadd(self._key, dict.fromkeys(users, time.time()), xx=True)

    async def expired(self, before: float, limit: int = 100) -> list[str]:
        users = await self.hub.redis.zrangebyscore(self._key, "-inf", before, start=0, num=limit)
        return [u.decode() if isinstance(u, bytes) else u for u in users]

    async def claim(self, user: str) -> bool:
        """True for the one caller that ends this session."""
        return bool(await self.hub.redis.zrem(self._key, user))

    # -- ending -------------------------------------------------------------------------------
    async def retire(self, user: str) -> None:
        """Close everything the server holds for an ended (claimed) session."""
        try:
            conv = await self.hub.conversations.current(self.adapter.name, user, create=False)
            if conv is None:
                return  # nobody asked anything: nothing to close
            if self.hub.handoff is not None:
                await self.hub.handoff.citizen_left(conv.id, text=LEFT_TEXT, note=LEFT_NOTE)
            await self.hub.conversations.close(conv.id)
            # the dialog's live context (last question, offered options) goes with it
            await self.hub.dialog.forget_context(conv.id)
        except Exception:
            log.warning("kiosk: could not close an ended session; the sweep retries",
                        exc_info=True)
            await self.hub.redis.zadd(self._retry_key, {user: time.time()})
            raise

    async def retry_failed(self, limit: int = 20) -> None:
        """Retire again the sessions whose closing failed (claimed one by one)."""
        for user in await self.hub.redis.zrange(self._retry_key, 0, limit - 1):
            user = user.decode() if isinstance(user, bytes) else user
            if await self.hub.redis.zrem(self._retry_key, user):
                await self.retire(user)
