"""Text normalisation and tokenisation for Chinese service questions.

One ``Analyzer`` per process holds a private jieba dictionary (jieba's default one is global
state) extended with the vocabulary citizens and the KB use: synonyms' canonical terms and their
colloquial variants, KB term names, matter names. Synonym expansion appends the canonical term
for every variant found, on both the KB and the query side, so "专票" and "增值税专用发票" meet.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from functools import cache, cached_property, lru_cache
from pathlib import Path

import jieba
import opencc
import yaml

# jieba logs its dictionary loading at DEBUG through a handler of its own; keep it quiet
jieba.setLogLevel(logging.WARNING)

from ..paths import config_dir
from .homophones import Homophones

log = logging.getLogger(__name__)

# Punctuation and symbols: split points, never tokens.
_PUNCT = re.compile(r"[\s\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
                    r"!-/:-@\[-`{-~、。，！？；：“”‘’（）《》【】…—·]+")
# Function words that carry no meaning for matching. Question words that separate one FAQ of a
# matter from another (多久, 哪里, 材料, 费用 …) are deliberately NOT here.
STOPWORDS = frozenset(
    "的 了 吗 呢 吧 啊 呀 哦 嘛 么 哈 噢 喔 哇 额 嗯 请问 问一下 问下 一下 你好 您好 谢谢 麻烦 请 "
    "我 我们 你 你们 您 他 她 它 这 那 这个 那个 就 都 也 还 又 是 在 和 与 及 或 把 被 给 让 "
    "想 想要 要 能 可以 能不能 可不可以 会 该 应该 得 着 过 个 些 一 有 没 没有 "
    "怎么 怎么样 怎样 如何 啥 什么 咋 哪 哪些 吗 么 呢 嘛 那 那么 那要 那我 还有 另外 然后 这样 "
    "的话 一般 到底 究竟".split()
)
_NUMBERED = re.compile(r"^\s*(?:第)?\s*([1-9]|[一二三四五六七八九])\s*(?:个|条|项|种)?\s*[。.!！]?\s*$")
_CN_DIGITS = {c: i for i, c in enumerate("一二三四五六七八九", 1)}


def check_patterns(patterns: str | list[str]) -> str | list[str]:
    """A pydantic validator: each pattern must compile as a regular expression."""
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
    return patterns


#: traditional → simplified characters, phrase-aware (乾隆 stays, 乾燥 → 干燥): citizens from Hong
#: Kong, Macao and Taiwan, and phones set to traditional input, ask "居住證簽注要不要收費"
_TO_SIMPLIFIED = opencc.OpenCC("t2s.json")


@lru_cache(maxsize=4096)  # the bot reads one message several times (intent, search, checks)
def normalise(text: str) -> str:
    """NFKC (full-width → half-width), simplified characters, lower case, collapsed whitespace.

    Every question and every KB row goes through here, so both sides are read alike."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():  # ~3 µs a question; ASCII (pinyin, "2") has nothing to convert
        text = _TO_SIMPLIFIED.convert(text)
    return " ".join(text.lower().split())


def numbered_choice(text: str) -> int | None:
    """'2', '第二个', '２。' → 2: the citizen picking a numbered suggestion."""
    m = _NUMBERED.match(normalise(text))
    if not m:
        return None
    token = m.group(1)
    return int(token) if token.isdigit() else _CN_DIGITS[token]


@cache
def _base_tokenizer() -> jieba.Tokenizer:
    tok = jieba.Tokenizer()
    tok.initialize()
    return tok


def load_synonyms(path: Path | None = None) -> dict[str, list[str]]:
    path = path or config_dir() / "synonyms.yaml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    table = data.get("synonyms", data) or {}
    return {str(k): [str(v) for v in (vs or [])] for k, vs in table.items()}


class Analyzer:
    """Tokenises text into words (jieba) and character n-grams, with synonym expansion."""

    def __init__(self, synonyms: dict[str, list[str]] | None = None,
                 extra_words: Iterable[str] = ()) -> None:
        self.synonyms = load_synonyms() if synonyms is None else synonyms
        self._extra = [w for w in extra_words if w]
        # variant → canonical, longest variant first so "无犯罪记录证明" wins over "无犯罪"
        pairs = [(normalise(v), normalise(c)) for c, vs in self.synonyms.items() for v in vs]
        self._variants = sorted((p for p in pairs if p[0] and p[0] != p[1]),
                                key=lambda p: -len(p[0]))
        # One message is expanded and segmented for the intent model, the search and the
        # policy's checks (~0.6 ms each time): the last few texts' results are kept.
        self._cut = lru_cache(maxsize=256)(self._segment)
        self.expand = lru_cache(maxsize=256)(self._expand)  # ~0.2 ms: every variant is tried

    @cached_property
    def _jieba(self) -> jieba.Tokenizer:
        tok = jieba.Tokenizer()
        # jieba's main dictionary is loaded once per process and copied (a few ms) for each
        # analyzer, instead of re-read from disk (most of a second) on every KB rebuild
        base = _base_tokenizer()
        tok.FREQ, tok.total, tok.initialized = dict(base.FREQ), base.total, True
        words = set(self._extra)
        for canonical, variants in self.synonyms.items():
            words.add(canonical)
            words.update(variants)
        for word in words:
            word = normalise(word)
            if 1 < len(word) <= 12 and " " not in word:
                tok.add_word(word, freq=2000)
        return tok

    @cached_property
    def homophones(self) -> Homophones:
        """The domain's words (synonyms' canonical terms, KB term names, matter names, and the
        words they are made of), for finding them again under a one-character typo. Not the
        synonyms' variants: many are typos themselves (居主证), kept there to be understood."""
        words: set[str] = set()
        for w in (*self._extra, *self.synonyms):
            w = normalise(w)
            words.add(w)
            words.update(self._jieba.cut_for_search(w))
        return Homophones(words)

    def _expand(self, text: str) -> str:
        """Normalised text with the words it mistypes (``homophones``) and the canonical form
        of each colloquial variant appended."""
        text = normalise(text)
        fixed = self.homophones.corrections(text)
        if fixed:
            text = text + " " + " ".join(fixed)
        added: list[str] = []
        for variant, canonical in self._variants:
            if variant in text and canonical not in text and canonical not in added:
                added.append(canonical)
        return text if not added else text + " " + " ".join(added)

    def words(self, text: str, *, expanded: bool = False) -> list[str]:
        """Content words (search-mode segmentation: long words also yield their parts)."""
        return list(self._cut(text if expanded else self.expand(text)))

    def cut(self, text: str) -> list[str]:
        """Every word of the text as written, stop words included (no expansion)."""
        return list(self._jieba.cut(normalise(text)))

    def _segment(self, text: str) -> tuple[str, ...]:
        out = []
        for chunk in _PUNCT.split(text):
            if not chunk:
                continue
            for w in self._jieba.cut_for_search(chunk, HMM=True):
                w = w.strip()
                if w and w not in STOPWORDS:
                    out.append(w)
        return tuple(out)

    @staticmethod
    def chars(text: str) -> str:
        """The text with punctuation and spaces removed (for character n-grams)."""
        return "".join(_PUNCT.split(text))

    def char_ngrams(self, text: str, *, expanded: bool = False, n: tuple[int, ...] = (1, 2)
                    ) -> list[str]:
        text = text if expanded else self.expand(text)
        grams: list[str] = []
        for chunk in _PUNCT.split(text):
            chunk = "".join(c for c in chunk if c not in STOPWORDS or len(chunk) == 1)
            for size in n:
                grams.extend(chunk[i : i + size] for i in range(len(chunk) - size + 1))
        return grams
