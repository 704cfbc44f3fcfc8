"""禁语: phrases an agent must not send to a citizen, found before the message goes out.

The list is configuration (``config/banned_phrases.yaml``, or ``handoff.banned_phrases_file``):
categories (推诿塞责, 态度生硬 …), each with a reason shown to the agent and its phrases; a phrase
may list ``allow`` contexts, longer wordings that contain it and are fine ("不能保证肯定没问题"
contains the banned promise "肯定没问题").

Matching has to survive what an agent types by accident or on purpose, so text and phrases are
both reduced to a *skeleton* before comparing: NFKC (full-width ＡＢＣ and half-width katakana
fold), case folded, and only letters and digits kept — spaces, punctuation, symbols, emoji and
zero-width characters between the characters of a phrase do not hide it ("不 归 我 们 管",
"不归我们·管"). Every skeleton character remembers where it came from, so a match is reported
as a span of the original text, for the workspace to highlight.

Speed: a message is checked on every send. All phrases are one compiled alternation over the
skeleton, so a clean message costs one regex scan; only at a hit are the phrases that start
there looked at (longest first) against their allow contexts.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, \
    field_validator, model_validator

from .errors import ConfigError
from .paths import config_dir

DEFAULT_FILE = "banned_phrases.yaml"


@lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """What one character contributes to the skeleton: its NFKC, case-folded letters and
    digits ("" for spaces, punctuation, symbols, marks, format and control characters)."""
    return "".join(c for c in unicodedata.normalize("NFKC", char).casefold()
                   if unicodedata.category(c)[0] in "LN")


def skeleton(text: str) -> tuple[str, list[int]]:
    """The comparable form of ``text`` and, for each of its characters, the index in ``text``
    of the character it came from."""
    chars: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        folded = _fold(char)
        if folded:
            chars.append(folded)
            origin.extend([i] * len(folded))
    return "".join(chars), origin


# -- the file ----------------------------------------------------------------------------------

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhraseSpec(_Model):
    phrase: Text
    #: longer wordings containing the phrase that are acceptable where they occur
    allow: list[Text] = Field(default_factory=list, max_length=50)

    @field_validator("phrase")
    @classmethod
    def _comparable(cls, v: str) -> str:
        if len(skeleton(v)[0]) < 2:
            raise ValueError("needs at least two letters or digits (punctuation is ignored)")
        return v

    @model_validator(mode="after")
    def _allow_contains_phrase(self) -> PhraseSpec:
        core = skeleton(self.phrase)[0]
        for i, context in enumerate(self.allow):
            if core not in skeleton(context)[0]:
                raise ValueError(f"allow.{i}: {context!r} does not contain the phrase "
                                 f"{self.phrase!r}, so it can never apply")
        return self


class Category(_Model):
    #: what the agent is told when a phrase of this category is found
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=300)]
    #: each a phrase, or {phrase, allow: [...]}
    phrases: list[PhraseSpec] = Field(min_length=1, max_length=500)

    @field_validator("phrases", mode="before")
    @classmethod
    def _plain_strings(cls, v: object) -> object:
        if isinstance(v, list):
            return [{"phrase": p} if isinstance(p, str) else p for p in v]
        return v


class BannedFile(_Model):
    categories: dict[Text, Category] = Field(min_length=1)


# -- matching ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BannedMatch:
    phrase: str      # as written in the file
    category: str
    reason: str
    start: int       # span in the text that was checked: text[start:end]
    end: int
    matched: str     # text[start:end], e.g. "不 归 我 们 管"


@dataclass(frozen=True, slots=True)
class _Entry:
    phrase: str
    category: str
    reason: str
    core: str
    allow: tuple[tuple[str, tuple[int, ...]], ...]  # (context skeleton, offsets of core in it)


class BannedPhrases:
    def __init__(self, spec: BannedFile, source: str = "<banned phrases>") -> None:
        self.source = source
        by_core: dict[str, _Entry] = {}
        for category, cat in spec.categories.items():
            for p in cat.phrases:
                core = skeleton(p.phrase)[0]
                if core in by_core:
                    raise ConfigError(f"{source}: categories.{category}: the phrase {p.phrase!r} "
                                      f"is listed twice (also as {by_core[core].phrase!r} in "
                                      f"{by_core[core].category})")
                allow = []
                for context in p.allow:
                    ctx = skeleton(context)[0]
                    offsets = tuple(m.start() for m in re.finditer(f"(?={re.escape(core)})", ctx))
                    allow.append((ctx, offsets))
                by_core[core] = _Entry(p.phrase, category, cat.reason, core, tuple(allow))
        self._entries = by_core
        #: phrases by their first skeleton character, longest first
        self._starting: dict[str, list[_Entry]] = {}
        for entry in sorted(by_core.values(), key=lambda e: -len(e.core)):
            self._starting.setdefault(entry.core[0], []).append(entry)
        alternation = "|".join(re.escape(c) for c in sorted(by_core, key=len, reverse=True))
        self._pattern = re.compile(alternation)

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, path: Path | None = None) -> BannedPhrases:
        """The list in ``path`` (None: the shipped config/banned_phrases.yaml); a ConfigError
        names the file and the field when it cannot be used."""
        path = Path(path) if path is not None else config_dir() / DEFAULT_FILE
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the banned phrases ({exc.strerror or exc})"
                              ) from None
        except (yaml.YAMLError, UnicodeError) as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: object, source: str = "<banned phrases>") -> BannedPhrases:
        try:
            spec = BannedFile.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in err["loc"]) or "(file)"
            more = len(exc.errors()) - 1
            raise ConfigError(f"{source}: {field}: {err['msg']}"
                              + (f" (and {more} more problems)" if more else "")) from None
        return cls(spec, source)

    def find(self, text: str) -> BannedMatch | None:
        """The first banned phrase in ``text`` (outside its allowed contexts), or None."""
        for found in self._scan(text):
            return found
        return None

    def find_all(self, text: str) -> list[BannedMatch]:
        """Every banned phrase in ``text``, left to right, without overlaps."""
        return list(self._scan(text))

    def _scan(self, text: str):
        if not self._entries:
            return
        skel, origin = skeleton(text)
        pos = 0
        while (m := self._pattern.search(skel, pos)) is not None:
            start = m.start()
            entry = next((e for e in self._starting[skel[start]]
                          if skel.startswith(e.core, start) and not self._allowed(e, skel, start)),
                         None)
            if entry is None:  # every phrase starting here is in an allowed context
                pos = start + 1
                continue
            end = start + len(entry.core)
            a, b = origin[start], origin[end - 1] + 1
            yield BannedMatch(entry.phrase, entry.category, entry.reason, a, b, text[a:b])
            pos = end

    @staticmethod
    def _allowed(entry: _Entry, skel: str, start: int) -> bool:
        for context, offsets in entry.allow:
            for offset in offsets:
                if start - offset >= 0 and skel.startswith(context, start - offset):
                    return True
        return False
