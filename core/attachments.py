"""Pictures and voice messages in conversations: checked, stored in SQL, served back safely.

Citizens send screenshots and voice notes; agents send pictures. Everything here treats the
bytes as hostile:

- the type is **sniffed from the magic bytes**; the declared Content-Type and the file name are
  never trusted. Only the raster image and audio formats below are accepted, so SVG, HTML, PDF
  and anything else a browser might execute or render as a document are refused (415);
- the size limit depends on the sniffed kind (``handoff.max_image_bytes`` /
  ``max_voice_bytes``) and is enforced **while reading** (:func:`collect`), so an oversized
  upload is refused after at most one chunk over the limit, never buffered whole (413);
- the bytes live in SQL (table ``attachments``), so every process on every machine can serve
  them; channels serve them with the sniffed type, ``nosniff`` and a safely encoded file name
  (:func:`response_headers`).

Attachments are addressed by an unguessable id. Their canonical URL is the channel-neutral path
``/attachments/{id}`` (:func:`url_for`): the web channel serves that path to the citizen whose
conversation it belongs to; other channels rewrite it to their own signed route
(:func:`id_from_url`). Staff access goes through :meth:`AttachmentStore.get`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import quote

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from .conversations import new_id
from .db.schema import attachments, conversations
from .dialog.models import Attachment, utcnow
from .errors import BangbanError, NotFound

Kind = Literal["image", "voice"]
Uploader = Literal["citizen", "agent"]

#: enough bytes to recognise every accepted format (WebM's DocType sits within the EBML header)
SNIFF_BYTES = 64
#: the path every channel knows an attachment by (the web channel serves it as is)
URL_PREFIX = "/attachments/"
_ID = re.compile(r"^a[0-9a-f]{23,31}$")  # core.conversations.new_id("a")
#: ISO-BMFF brands of audio files (M4A from iOS and Android recorders, 3GPP voice notes);
#: video (qt, avc1) and image brands (heic, avif, mif1) are not voice messages
_AUDIO_BRANDS = {b"M4A ": "audio/mp4", b"M4B ": "audio/mp4", b"mp41": "audio/mp4",
                 b"mp42": "audio/mp4", b"isom": "audio/mp4", b"iso2": "audio/mp4",
                 b"3gp4": "audio/3gpp", b"3gp5": "audio/3gpp", b"3gp6": "audio/3gpp",
                 b"3g2a": "audio/3gpp2"}
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
              "image/webp": ".webp", "audio/amr": ".amr", "audio/amr-wb": ".awb",
              "audio/mpeg": ".mp3", "audio/aac": ".aac", "audio/mp4": ".m4a",
              "audio/3gpp": ".3gp", "audio/3gpp2": ".3g2", "audio/ogg": ".ogg",
              "audio/wav": ".wav", "audio/webm": ".webm"}
ACCEPTED = ("PNG, JPEG, GIF or WebP pictures; AMR (and AMR-WB), MP3, AAC/M4A, 3GPP, OGG, WAV or "
            "WebM audio")


class UnsupportedType(BangbanError):
    """Not one of the accepted picture or audio formats (HTTP 415)."""

    code = "unsupported_media_type"
    status = 415


class TooLarge(BangbanError):
    """Over the size limit of its kind (HTTP 413); ``limit`` in bytes, ``kind`` if known."""

    code = "too_large"
    status = 413

    def __init__(self, limit: int, kind: Kind | None) -> None:
        what = {"image": "the picture", "voice": "the voice message"}.get(kind or "", "the file")
        super().__init__(f"{what} is larger than the limit of {limit} bytes")
        self.limit, self.kind = limit, kind


def sniff(head: bytes) -> tuple[Kind, str] | None:
    """(kind, MIME type) recognised from the first bytes, or None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image", "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "voice", "audio/wav"
    if head.startswith(b"#!AMR-WB\n"):
        return "voice", "audio/amr-wb"
    if head.startswith(b"#!AMR\n"):
        return "voice", "audio/amr"
    if head.startswith(b"OggS"):
        return "voice", "audio/ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:SNIFF_BYTES]:
        return "voice", "audio/webm"
    if head[4:8] == b"ftyp" and head[8:12] in _AUDIO_BRANDS:
        return "voice", _AUDIO_BRANDS[head[8:12]]
    if head.startswith(b"ID3"):
        return "voice", "audio/mpeg"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # an MPEG audio frame sync; layer bits 00 mark an ADTS (AAC) header instead
        if (head[1] >> 1) & 0x3 == 0:
            return "voice", "audio/aac"
        if head[1] & 0x18 != 0x08:  # version bits 01 are reserved: not MPEG audio
            return "voice", "audio/mpeg"
    return None


