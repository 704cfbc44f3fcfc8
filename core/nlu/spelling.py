"""Questions typed in pinyin: "zhuan rengong", "juzhuzheng zenme qianzhu" → 转人工, 居住证怎么签注.

When the input method fails (a borrowed phone, an app's text box that lost it, an older user
who never learnt one), people type the sounds. Without this the bot sees one unknown Latin word
and falls back; a person at a desk would read it. The text is spelt back in Chinese with the
words the bot knows (the KB's questions and the intent examples), by their toneless pinyin:
the fewest words that spell the whole text, the most frequent where two sound the same. A text
that any piece of does not spell is left alone: "hello", "app", "ukey" and other English stay
English.

Built on first use (pypinyin over every known word takes about 0.2 s), because almost
no process ever needs it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from .homophones import cjk, sound

#: the whole message is Latin letters, spaces and punctuation (no Chinese, no digits)
_LATIN = re.compile(r"[A-Za-z][A-Za-z\s'’,.!?，。！？、]*")
_CHUNKS = re.compile(r"[a-z]+")
#: the longest word looked for, in syllables
MAX_SYLLABLES = 8
#: shorter is too short to tell ("hi", "ok"); longer is not a question typed by sound, and
#: spelling it would cost time on every long Latin message (English text, pasted codes)
MIN_LETTERS, MAX_LETTERS = 4, 240


class Spelling:
    """Known words by their sound, to spell pinyin back in Chinese."""

    def __init__(self, texts: Iterable[str], cut: Callable[[str], Iterable[str]]) -> None:
        counts: Counter[str] = Counter()
        for text in texts:
            for w in cut(text):
                if cjk(w):
                    counts[w] += 1
                    if len(w) > 1:  # each character is a word too, for what jieba joined
                        counts.update(w)
        #: joined pinyin → (count, word): the most frequent word of each sound
        self._words: dict[str, tuple[int, str]] = {}
        for w, n in counts.items():
            if len(w) > MAX_SYLLABLES:
                continue
            key = "".join(s or "" for s in map(sound, w))
            if n > self._words.get(key, (0, ""))[0]:
                self._words[key] = (n, w)
        self._longest = max(map(len, self._words), default=0)

    def hanzi(self, text: str) -> str | None:
        """``text`` spelt in Chinese, or None when it is not all pinyin of known words."""
        if not _LATIN.fullmatch(text.strip()):
            return None
        # spaces are dropped: people put them between syllables ("zhuan ren gong") as often
        # as between words
        letters = "".join(_CHUNKS.findall(text.lower()))
        if not MIN_LETTERS <= len(letters) <= MAX_LETTERS:  # "hi", "ok"; or an essay
            return None
        return self._spell(letters)

    def _spell(self, letters: str) -> str | None:
        # best[i]: the fewest words (then the most frequent) that spell letters[:i]
        best: list[tuple[int, int, str] | None] = [None] * (len(letters) + 1)
        best[0] = (0, 0, "")
        for i in range(len(letters)):
            if best[i] is None:
                continue
            pieces, weight, spelt = best[i]
            for j in range(i + 1, min(len(letters), i + self._longest) + 1):
                found = self._words.get(letters[i:j])
                if found is None:
                    continue
                cand = (pieces + 1, weight - found[0], spelt + found[1])
                if best[j] is None or cand[:2] < best[j][:2]:
                    best[j] = cand
        last = best[-1]
        return None if last is None else last[2]
