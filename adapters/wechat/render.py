"""The core's Outbound as WeChat text: one message's text, packing into platform messages, the
passive (in-response) reply.

Links become "title: url" lines (WeChat makes URLs tappable), quick replies a numbered menu
("回复 1、2、3 选择"; the core maps the digit back to the option), and an agent's rating request
the "回复1-5" prompt, whose digits the core's rating flow reads. An agent's picture, and a voice
message in a format WeChat plays, go out by the customer-service API as image / voice messages
of their own (``parts``; sender.py uploads them); where they cannot (the passive reply carries
one text; a voice WeChat cannot play, which we do not transcode) the citizen is told there is
one.
"""

from __future__ import annotations

import re
import time

from core.attachments import id_from_url
from core.dialog.models import Attachment, Outbound
from core.ratings import TEXT_PROMPT

#: the most we put in one text message, in UTF-8 bytes; the platform's documented limit for a
#: customer-service text is 2048, and the passive reply's is no larger
MAX_BYTES = 2000
#: characters XML 1.0 cannot carry at all; dropped so a reply is always well-formed
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MARKERS = {"image": "[图片]", "voice": "[语音]", "file": "[文件]"}
#: the voice WeChat accepts (temporary media of type voice): AMR or MP3 of at most 2 MB, read as
#: 2,000,000 bytes so that a file near the limit is announced rather than refused. Its other
#: limit, 60 seconds, only the platform checks (sender.py announces what it refuses).
VOICE_MIMES = frozenset({"audio/amr", "audio/mpeg"})
VOICE_MAX_BYTES = 2_000_000


def sendable(a: Attachment) -> str | None:
    """The message type (``image`` / ``voice``) the customer-service API sends a stored
    attachment as, or None when it can only be announced."""
    if id_from_url(a.url) is None:
        return None
    if a.kind == "image":
        return "image"
    if a.kind == "voice" and a.mime in VOICE_MIMES and a.size <= VOICE_MAX_BYTES:
        return "voice"
    return None


def media(out: Outbound) -> list[dict[str, str]]:
    """The message's attachments the API sends as media messages, as parts ``{type: id}``."""
    return [{kind: id_from_url(a.url)} for a in out.attachments if (kind := sendable(a))]


def note(kinds: list[str]) -> str:
    """What tells the citizen there is a picture, voice or file this channel cannot show."""
    marks = "".join(_MARKERS.get(k, "[附件]") for k in kinds)
    return f"{marks}（本渠道暂不能显示图片或语音，如需查看请告诉工作人员）"


def render_text(out: Outbound, *, media_sent: bool = False) -> str:
    """The message as text; ``media_sent``: what ``media`` lists goes out as image / voice
    messages, so only the rest (other voice formats, files) is announced."""
    if out.rating is not None and out.rating.segment == "agent":
        # "回复1-5" instead of the numbered menu: the levels read the same either way (1 = 非常
        # 不满意 … 5 = 非常满意), and the prompt says it in one line
        parts = [out.rating.prompt or out.text, TEXT_PROMPT]
        parts += [f"{link.title}: {link.url}" for link in out.links]
        text = "\n".join(p for p in parts if p)
    else:
        text = out.plain_text()
    unshown = [a.kind for a in out.attachments if not (media_sent and sendable(a))]
    if unshown:
        text = f"{text}\n\n{note(unshown)}" if text else note(unshown)
    return _NOT_XML.sub("", text)


def parts(outs: list[Outbound]) -> list[str | dict[str, str]]:
    """What the customer-service API sends for these messages, in order: their texts packed
    into as few messages as fit, and each picture or playable voice as an image / voice message
    after its text."""
    out: list[str | dict[str, str]] = []
    run: list[str] = []
    for o in outs:
        text = render_text(o, media_sent=True)
        if text:
            run.append(text)
        sent = media(o)
        if sent:
            out.extend(pack(run))
            run = []
            out.extend(sent)
    out.extend(pack(run))
    return out


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def split(text: str, limit: int = MAX_BYTES) -> list[str]:
    """``text`` in pieces of at most ``limit`` bytes, cut at line ends where possible."""
    if _size(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while _size(line) > limit:  # one very long line: cut it by characters
            room, cut = limit - _size(current), 0
            while cut < len(line) and _size(line[:cut + 1]) <= room:
                cut += 1
            if cut == 0:
                pieces.append(current)
                current = ""
                continue
            pieces.append(current + line[:cut])
            current, line = "", line[cut:]
        if _size(current + line) > limit:
            pieces.append(current)
            current = ""
        current += line
    if current:
        pieces.append(current)
    return [p.strip("\n") for p in pieces if p.strip()]


def pack(texts: list[str], limit: int = MAX_BYTES) -> list[str]:
    """Consecutive texts in as few platform messages as fit: the platform allows only a few
    customer-service messages per citizen message (5 in 48 hours), so two short notices
    (e.g. "服务已结束" and the rating request) go out as one."""
    out: list[str] = []
    for text in texts:
        for piece in split(text, limit):
            if out and _size(out[-1]) + 2 + _size(piece) <= limit:
                out[-1] = f"{out[-1]}\n\n{piece}"
            else:
                out.append(piece)
    return out


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def passive_xml(to_user: str, from_user: str, content: str, now: int | None = None) -> str:
    """An Official Account's 被动回复 text message (to the citizen's openid, from the account)."""
    return ("<xml>"
            f"<ToUserName>{_cdata(to_user)}</ToUserName>"
            f"<FromUserName>{_cdata(from_user)}</FromUserName>"
            f"<CreateTime>{int(now if now is not None else time.time())}</CreateTime>"
            "<MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{_cdata(_NOT_XML.sub('', content))}</Content>"
            "</xml>")


__all__ = ["render_text", "media", "sendable", "note", "parts", "split", "pack", "passive_xml",
           "MAX_BYTES", "VOICE_MIMES", "VOICE_MAX_BYTES"]
