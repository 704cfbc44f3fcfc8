"""Which of a citizen's lines steer the conversation rather than say what they need.

A citizen asks "无犯罪记录证明怎么开？", then types 转人工, taps 市公安局 in the department menu,
answers "2" to a numbered menu or rates the service. Only the first says what the matter is: the
workspace leaves the others out of the 派单 summary it drafts, and 纳入知识库 never offers them as
the question an agent's answer belongs to. One definition here serves both (the workspace's
script reads it as the ``steering`` flag of each citizen message in the transcript API).

A request for a person comes in more words than any list holds ("機器人別回了，叫人來", "不要机器
人"), so the bot's own reading counts first: a line 小申 answered by handing off was one
(:func:`flags`). The patterns below catch the rest: menu numbers, taps, ratings, greetings.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Protocol

from ..nlu.text import normalise

#: quick replies that steer (human help's menus and cancel, ratings, 已解决 / 未解决, 转人工帮办);
#: a tapped ``pick:`` / ``matter:`` is a question or matter the citizen chose, and is kept
STEERING_PAYLOADS = ("handoff:", "rate:", "resolved:", "human")

# What is typed to steer: asking for a person (转人工, 人工客服 …), a bare greeting ("在吗",
# "你好"), a menu number ("2", "第二个"), cancelling (取消排队 …), and the labels of the quick
# replies above typed out on a text channel. Matched against the line without spaces,
# punctuation and symbols; a longer number (a phone number) is kept.
_TYPED = [re.compile(p) for p in (
    r"^(?:(?:我要|我想|我需要|请|帮我)?(?:转接?|接通?|找|要)?(?:人工|真人|活人|客服)"
    r"(?:帮办|客服|服务|坐席)?(?:在吗|在线吗|在不在|呢|啊|吧)?)+$",
    r"^(?:请问)?(?:你好|您好|小申|在吗|在不在|有(?:活|真)?人(?:在)?吗|谢谢(?:你|您)?|好的?|嗯+|哦+|ok|okay)+$",
    r"^第?(?:[0-9]{1,3}|[一二三四五六七八九十])(?:个|条|项|种)?$",
    r"^(?:取消|取消排队|取消人工|取消留言|不排了|不等了|不用了)$",
    r"^(?:已解决|未解决|没解决|非常满意|满意|基本满意|不满意|非常不满意|不确定全市通办)$",
)]


class Line(Protocol):
    """A stored message, as much of it as this module reads."""

    sender: str
    action: str | None
    text: str
    body: dict[str, Any]


def _bare(text: str) -> str:
    text = normalise(text)  # NFKC, traditional → simplified (轉人工), lower case
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c)[0] not in "PS")


def steering(text: str, payload: str | None = None) -> bool:
    """Whether a citizen's line (its text, and the payload of a tapped quick reply) only steers
    the conversation: True for an empty line too, which says nothing either."""
    if payload and payload.startswith(STEERING_PAYLOADS):
        return True
    bare = _bare(text or "")
    return not bare or any(p.match(bare) for p in _TYPED)


def flags(lines: Sequence[Line]) -> list[bool]:
    """For each stored message in order, whether it is a citizen's line that only steers: by
    :func:`steering`, or because 小申 answered it by handing off to a person."""
    out = []
    for i, m in enumerate(lines):
        if m.sender != "citizen":
            out.append(False)
            continue
        after = lines[i + 1] if i + 1 < len(lines) else None
        handed_off = after is not None and after.sender == "bot" and after.action == "handoff"
        out.append(handed_off or steering(m.text, (m.body or {}).get("payload")))
    return out


__all__ = ["STEERING_PAYLOADS", "flags", "steering"]
