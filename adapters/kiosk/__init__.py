"""Self-service kiosk (自助终端) channel: a full-screen touch page for shared terminals."""

from .adapter import KioskAdapter, KioskConfig

__all__ = ["KioskAdapter", "KioskConfig"]
