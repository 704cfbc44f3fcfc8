"""An agent's picture made fit for WeChat's temporary media before it is uploaded.

WeChat takes pictures as PNG, JPEG or GIF of at most 2 MB (its upload API's notes; 2,000,000
bytes to be safe). Agents send what the workspace takes: WebP too, and up to
``handoff.max_image_bytes`` (5 MiB by default), such as a phone screenshot saved as WebP or a
large photo. Those used to reach the citizen only as a "[图片]" note. Here they become a JPEG
(transparency flattened onto white), scaled down step by step until it fits; a picture that
fits already goes as it is, byte for byte.

A picture Pillow cannot read goes as it is, and the platform's refusal (40005 / 40006) turns it
into the note, as before.
"""

from __future__ import annotations

import io
import logging
from pathlib import PurePath

from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

MIMES = frozenset({"image/png", "image/jpeg", "image/gif"})
MAX_BYTES = 2_000_000
#: each step scales the sides by this much; a 5 MiB photo fits after one or two
STEP = 0.8
QUALITY = 85
#: never scale below this (the longer side, in pixels): a picture this small is always < 2 MB
MIN_SIDE = 320
#: refuse to decode more than this many pixels (a small file can claim a huge canvas)
MAX_PIXELS = 40_000_000


def fit(data: bytes, mime: str, name: str) -> tuple[bytes, str, str]:
    """(bytes, MIME type, file name) of the picture as WeChat will take it."""
    if mime in MIMES and len(data) <= MAX_BYTES:
        return data, mime, name
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                log.warning("wechat: picture %s is %dx%d pixels; sent as it is", name,
                            img.width, img.height)
                return data, mime, name
            picture = _flattened(ImageOps.exif_transpose(img))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        log.warning("wechat: picture %s cannot be read (%s); sent as it is", name, exc)
        return data, mime, name
    out = _jpeg(picture)
    while len(out) > MAX_BYTES and max(picture.size) * STEP >= MIN_SIDE:
        picture = picture.resize((max(1, round(picture.width * STEP)),
                                  max(1, round(picture.height * STEP))), Image.LANCZOS)
        out = _jpeg(picture)
    stem = PurePath(name).stem or "picture"
    log.info("wechat: picture %s (%s, %d bytes) sent as a %dx%d JPEG of %d bytes", name, mime,
             len(data), picture.width, picture.height, len(out))
    return out, "image/jpeg", f"{stem}.jpg"


def _flattened(img: Image.Image) -> Image.Image:
    """RGB, with any transparency laid on white (JPEG has none; black would hide dark text)."""
    if img.mode in ("RGBA", "LA", "P"):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img.convert("RGB")


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=QUALITY, optimize=True)
    return buf.getvalue()
