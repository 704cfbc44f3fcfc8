"""WeChat Official Account and Mini Program customer-service channel (docs/channels/wechat.md)."""

from .adapter import WeChatAdapter
from .config import WeChatAccount, WeChatConfig

__all__ = ["WeChatAdapter", "WeChatAccount", "WeChatConfig"]
