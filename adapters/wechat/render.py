"""The core's Outbound as WeChat text: one message's text, packing into platform messages, the
passive (in-response) reply.

Links become "title: url" lines (WeChat makes URLs tappable), quick replies a numbered menu
("回复 1、2、3 选择"; the core maps the digit back to the option), and an agent's rating request
the "回复1-5" prompt, whose digits the core's rating flow reads. An agent's picture goes out by
the customer-service API as an image message of its own (``parts``; sender.py uploads it);
where it cannot (the passive reply carries one text, a voice note is not forwarded) the citizen
is told there is one.
"""

from __future__ import annotations

import re
import time

from core.attachments import id_from_url
from core.dialog.models import Outbound
from core.ratings import TEXT_PROMPT

#: the most we put in one text message, in UTF-8 bytes; the platform's documented limit for a
#: customer-service text is 2048, and the passive reply's is no larger
MAX_BYTES = 2000
#: characters XML 1.0 cannot carry at all; dropped so a reply is always well-formed
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MARKERS = {"image": "[图片]", "voice": "[语音]", "file": "[文件]"}


def pictures(out: Outbound) -> list[str]:
    """The attachment ids of the message's stored pictures (what the API can send)."""
    return [i for a in out.attachments if a.kind == "image" and (i := id_from_url(a.url))]


def render_text(out: Outbound, *, pictures_sent: bool = False) -> str:
    """The message as text; ``pictures_sent``: its pictures go out as image messages, so only
    what is not sent (voice, files) is announced."""
    if out.rating is not None and out.rating.segment == "agent":
        # "回复1-5" instead of the numbered menu: the levels read the same either way (1 = 非常
        # 不满意 … 5 = 非常满意), and the prompt says it in one line
        parts = [out.rating.prompt or out.text, TEXT_PROMPT]
        parts += [f"{link.title}: {link.url}" for link in out.links]
        text = "\n".join(p for p in parts if p)
    else:
        text = out.plain_text()
    unshown = [a for a in out.attachments
               if not (pictures_sent and a.kind == "image" and id_from_url(a.url))]
    if unshown:
        marks = "".join(_MARKERS.get(a.kind, "[附件]") for a in unshown)
        note = f"{marks}（本渠道暂不能显示图片或语音，如需查看请告诉工作人员）"
        text = f"{text}\n\n{note}" if text else note
    return _NOT_XML.sub("", text)


def parts(outs: list[Outbound]) -> list[str | dict[str, str]]:
    """What the customer-service API sends for these messages, in order: their texts packed
    into as few messages as fit, and each picture as an image message after its text."""
    out: list[str | dict[str, str]] = []
    run: list[str] = []
    for o in outs:
        text = render_text(o, pictures_sent=True)
        if text:
            run.append(text)
        images = pictures(o)
        if images:
            out.extend(pack(run))
            run = []
            out.extend({"image": i} for i in images)
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


__all__ = ["render_text", "pictures", "parts", "split", "pack", "passive_xml", "MAX_BYTES"]
