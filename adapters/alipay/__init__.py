"""Alipay mini program and 生活号 channel (the app gateway): RSA2-verified notifications in,
replies out by ``alipay.open.public.message.custom.send`` from an RQ job. See
docs/channels/alipay.md."""

from .adapter import AlipayAdapter
from .config import AlipayApp, AlipayConfig

__all__ = ["AlipayAdapter", "AlipayApp", "AlipayConfig"]
