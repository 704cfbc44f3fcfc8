"""Channel adapters and their registry.

One package per citizen channel, each exposing one ``ChannelAdapter`` subclass through the
``bangban.adapters`` entry-point group (see docs/adapters.md), so a third party adds a channel
by installing a package — no change to this repository.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from core.errors import ConfigError

from .base import AdapterConfig, ChannelAdapter

log = logging.getLogger(__name__)

GROUP = "bangban.adapters"

__all__ = ["AdapterConfig", "ChannelAdapter", "GROUP", "discover"]


def discover() -> dict[str, type[ChannelAdapter]]:
    """Adapter classes by channel name, from the installed entry points."""
    found: dict[str, type[ChannelAdapter]] = {}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken third-party plugin must say so, not vanish
            raise ConfigError(f"channel adapter {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, ChannelAdapter)):
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) is not a ChannelAdapter")
        if ep.name != cls.name:
            raise ConfigError(f"entry point {ep.name!r} loads adapter named {cls.name!r}")
        found[ep.name] = cls
    return found
