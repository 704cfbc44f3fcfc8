"""随申办 APP channel: signed JSON API, long-poll and websocket."""

from .adapter import AppAdapter

__all__ = ["AppAdapter"]
