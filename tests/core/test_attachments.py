"""core.attachments on the real database: type sniffing, limits while reading, ownership."""

from __future__ import annotations

import struct
import zlib
from urllib.parse import unquote

import pytest
from sqlalchemy import func, select

from core.attachments import (
    AttachmentStore, Limits, TooLarge, UnsupportedType, clean_name, collect, id_from_url,
    response_headers, sniff, url_for,
)
from core.conversations import ConversationStore
from core.db.schema import attachments
from core.errors import NotFound


def png(width: int = 1, height: int = 1) -> bytes:
    """A real, decodable PNG (8-bit greyscale)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def wav(samples: int = 800) -> bytes:
    """A real 8 kHz mono 16-bit WAV of silence."""
    data = b"\x00\x00" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data)


PNG = png()
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
       b"<rect width='1' height='1'/></svg>")


@pytest.mark.parametrize("head, expected", [
    (PNG, ("image", "image/png")),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20, ("image", "image/jpeg")),
    (b"GIF89a\x01\x00\x01\x00" + b"\x00" * 20, ("image", "image/gif")),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 20, ("image", "image/webp")),
    (wav(), ("voice", "audio/wav")),
    (b"#!AMR\n" + b"\x3c" * 40, ("voice", "audio/amr")),
    (b"#!AMR-WB\n" + b"\x04" * 40, ("voice", "audio/amr-wb")),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 20, ("voice", "audio/mpeg")),
    (b"\xff\xfb\x90\x64" + b"\x00" * 40, ("voice", "audio/mpeg")),       # MPEG-1 layer III frame
    (b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 40, ("voice", "audio/aac")),  # ADTS
    (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + b"\x00" * 20,
     ("voice", "audio/mp4")),
    (b"\x00\x00\x00\x18ftyp3gp4\x00\x00\x00\x00" + b"\x00" * 20, ("voice", "audio/3gpp")),
    (b"OggS\x00\x02" + b"\x00" * 40, ("voice", "audio/ogg")),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
     b"\x42\x82\x84webm" + b"\x00" * 20, ("voice", "audio/webm")),
])
def test_sniffs_accepted_formats(head, expected):
    assert sniff(head[:64]) == expected


@pytest.mark.parametrize("head", [
    HTML, SVG, b"%PDF-1.7\n" + b"\x00" * 40, b"PK\x03\x04" + b"\x00" * 40,  # pdf, zip/docx
    b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40,                           # HEIC picture
    b"\x00\x00\x00\x14ftypqt  " + b"\x00" * 40,                           # QuickTime video
    b"\x1a\x45\xdf\xa3\x9f\x42\x82\x88matroska" + b"\x00" * 40,           # Matroska video
    b"MZ\x90\x00" + b"\x00" * 40, b"", b"\xff\xd8",                        # exe, empty, stub
])
def test_refuses_everything_else(head):
    assert sniff(head[:64]) is None
    with pytest.raises(UnsupportedType):
        from core.attachments import check
        check(head, Limits(10_000, 10_000))


async def test_collect_stops_reading_at_the_kind_limit():
    """A 'voice message' over the voice limit is refused after one chunk too many, never read
    to the end; a picture may be larger (its own limit)."""
    limits = Limits(max_image_bytes=8192, max_voice_bytes=2048)
    pulled = 0

    async def chunks(first: bytes, total_chunks: int):
        nonlocal pulled
        for i in range(total_chunks):
            pulled += 1
            yield first if i == 0 else b"\x00" * 1024

    with pytest.raises(TooLarge) as exc:
        await collect(chunks(b"#!AMR\n" + b"\x00" * 1018, 100), limits)
    assert exc.value.limit == 2048 and exc.value.kind == "voice"
    assert "2048 bytes" in str(exc.value)
    assert pulled == 3, "read stopped at the first chunk over the limit"

    pulled = 0
    data = await collect(chunks(PNG + b"\x00" * (1024 - len(PNG)), 6), limits)
    assert len(data) == 6 * 1024 and data.startswith(PNG)
    with pytest.raises(TooLarge) as exc:
        await collect(chunks(PNG + b"\x00" * (1024 - len(PNG)), 9), limits)
    assert (exc.value.limit, exc.value.kind) == (8192, "image")


def test_names_and_headers_are_safe():
    assert clean_name("../../etc/x.html", "image/png") == "x.png"
    assert clean_name("C:\\Users\\me\\截图 1.PNG", "image/png") == "截图 1.png"
    assert clean_name("\u202egnp.exe", "image/png") == "gnp.png"  # no bidi override
    assert clean_name("a\x00b\nc.jpg", "image/jpeg") == "abc.jpg"
    assert clean_name(None, "audio/amr") == "attachment.amr"
    assert clean_name("...", "audio/ogg") == "attachment.ogg"

    from core.attachments import StoredAttachment
    from core.dialog.models import utcnow
    meta = StoredAttachment("a" + "0" * 23, "c1", "citizen", "u", "image", "image/png", 3,
                            "ab" * 32, '截图"; x=1.png', utcnow())
    headers = response_headers(meta)
    assert headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"].startswith("private")
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("inline; ")
    fallback, encoded = disposition.split("; ")[1:]
    assert fallback == 'filename="_____x_1.png"'  # ASCII only, no quote to break out of
    assert encoded.startswith("filename*=UTF-8''") and '"' not in encoded and ";" not in encoded[9:]
    assert unquote(encoded.removeprefix("filename*=UTF-8''")) == '截图"; x=1.png'

    assert id_from_url(url_for("a0123456789abcdef0123456")) == "a0123456789abcdef0123456"
    for url in ("/attachments/../x", "https://evil.example/attachments/a0123456789abcdef0123456",
                "/attachments/a0123456789abcdef0123456?x=1", "javascript:alert(1)"):
        assert id_from_url(url) is None


async def test_save_get_and_ownership(engine):
    conversations = ConversationStore(engine)
    mine = await conversations.current("web", "w-citizen-one-0000000")
    other = await conversations.current("web", "w-citizen-two-0000000")
    store = AttachmentStore(engine, max_image_bytes=4096, max_voice_bytes=2048)

    meta = await store.save(mine.id, "citizen", "w-citizen-one-0000000", PNG,
                            declared_mime="text/html", name="手机截图.jpeg")
    assert (meta.kind, meta.mime, meta.size, meta.name) == ("image", "image/png", len(PNG),
                                                            "手机截图.png")
    att = meta.to_attachment()
    assert att.url == f"/attachments/{meta.id}" and att.kind == "image"

    got, data = await store.get(meta.id)
    assert data == PNG and got == meta
    got, data = await store.get_for(meta.id, "web", "w-citizen-one-0000000")
    assert data == PNG
    for channel, user in (("web", "w-citizen-two-0000000"), ("app", "w-citizen-one-0000000")):
        with pytest.raises(NotFound):
            await store.get_for(meta.id, channel, user)
    with pytest.raises(NotFound):
        await store.get("a" + "f" * 23)
    with pytest.raises(NotFound):
        await store.get("../../etc/passwd")

    # an agent's picture in the citizen's conversation is the citizen's to see, but it is not
    # something the citizen can send as their own
    agent_pic = await store.save(mine.id, "agent", "staff-7", png(2, 2), name="示意图.png")
    await store.get_for(agent_pic.id, "web", "w-citizen-one-0000000")
    assert [m.id for m in await store.uploaded_by([meta.id], "web", "w-citizen-one-0000000")
            ] == [meta.id]
    for ids, user in (([agent_pic.id], "w-citizen-one-0000000"),
                      ([meta.id], "w-citizen-two-0000000"), ([], "w-citizen-one-0000000"),
                      ([meta.id, "a" + "1" * 23], "w-citizen-one-0000000")):
        with pytest.raises(NotFound):
            await store.uploaded_by(ids, "web", user)

    voice = await store.save(other.id, "citizen", "w-citizen-two-0000000", wav(500))
    assert (voice.kind, voice.mime, voice.name) == ("voice", "audio/wav", "attachment.wav")


async def test_refused_uploads_store_nothing(engine):
    conv = await ConversationStore(engine).current("web", "w-citizen-one-0000000")
    store = AttachmentStore(engine, max_image_bytes=4096, max_voice_bytes=2048)
    for data, name, error in ((HTML, "截图.png", UnsupportedType), (SVG, "icon.svg", UnsupportedType),
                              (png(80, 80) + b"\x00" * 4096, "big.png", TooLarge),
                              (wav(1200), "long.wav", TooLarge)):
        with pytest.raises(error):
            await store.save(conv.id, "citizen", "w-citizen-one-0000000", data,
                             declared_mime="image/png", name=name)
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(attachments))).scalar() == 0
