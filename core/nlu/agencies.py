"""Departments named in a question: "人社系统里…", "税务登记…" say whose matter it is.

Neighbouring matters of different departments share most of their words: 人社's 单位(项目)基本
信息变更 (M12) and the tax office's 一照一码户信息变更 (M32) are both "公司改名了…要变更吗".
Citizens often settle it by naming the department, which the search weighs as one word among
many. ``config/agencies.yaml`` lists how each department is named; a question naming exactly
one of them has the entries of that department's matters (config/matters.yaml) weighted up by
``bot.agency_boost``. Two departments named ("工商改好了 税务这边还要变更吗") decide nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from ..kb.models import KbEntryBase
from ..paths import config_dir
from ..reference import load_model
from .index import matter_positions
from .text import check_patterns, normalise


class AgenciesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: department code (config/matters.yaml) → a regular expression naming it
    agencies: dict[str, str]

    @field_validator("agencies")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        check_patterns(list(value.values()))
        return value


class Agencies:
    def __init__(self, patterns: Mapping[str, str], entries: Sequence[KbEntryBase],
                 department_of: Mapping[str, str]) -> None:
        self._patterns = [(code, re.compile(p)) for code, p in patterns.items()]
        #: department → which entries (by position) belong to its matters
        self._members = {code: np.zeros(len(entries), dtype=bool) for code, _ in self._patterns}
        for matter, positions in matter_positions(entries).items():
            members = self._members.get(department_of.get(matter, ""))
            if members is not None:
                members[positions] = True

    @classmethod
    def load(cls, entries: Sequence[KbEntryBase], department_of: Mapping[str, str],
             path: Path | None = None) -> Agencies:
        spec = load_model(path or config_dir() / "agencies.yaml", AgenciesFile)
        return cls(spec.agencies, entries, department_of)

    def named(self, question: str) -> list[str]:
        """The departments the question names, in the file's order."""
        q = normalise(question)
        return [code for code, pattern in self._patterns if pattern.search(q)]

    def boost(self, question: str, factor: float) -> np.ndarray | None:
        """Per-entry multipliers favouring the one department the question names; None when
        it names none or several (or the factor is 1)."""
        named = self.named(question)
        if len(named) != 1 or factor == 1.0 or not self._members[named[0]].any():
            return None
        return np.where(self._members[named[0]], np.float32(factor), np.float32(1.0))
