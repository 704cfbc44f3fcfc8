"""Homophone typos of the domain's words: "失业登己", "签住", "领发漂" → 失业登记, 签注, 发票.

People type Chinese by pinyin, so their typos are mostly the right sound with the wrong
character. jieba then splits the mistyped word into single characters and the search loses its
most specific term (the dev and blind sets' questions with such typos fell back). This module
knows the domain's words by their toneless pinyin (the analyzer gives it the synonyms'
canonical terms, KB term names, matter names and the words they are made of), and finds in a
text each stretch that sounds like one of them and differs from it in exactly one character.
The analyzer appends the word it was meant to be, as it appends a synonym's canonical term:
the original text is kept, so nothing is lost when a correction is wrong, and a correct word
is never "corrected" (it is already the word).

One character only: two differing characters that sound alike are as often another real word
(等级 / 登记) as a typo.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

#: the longest word looked for (matter names run longer, but their parts are words too)
MAX_LEN = 6


def cjk(text: str) -> bool:
    """Whether ``text`` is one or more Chinese characters (CJK unified ideographs), nothing else."""
    return bool(text) and all("\u4e00" <= c <= "\u9fff" for c in text)


@cache
def sound(c: str) -> str | None:
    """A character's toneless pinyin, as people type it (the most common reading); None for
    anything but a Chinese character."""
    if not cjk(c):
        return None
    # imported here: pypinyin loads its dictionaries on import (~0.5 s), which every process
    # importing the analyzer paid, CLI commands and workers that never read a question included
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(c, style=Style.NORMAL)[0]


class Homophones:
    """Words of a vocabulary, found again in texts that mistype one of their characters."""

    def __init__(self, words: Iterable[str]) -> None:
        self._by_sound: dict[tuple[str, ...], list[str]] = {}
        self._words: set[str] = set()
        for w in sorted(set(words)):
            if 2 <= len(w) <= MAX_LEN and cjk(w):
                self._by_sound.setdefault(tuple(map(sound, w)), []).append(w)
                self._words.add(w)
        # every beginning of a word's sounds: a stretch whose beginning is none is not followed
        self._prefixes = {k[:n] for k in self._by_sound for n in range(1, len(k) + 1)}

    def corrections(self, text: str) -> list[str]:
        """The vocabulary words that stretches of ``text`` mistype by one character, in order
        of first appearance, each once."""
        if not self._by_sound:
            return []
        sounds = [sound(c) for c in text]
        found: dict[str, None] = {}
        for i in range(len(text) - 1):
            key: tuple[str | None, ...] = ()
            for j in range(i, min(i + MAX_LEN, len(text))):
                key += (sounds[j],)
                if key not in self._prefixes:  # (None, a non-Chinese character, never is)
                    break
                typed = text[i:j + 1]
                if typed in self._words:  # typed right: 失业 is not a typo of 事业
                    continue
                for w in self._by_sound.get(key, ()):
                    if sum(a != b for a, b in zip(w, typed, strict=True)) == 1 and w not in text:
                        found[w] = None
        return list(found)
