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
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..paths import config_dir
from ..reference import load_model
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
