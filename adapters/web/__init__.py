"""PC portal (一网通办) chat widget channel: the 小申 widget, its websocket, public KB pages."""

from .adapter import WebAdapter, WebConfig

__all__ = ["WebAdapter", "WebConfig"]
