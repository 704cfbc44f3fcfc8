"""What a kiosk shows: messages as the page's JSON, answer HTML without ways out, QR codes.

A kiosk's browser must stay on the kiosk page: a link followed from an answer would leave the
next person on some other site with the last person's session behind the back button. So
answer HTML keeps its formatting but loses links (their text stays) and remote images, and
web links are not shown at all: every KB answer carries instead a QR code of its public page,
to continue on the phone, and a print view. ``tel:`` links stay as text (a number to write down).
"""

from __future__ import annotations

import io
from urllib.parse import quote
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import nh3
import segno

from core.dialog.models import Outbound
from core.kb.richtext import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, CLEAN_CONTENT_TAGS

if TYPE_CHECKING:
    from core.kb.models import KbEntryBase

    from .adapter import KioskAdapter

_TAGS = ALLOWED_TAGS - {"a", "img"}
_ATTRIBUTES = {k: v for k, v in ALLOWED_ATTRIBUTES.items() if k in _TAGS}
#: where an entry's own page may be, in order, when the web channel (``/kb/{id}``) is off
_SOURCE_FIELDS = ("source_url", "basis_url", "system_url", "website")
_QR_CACHE: OrderedDict[str, bytes] = OrderedDict()
_QR_CACHE_SIZE = 512


def kiosk_html(value: str) -> str:
    """Sanitised answer HTML with links unwrapped (text kept) and images dropped."""
    return nh3.clean(value.strip(), tags=_TAGS, attributes=_ATTRIBUTES,
                     clean_content_tags=CLEAN_CONTENT_TAGS, strip_comments=True)


def continue_url(adapter: KioskAdapter, entry: KbEntryBase) -> str | None:
    """The page a citizen opens on their phone for ``entry``: its public KB page when the
    web channel serves those (it also offers 小申 there); else the entry's official source,
    or that of its matter's guide (an FAQ rarely has a page of its own)."""
    if "web" in adapter.hub.adapters:
        return f"{adapter.hub.public_url}/kb/{entry.id}"
    snap = snapshot(adapter)
    guide = snap.guides.get(entry.matters[0]) if snap and entry.matters else None
    for candidate in (entry, guide):
        for field in _SOURCE_FIELDS:
            url = (getattr(candidate, field, None) or "").strip()
            if url.lower().startswith(("https://", "http://")):
                return url
    return None


def qr_svg(url: str) -> bytes:
    """A QR code of ``url`` as a standalone SVG (cached: answers repeat a lot)."""
    cached = _QR_CACHE.get(url)
    if cached is not None:
        _QR_CACHE.move_to_end(url)
        return cached
    buf = io.BytesIO()
    # error correction M: still reads with a scratched or glare-struck screen
    segno.make(url, error="m", micro=False).save(
        buf, kind="svg", scale=8, border=4, dark="#000", light="#fff", xmldecl=False,
        svgns=True, omitsize=True, title="二维码")
    svg = buf.getvalue()
    _QR_CACHE[url] = svg
    while len(_QR_CACHE) > _QR_CACHE_SIZE:
        _QR_CACHE.popitem(last=False)
    return svg


def snapshot(adapter: KioskAdapter):
    try:
        return adapter.hub.knowledge.snapshot
    except (AttributeError, RuntimeError):  # knowledge not loaded yet
        return None


def render(adapter: KioskAdapter, out: Outbound) -> dict[str, Any]:
    """The JSON the kiosk page renders (``static/kiosk.js``)."""
    data = out.model_dump(mode="json", include={
        "conversation_id", "message_id", "seq", "sender", "action", "text", "quick_replies",
        "rating", "sender_name", "queue", "created_at"})
    data["html"] = kiosk_html(out.html) if out.html and out.sender in ("bot", "agent") else None
    data["links"] = [{"title": link.title, "url": link.url} for link in out.links
                     if link.url.startswith("tel:")]
    if out.attachments:
        data["text"] = (out.text + "\n" if out.text else "") + \
            "（对方发送了图片或语音，自助终端暂不能显示，如需查看请使用手机“随申办”）"
    data["entry"] = None
    entry_id = out.meta.entry_id
    snap = snapshot(adapter) if out.action == "answer" and entry_id else None
    entry = snap.entry(entry_id) if snap else None
    if entry is not None:
        url = continue_url(adapter, entry)
        data["entry"] = {
            "id": entry.id, "title": entry.display_title,
            "matter": entry.matters[0] if entry.matters else None,
            "qr": f"/kiosk/qr/{quote(entry.id)}.svg" if url else None,
            "print": f"/kiosk/print/{quote(entry.id)}",
        }
    return data
