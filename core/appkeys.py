"""Typed keys for the aiohttp application's state (``app[ENGINE]`` etc.)."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings
from .hub import Hub
from .kb.store import KbStore

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
REDIS = web.AppKey("redis", aioredis.Redis)
REDIS_URL = web.AppKey("redis_url", str)
KB_STORE = web.AppKey("kb_store", KbStore)
HUB = web.AppKey("hub", Hub)
