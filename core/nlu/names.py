"""A matter's own name in a question: "租房子做居住登记，房东要到场吗" is about 居住登记.

A question that uses a matter's official name (居住登记, 发票领用, 职工参保登记) says which
matter it is about more surely than any other word in it, yet the search weighs the name as
a few words among many: "居住登记" shares 居住 with every 居住证 question, and a 居住证 FAQ that
also speaks of 租房 and 房东 outranks it. The names are the matters' names
(config/matters.yaml) and their guides' titles, with what their brackets hold when it is a
name of its own (租房提取, 二手房过户, 交旧). A question naming exactly one matter has that
matter's entries weighted up by ``bot.name_boost``; two names ("办居住证要先做居住登记吗")
decide nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from ..kb.models import KbEntryBase
from .index import matter_positions
from .text import normalise

#: a bracketed part: （初审）, (折), 《道路运输证》, “一件事”, 【导办】
_BRACKETS = re.compile(r"[（(《“【]([^）)》”】]*)[）)》”】]")
#: shorter names are words, not names (签注, 验旧): they are weighed by the search already
MIN_NAME = 4


def names_of(title: str, *, inner: bool = True) -> list[str]:
    """The names a title gives its matter: the title without its brackets and, with ``inner``
    (a guide's title, which brackets another name: 租房提取), a bracket's content when it is
    a name rather than a list or a qualifier (本市户籍, 含…, 除…)."""
    names = [_BRACKETS.sub("", title).strip("/—-、 ")]
    for part in _BRACKETS.findall(title) if inner else ():
        if not re.search(r"[、/，,]", part) and not part.startswith(("含", "除", "导办")):
            names.append(part)
    return [n for n in (normalise(n) for n in names) if len(n) >= MIN_NAME]


class MatterNames:
    def __init__(self, entries: Sequence[KbEntryBase], matter_names: Mapping[str, str]) -> None:
        owners: dict[str, set[str]] = {}
        for matter, name in matter_names.items():
            for n in names_of(name, inner=False):
                owners.setdefault(n, set()).add(matter)
        for e in entries:
            if e.type == "guide":
                for n in names_of(e.display_title):
                    owners.setdefault(n, set()).update(e.matters)
        #: name → the one matter it names (a name two matters share names neither)
        self.names = {n: next(iter(ms)) for n, ms in owners.items() if len(ms) == 1}
        positions = matter_positions(entries)
        self._members: dict[str, np.ndarray] = {}
        for matter in set(self.names.values()):
            mask = np.zeros(len(entries), dtype=bool)
            mask[positions.get(matter, [])] = True
            self._members[matter] = mask

    def named(self, question: str) -> set[str]:
        """The matters whose names the question uses; a name inside a longer name found too
        (居住登记 in 来沪人员居住登记) counts as that longer one."""
        q = normalise(question)
        found = [n for n in self.names if n in q]
        return {self.names[n] for n in found
                if not any(n != other and n in other for other in found)}

    def boost(self, question: str, factor: float) -> np.ndarray | None:
        """Per-entry multipliers favouring the one matter the question names; None when it
        names none or several (or the factor is 1)."""
        if factor == 1.0:
            return None
        named = self.named(question)
        if len(named) != 1:
            return None
        return np.where(self._members[next(iter(named))], np.float32(factor), np.float32(1.0))
