"""Kiosk terminals: proving a device key once, then a signed registration cookie.

A terminal is listed in ``channels.kiosk.devices`` as ``id: key``. The key never travels with
every request; it is proved once, in one of two ways:

- **registration form** (``/kiosk/register?device=ID``): an installer types the key on the
  terminal; good for a terminal set up by hand;
- **bootstrap URL** (``/kiosk?device=ID&token=TS.SIG``): the terminal's launcher computes
  ``SIG = hex(HMAC-SHA256(key, "bangban-kiosk:ID:TS"))`` for the current Unix time ``TS`` and
  opens that URL; accepted within ``bootstrap_window_s`` of ``TS`` and once only, so a URL seen
  in a log or over a shoulder is useless.

Either way the terminal then holds a cookie (HttpOnly, SameSite=Strict, path ``/kiosk``)
signed with the deployment's ``kiosk-device`` secret over the device id *and a fingerprint of
its current key*: changing a terminal's key in the config revokes its registration, and a
cookie cannot be moved to another device id. Key comparisons are constant-time; keys are never
logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from functools import cached_property
from typing import TYPE_CHECKING

from aiohttp import web

from core.security import instance_secret, sign, unsign

if TYPE_CHECKING:
    from .adapter import KioskAdapter

DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_TOKEN = re.compile(r"^(\d{9,11})\.([0-9a-f]{64})$")
COOKIE_PATH = "/kiosk"


def bootstrap_signature(key: str, device: str, ts: int) -> str:
    """What a terminal's launcher computes (documented in docs/channels/kiosk.md)."""
    return hmac.new(key.encode(), f"bangban-kiosk:{device}:{ts}".encode(),
                    hashlib.sha256).hexdigest()


def bootstrap_token(key: str, device: str, ts: int | None = None) -> str:
    ts = int(time.time()) if ts is None else ts
    return f"{ts}.{bootstrap_signature(key, device, ts)}"


class Devices:
    def __init__(self, adapter: KioskAdapter) -> None:
        self.adapter = adapter

    @property
    def config(self):
        return self.adapter.config

    @cached_property
    def _secret(self) -> bytes:
        return instance_secret(self.adapter.hub.settings, "kiosk-device")

    def known(self, device: str | None) -> bool:
        return bool(device) and device in self.config.devices

    def _fingerprint(self, device: str) -> str:
        # binds a registration to the key it was made with; reveals nothing about the key
        key = self.config.devices[device]
        return hmac.new(key.encode(), f"bangban-kiosk-registration:{device}".encode(),
                        hashlib.sha256).hexdigest()[:24]

    # -- proving the key ----------------------------------------------------------------------
    def check_key(self, device: str, key: str) -> bool:
        expected = self.config.devices.get(device)
        # compare even for an unknown device, so timing does not tell which ids exist
        return hmac.compare_digest((expected or "\0" * 32).encode(), key.encode()) \
            and expected is not None

    async def check_bootstrap(self, device: str, token: str) -> str | None:
        """None when ``token`` proves the key now; else the reason, for the 403 page."""
        m = _TOKEN.match(token or "")
        if not self.known(device) or m is None:
            return "终端编号或注册令牌不正确。"
        ts, sig = int(m.group(1)), m.group(2)
        if abs(time.time() - ts) > self.config.bootstrap_window_s:
            return "注册令牌已过期，请检查终端时钟后重新启动终端程序。"
        expected = bootstrap_signature(self.config.devices[device], device, ts)
        if not hmac.compare_digest(expected, sig):
            return "终端编号或注册令牌不正确。"
        key = f"{self.adapter.hub.settings.redis.prefix}kiosk:boot:{device}:{sig[:32]}"
        if not await self.adapter.hub.redis.set(key, 1, nx=True,
                                                ex=2 * self.config.bootstrap_window_s + 60):
            return "该注册令牌已使用过，请重新启动终端程序。"
        return None

    # -- the registration cookie --------------------------------------------------------------
    def device_of(self, request: web.Request) -> str | None:
        """The registered terminal of this request, or None (no, forged or revoked cookie)."""
        value = request.cookies.get(self.config.cookie_name)
        if not value or len(value) > 200:
            return None
        signed = unsign(self._secret, value)
        if not signed:
            return None
        device, _, fp = signed.partition(".")
        if not self.known(device) or not hmac.compare_digest(fp, self._fingerprint(device)):
            return None
        return device

    def register(self, request: web.Request, response: web.StreamResponse, device: str) -> None:
        secure = request.secure or self.adapter.hub.public_url.startswith("https://")
        response.set_cookie(
            self.config.cookie_name, sign(self._secret, f"{device}.{self._fingerprint(device)}"),
            max_age=self.config.registration_days * 86400, path=COOKIE_PATH, httponly=True,
            samesite="Strict", secure=secure or None)

    async def allow_attempt(self, request: web.Request) -> bool:
        """Registration attempts per client address per minute (keys are long, so this is
        about noise in the logs and load, not about guessing)."""
        key = (f"{self.adapter.hub.settings.redis.prefix}kiosk:register:"
               f"{request.remote or '-'}:{int(time.time() // 60)}")
        async with self.adapter.hub.redis.pipeline(transaction=True) as pipe:
            count, _ = await pipe.incr(key).expire(key, 120).execute()
        return int(count) <= 10