@dataclass(frozen=True, slots=True)
class Limits:
    max_image_bytes: int
    max_voice_bytes: int

    def of(self, kind: Kind | None) -> int:
        """The limit for a kind; before the kind is known, the larger of the two."""
        if kind == "image":
            return self.max_image_bytes
        if kind == "voice":
            return self.max_voice_bytes
        return max(self.max_image_bytes, self.max_voice_bytes)


async def collect(chunks: AsyncIterable[bytes], limits: Limits) -> bytes:
    """Read an upload, refusing it (TooLarge) as soon as it is over its kind's limit.

    The kind is sniffed from the first bytes as they arrive, so a 3 MB "voice message" stops
    being read at the voice limit; an unrecognised start is only refused (UnsupportedType) by
    :func:`check`, after the caller has authenticated the request.
    """
    parts: list[bytes] = []
    size, kind, sniffed = 0, None, False
    async for chunk in chunks:
        if not chunk:
            continue
        size += len(chunk)
        parts.append(chunk)
        if not sniffed and size >= SNIFF_BYTES:
            sniffed = True
            found = sniff(b"".join(parts)[:SNIFF_BYTES])
            kind = found[0] if found else None
        if size > limits.of(kind):
            raise TooLarge(limits.of(kind), kind)
    return b"".join(parts)


def check(data: bytes, limits: Limits) -> tuple[Kind, str]:
    """(kind, MIME type) of a complete upload, or UnsupportedType / TooLarge."""
    found = sniff(data[:SNIFF_BYTES])
    if found is None or len(data) < 12:
        raise UnsupportedType(f"only {ACCEPTED} are accepted (the type is read from the "
                              "file's content, not its name)")
    kind, mime = found
    if len(data) > limits.of(kind):
        raise TooLarge(limits.of(kind), kind)
    return kind, mime


