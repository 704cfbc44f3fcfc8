"""Agents' pictures WeChat would refuse (WebP; over 2 MB) reach the citizen as a JPEG picture
instead of a "[图片]" note: the send job on a real worker, against the stand-in platform, which
refuses them as the real one does (40005 / 40006)."""

from __future__ import annotations

import io
import os

from PIL import Image

from adapters.wechat.pictures import MAX_BYTES, fit

from .conftest import work
from .test_sender import cfg, send, store  # noqa: F401 - fixtures


def picture(fmt: str, size: tuple[int, int], *, noise: bool = False, **save) -> bytes:
    """A real picture: a red square with a transparent corner, or noise (which JPEG and PNG
    compress badly, so a large one stays large)."""
    if noise:
        img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        img = Image.new("RGBA", size, (200, 20, 30, 255))
        img.paste((0, 0, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_a_picture_wechat_takes_goes_byte_for_byte():
    png = picture("PNG", (40, 30))
    assert fit(png, "image/png", "图.png") == (png, "image/png", "图.png")


def test_a_webp_becomes_a_jpeg_with_its_transparency_on_white():
    data, mime, name = fit(picture("WEBP", (40, 30), lossless=True), "image/webp", "截图.webp")
    assert (mime, name) == ("image/jpeg", "截图.jpg")
    img = opened(data)
    assert img.format == "JPEG" and img.size == (40, 30)
    assert min(img.getpixel((1, 1))) > 240  # the transparent corner: white, not black
    r, g, b = img.getpixel((30, 25))
    assert r > 150 and g < 80 and b < 80  # the picture itself kept its colour


def test_a_picture_over_2_mb_is_scaled_down_until_it_fits():
    big = picture("PNG", (1400, 1000), noise=True)
    assert len(big) > MAX_BYTES
    data, mime, _ = fit(big, "image/png", "photo.png")
    img = opened(data)
    assert mime == "image/jpeg" and len(data) <= MAX_BYTES
    assert abs(img.size[0] / img.size[1] - 1.4) < 0.01  # the shape kept


def test_what_pillow_cannot_read_goes_as_it_is():
    junk = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 40
    assert fit(junk, "image/webp", "x.webp") == (junk, "image/webp", "x.webp")


async def test_the_citizen_gets_a_webp_as_a_picture_not_a_note(store, cfg, rq_redis,  # noqa: F811
                                                                queue_name, platform):
    webp = picture("WEBP", (60, 40), lossless=True)
    meta = await store.save("c1", "agent", "u1", webp, name="办事指南.webp")
    send(cfg, rq_redis, ["请看图", {"image": meta.id}])
    work(queue_name, rq_redis)
    text, image = platform.platform.to("oCitizen")
    assert text == "请看图" and image.startswith("[image ")
    media = platform.platform.uploaded(image)
    assert media.mime == "image/jpeg" and media.filename.endswith(".jpg")
    assert opened(media.data).size == (60, 40)
