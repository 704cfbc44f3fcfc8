"""What 小申 does not cover: services citizens ask about that none of the KB's matters handle.

A question about a passport shares "办理", "丢了", "补办" with a dozen KB entries and may match
one of them well enough to be answered, and answered wrongly. Retrieval cannot know that the KB
says nothing about passports: it only sees what the KB *does* contain. ``config/not_covered.yaml``
lists such services by pattern. When a question names one and the entry the bot would answer
with never mentions it, the bot says plainly that this is outside its matters instead (the
question goes on the KB gap list like any fallback, so operators see the demand).

The check is against the answering entry's own text, so a KB that does cover the thing (an
entry about 外籍人员 and their 护照, a divorce-related property transfer that names 离婚证)
keeps answering.

Licences need no list (:class:`Licences`): a question asking about a 许可证 the KB never names
(药品经营许可证, 食品生产许可证, 外国人工作许可) is about another department's licence, however
many words it shares with the one we do cover (食品经营许可证).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..paths import config_dir
from ..reference import load_model
from .homophones import cjk
from .text import check_patterns, normalise


class Topic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: how the reply names the service ("护照、港澳台通行证等出入境证件")
    name: str = Field(min_length=1)
    #: a regular expression over the normalised question
    pattern: str = Field(min_length=1)

    _compiles = field_validator("pattern")(check_patterns)


class NotCoveredFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topics: list[Topic] = Field(default_factory=list)


class Coverage:
    def __init__(self, topics: list[Topic]) -> None:
        self._topics = [(t.name, re.compile(t.pattern)) for t in topics]

    @classmethod
    def load(cls, path: Path | None = None) -> Coverage:
        return cls(load_model(path or config_dir() / "not_covered.yaml", NotCoveredFile).topics)

    def outside(self, question: str, entry_text: str) -> str | None:
        """The name of the first listed service the question names and ``entry_text`` never
        mentions."""
        q = normalise(question)
        for name, pattern in self._topics:
            if pattern.search(q) and not pattern.search(entry_text):
                return name
        return None


class Licences:
    """Licences a question names that the KB never does.

    A licence is named by the words before 许可证 / 许可 ("药品 经营 许可证"), as jieba cuts
    them: up to four, stopping at a verb, a one-character word or an everyday word (公司, 我们,
    那个), so "我们公司想办食品经营许可证" names 食品经营许可证. It is unknown when that name
    appears nowhere in the KB (questions, aliases, answers) or the synonyms. Other documents
    (证, 证明, 资格证) are left alone: citizens call ours by too many names of their own (幼师
    资格证, 单位要出证明) for "never named" to mean "not ours".
    """

    HEADS = ("许可证", "许可")
    #: words that do not make a licence another one ("我们公司的营业执照" is still ours)
    EVERYDAY = frozenset("公司 企业 单位 个人 我们 我的 本人 上海 本市 外地 电子 纸质 原来 现在 "
                         "这个 那个 相关 有关 所需 需要 申请 办理 开具 领取 补办 换领 怎么 如何 "
                         "什么 哪里 可以 请问 你好 一下".split())
    #: a word ending in one of these is a verb phrase (能办, 想开, 要领, 提交, 能先, 取得), not
    #: part of a name
    VERB_ENDS = frozenset("办开领考拿要个的了交先再还也就都得到")

    def __init__(self, known: Iterable[str], cut: Callable[[str], list[str]]) -> None:
        self._known = "\n".join(known)
        self._cut = cut
        # the bot asks about one message several times (the answer, the fallback's wording)
        self.unknown = lru_cache(maxsize=256)(self._unknown)

    def _unknown(self, question: str) -> str | None:
        """The first licence the question names and the KB does not, or None."""
        words = self._cut(normalise(question))
        for i, word in enumerate(words):
            head = next((h for h in self.HEADS if word.endswith(h)), None)
            if head is None or not cjk(word):
                continue
            name, ours = word, False
            for n, before in enumerate(reversed(words[max(0, i - 4):i]), 1):
                if not (cjk(before) and len(before) >= 2
                        and before not in self.EVERYDAY and before[-1] not in self.VERB_ENDS):
                    break
                name = before + name
                # "…能先提交食品经营许可申请": a name the KB knows, of two words or more before
                # 许可, is ours whatever words come before it; one word is too little to tell
                # (经营许可证 is in 药品经营许可证 and in ours alike)
                ours = ours or (n >= 2 and name in self._known)
            if not ours and len(name) - len(head) >= 2 and name not in self._known:
                return name
        return None