def clean_name(name: str | None, mime: str) -> str:
    """A display file name: no path, no control or bidi characters, ≤ 100 characters, and the
    extension of the sniffed type (a PNG called ``x.html`` becomes ``x.png``)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(c for c in unicodedata.normalize("NFC", base)
                   if unicodedata.category(c)[0] != "C").strip(" .")
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return (stem[:100] or "attachment") + EXTENSIONS[mime]


def url_for(attachment_id: str) -> str:
    return URL_PREFIX + attachment_id


def id_from_url(url: str) -> str | None:
    """The id in a canonical attachment URL (``/attachments/{id}``), else None."""
    if url.startswith(URL_PREFIX) and _ID.match(url[len(URL_PREFIX):]):
        return url[len(URL_PREFIX):]
    return None


def valid_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


def response_headers(meta: StoredAttachment) -> dict[str, str]:
    """Headers to serve an attachment with: its sniffed type, never sniffed again by the
    browser, never run as a document, the name encoded per RFC 6266 / 5987, private cache."""
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", meta.name) or "attachment"
    return {
        "Content-Type": meta.mime,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f"inline; filename=\"{fallback}\"; "
                               f"filename*=UTF-8''{quote(meta.name, safe='')}",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=86400",
        "ETag": f'"{meta.sha256}"',
    }


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    """One stored attachment, without its bytes."""

    id: str
    conversation_id: str
    uploader: str
    uploader_id: str
    kind: Kind
    mime: str
    size: int
    sha256: str
    name: str
    created_at: datetime

    @property
    def url(self) -> str:
        return url_for(self.id)

    def to_attachment(self) -> Attachment:
        """The message part (``Inbound`` / ``Outbound.attachments``)."""
        return Attachment(kind=self.kind, url=self.url, mime=self.mime, size=self.size,
                          name=self.name)


_META = [attachments.c[n] for n in StoredAttachment.__slots__]


def _meta(row) -> StoredAttachment:
    return StoredAttachment(**{n: row[n] for n in StoredAttachment.__slots__})


class AttachmentStore:
    def __init__(self, engine: AsyncEngine, max_image_bytes: int, max_voice_bytes: int) -> None:
        self.engine = engine
        self.limits = Limits(max_image_bytes, max_voice_bytes)

    async def save(self, conversation_id: str, uploader: Uploader, uploader_id: str,
                   data: bytes, declared_mime: str | None = None,
                   name: str | None = None) -> StoredAttachment:
        """Check and store one attachment. ``declared_mime`` is accepted for the record of the
        call only: the type is what the bytes are (UnsupportedType / TooLarge otherwise)."""
        kind, mime = check(data, self.limits)
        meta = StoredAttachment(
            id=new_id("a"), conversation_id=conversation_id, uploader=uploader,
            uploader_id=uploader_id[:128], kind=kind, mime=mime, size=len(data),
            sha256=hashlib.sha256(data).hexdigest(), name=clean_name(name, mime),
            created_at=utcnow())
        async with self.engine.begin() as conn:
            await conn.execute(insert(attachments).values(
                **{n: getattr(meta, n) for n in StoredAttachment.__slots__}, data=data))
        return meta

    async def get(self, attachment_id: str) -> tuple[StoredAttachment, bytes]:
        """The attachment and its bytes (NotFound). No access check: callers decide who may."""
        if not valid_id(attachment_id):
            raise NotFound(f"no attachment {attachment_id[:40]!r}")
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(*_META, attachments.c.data).where(attachments.c.id == attachment_id)
            )).mappings().first()
        if row is None:
            raise NotFound(f"no attachment {attachment_id!r}")
        return _meta(row), bytes(row["data"])

    async def get_for(self, attachment_id: str, channel: str, channel_user: str
                      ) -> tuple[StoredAttachment, bytes]:
        """The attachment if it belongs to a conversation of this citizen on this channel
        (theirs or an agent's picture to them); NotFound otherwise, so nobody learns whether
        someone else's attachment exists."""
        meta, data = await self.get(attachment_id)
        if await self.owner(meta.conversation_id) != (channel, channel_user):
            raise NotFound(f"no attachment {attachment_id!r}")
        return meta, data

    async def owner(self, conversation_id: str) -> tuple[str, str] | None:
        """(channel, channel_user) of the conversation an attachment belongs to."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(conversations.c.channel, conversations.c.channel_user)
                .where(conversations.c.id == conversation_id))).first()
        return None if row is None else (row[0], row[1])

    async def uploaded_by(self, ids: list[str], channel: str, channel_user: str
                          ) -> list[StoredAttachment]:
        """The attachments (in the order of ``ids``) this citizen uploaded in their own
        conversations, for a message that refers to them; NotFound if any is not."""
        if not ids or not all(valid_id(i) for i in ids):
            raise NotFound("no such attachment")
        q = (select(*_META)
             .join(conversations, conversations.c.id == attachments.c.conversation_id)
             .where(attachments.c.id.in_(ids), attachments.c.uploader == "citizen",
                    conversations.c.channel == channel,
                    conversations.c.channel_user == channel_user))
        async with self.engine.connect() as conn:
            found = {row["id"]: _meta(row) for row in (await conn.execute(q)).mappings()}
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"no attachment {missing[0]!r} of this user")
        return [found[i] for i in ids]
