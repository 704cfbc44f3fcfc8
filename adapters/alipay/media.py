"""Agents' pictures on Alipay: served to Alipay's clients by signed, expiring URLs.

custom.send has no media upload. A picture goes out as an image-text message whose
``image_url`` and ``url`` Alipay's clients fetch themselves, with no session or header of ours,
so the picture is served by a public, read-only route where the URL itself is the permission::

    GET /api/alipay/v1/media/<app>/<attachment id>?exp=<unix seconds>&sig=<64 hex>

``sig`` is the HMAC-SHA256 of ``<app>\\n<attachment id>\\n<exp>``. The key is ``media_secret``
when it is set. Otherwise it is derived from that app's private key, which every app process and
worker already holds, so pictures work with no new setting. The app is in the path so that the
link is checked before anything is read from the database: a forged, altered or expired link
is refused with 403 and its reason. Only then is the attachment looked up. Anything but an
agent's picture in a conversation of one of that app's citizens on this channel gets the 404 of
an unknown id, so a link never says what else exists.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from functools import lru_cache
from urllib.parse import urlencode

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from core.attachments import AttachmentStore, StoredAttachment, response_headers
from core.errors import NotFound

from .config import AlipayApp, AlipayConfig
from .gateway import GatewayError
from .signing import load_private_key

PREFIX = "/api/alipay/v1/media"
ROUTE = PREFIX + "/{app:[a-z0-9][a-z0-9_-]{0,31}}/{attachment_id:a[0-9a-f]{23,31}}"
#: How long a link works. Citizens often open a 生活号 chat hours or days after the agent wrote,
#: and the client may fetch the picture only then, so a link that died within a day would leave
#: a broken picture in a conversation they still care about. A week covers that. A longer life
#: would let a copied link work longer. Each send (a retry too) gets a fresh link.
URL_TTL_S = 7 * 24 * 3600
#: links made by a process whose clock is this far ahead are still taken
MAX_SKEW_S = 300
_EXP = re.compile(r"^[0-9]{1,12}$")
_SIG = re.compile(r"^[0-9a-f]{64}$")
_LABEL = b"bangban alipay media url v1"


@lru_cache(maxsize=64)
def _derived(private_key_text: str) -> bytes:
    """A key for links derived from an app's private key. It uses the key's canonical DER, so
    a process that has the key as PEM and one that has it as base64 derive the same key."""
    der = load_private_key(private_key_text).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    return hmac.new(der, _LABEL, hashlib.sha256).digest()


def link_key(config: AlipayConfig, app: AlipayApp) -> bytes:
    if config.media_secret is not None:
        return config.media_secret.get_secret_value().encode()
    return _derived(app.app_private_key.get_secret_value())


def signature(key: bytes, app: str, attachment_id: str, exp: int) -> str:
    return hmac.new(key, f"{app}\n{attachment_id}\n{exp}".encode(), hashlib.sha256).hexdigest()


def media_path(config: AlipayConfig, app: AlipayApp, attachment_id: str,
               now: float | None = None) -> str:
    """The signed path and query of one picture, valid for URL_TTL_S from ``now``."""
    exp = int(now if now is not None else time.time()) + URL_TTL_S
    sig = signature(link_key(config, app), app.name, attachment_id, exp)
    return f"{PREFIX}/{app.name}/{attachment_id}?{urlencode({'exp': exp, 'sig': sig})}"


def media_url(base_url: str, config: AlipayConfig, app: AlipayApp, attachment_id: str,
              now: float | None = None) -> str:
    """The full URL Alipay's clients fetch (``base_url`` is ``server.public_url``)."""
    return base_url.rstrip("/") + media_path(config, app, attachment_id, now)


def refused(code: str, message: str) -> GatewayError:
    return GatewayError(403, code, message)


def check_link(key: bytes, app: str, attachment_id: str, exp: str | None, sig: str | None,
               now: float | None = None) -> None:
    """Return if the link is ours, unaltered and unexpired. Otherwise raise a 403 that says
    which of these it is not."""
    if not exp or not sig:
        raise refused("unsigned_link", "the link has no exp and sig parameters; only the links "
                      "sent in Alipay messages are served")
    if not _EXP.match(exp) or not _SIG.match(sig):
        raise refused("bad_link", "exp must be unix seconds and sig 64 lower-case hex digits")
    if not hmac.compare_digest(signature(key, app, attachment_id, int(exp)), sig):
        raise refused("bad_signature", "the link's signature does not match (altered, or not "
                      "made by this server)")
    now = time.time() if now is None else now
    if int(exp) < now:
        raise refused("expired_link", f"the link expired {int(now) - int(exp)} s ago (links "
                      f"work for {URL_TTL_S // 86400} days); ask the agent to send it again")
    if int(exp) > now + URL_TTL_S + MAX_SKEW_S:
        # only this server can sign a link; this stops old links from outliving a shorter TTL
        raise refused("bad_link", "the link's expiry is further away than any link gets")


def not_servable(meta: StoredAttachment, owner: tuple[str, str] | None,
                 app: AlipayApp) -> str | None:
    """Why this attachment may not go to Alipay's clients, or None if it may. Only an agent's
    picture in a conversation of a citizen of ``app`` on this channel may go."""
    if meta.kind != "image" or meta.uploader != "agent":
        return "not an agent's picture"
    if owner is None or owner[0] != "alipay" or not owner[1].startswith(f"{app.app_id}:"):
        return f"not in a conversation of app {app.name}"
    return None


async def serve(request: web.Request, config: AlipayConfig,
                store: AttachmentStore) -> web.Response:
    """GET the route: one agent's picture, for a valid link only."""
    name = request.match_info["app"]
    attachment_id = request.match_info["attachment_id"]
    app = config.app_named(name)
    if app is None:
        raise GatewayError(404, "unknown_app", f"no Alipay app named {name!r} is configured")
    check_link(link_key(config, app), name, attachment_id, request.query.get("exp"),
               request.query.get("sig"))
    not_found = GatewayError(404, "not_found", "no such picture")
    try:
        meta, data = await store.get(attachment_id)
    except NotFound:
        raise not_found from None
    if not_servable(meta, await store.owner(meta.conversation_id), app):
        raise not_found
    return web.Response(body=data, headers=response_headers(meta))


__all__ = ["MAX_SKEW_S", "PREFIX", "ROUTE", "URL_TTL_S", "check_link", "link_key", "media_path",
           "media_url", "not_servable", "serve", "signature"]
