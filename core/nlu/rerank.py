"""The re-ranker: a second look at the search's best few candidates, one pair at a time.

The sparse search (``index.py``) scores every row at once, so it can only add up term matches.
It cannot see what a person sees when two questions share most of their words: that one asks
"多少钱" and the other "多久", that one says "不能" where the other says "能", that the numbers
differ, or that a row covers everything the citizen said but also a rare word they did not.
For the top ``depth`` candidates this module computes such pair features and orders them by a
logistic model over them.

The model is data (``config/rerank.yaml``): coefficients over standardised features, fitted by
``bench/fit_rerank.py`` on public paraphrase pairs (LCQMC and AFQMC dev), never on the
government KB or its evaluation sets. The features are generic: nothing in them names a matter.

Scores are left as the search computed them (confidence is calibrated on those); the re-ranker
only changes the order, and a candidate it promotes keeps its own, lower, score, which is what
lets the bot ask when the two disagree (see ``Bot._understand``'s clarify check).
"""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ConfigError
from ..paths import config_dir
from .text import Analyzer, normalise

if TYPE_CHECKING:
    from .index import Hit, KbIndex, _Bm25

#: general Chinese question words, grouped by what they ask; a pair that asks different
#: things ("多少钱" / "多久") is rarely a paraphrase however many words it shares
QUESTION_GROUPS: tuple[tuple[str, ...], ...] = (
    ("什么", "啥"),                                              # what
    ("怎么", "怎样", "如何", "咋"),                               # how
    ("为什么", "为何", "为啥", "干嘛"),                           # why
    ("哪",),                                                    # which / where
    ("多少", "几"),                                              # how many / how much
    ("多久", "多长时间", "何时", "时候"),                          # when / how long
    ("吗", "是否", "是不是", "能不能", "可不可以", "有没有", "会不会"),  # yes / no
)
NEGATIONS = ("不", "没", "别", "无", "非", "未", "勿")
_NUMBER = re.compile(r"\d+(?:\.\d+)?|[零一二两三四五六七八九十百千万亿]{2,}")

#: features of one candidate on its own
_OWN: tuple[str, ...] = (
    # the search's own view (relative: absolute scores differ from one KB to another, and a
    # model fitted on them transferred badly between the two public sets)
    "score_ratio", "rank",
    # idf-weighted overlap, for words and for character n-grams
    "word_q_cover", "word_c_cover", "word_jaccard", "word_q_missing_max", "word_c_extra_max",
    "char_q_cover", "char_c_cover", "char_jaccard", "char_q_missing_max", "char_c_extra_max",
    # raw text (stop words and question words included: the search drops them)
    "len_ratio", "qword_mismatch", "neg_parity_mismatch", "num_mismatch", "same_text",
    "raw_char_jaccard", "raw_char_q_cover", "raw_char_c_cover", "raw_bigram_jaccard",
)
#: features also compared across the list, (name, +1 if more is better): how far behind the
#: list's best the candidate is, and its place in the list by that feature
_ACROSS: tuple[tuple[str, int], ...] = (
    ("word_q_cover", 1), ("word_c_cover", 1), ("word_jaccard", 1), ("char_q_cover", 1),
    ("char_c_cover", 1), ("char_jaccard", 1), ("word_q_missing_max", -1),
    ("word_c_extra_max", -1), ("len_ratio", 1), ("qword_mismatch", -1),
    ("raw_char_jaccard", 1), ("raw_char_q_cover", 1), ("raw_bigram_jaccard", 1),
)
#: the features, in the order the model's coefficients are stored
FEATURES: tuple[str, ...] = _OWN + tuple(
    f"{name}_{what}" for name, _ in _ACROSS for what in ("behind", "place"))
_IDX = {name: i for i, name in enumerate(_OWN)}
_SAME = _IDX["same_text"]
_ACROSS_COLS = [_IDX[name] for name, _ in _ACROSS]
_ACROSS_SIGN = np.asarray([sign for _, sign in _ACROSS], dtype=np.float64)


class RerankModel(BaseModel):
    """A fitted re-ranker as stored in ``config/rerank.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    #: how many of the search's best candidates are re-ordered
    depth: int = Field(10, ge=2, le=50)
    #: the search's order stands unless the model prefers another candidate to the search's
    #: first by more than this (log-odds)
    margin: float = Field(0.0, ge=0.0)
    #: what the model was fitted on and how it scored (for the people who read the file)
    fitted: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _matches_code(self) -> RerankModel:
        if tuple(self.features) != FEATURES:
            unknown = sorted(set(self.features) - set(FEATURES))
            missing = sorted(set(FEATURES) - set(self.features))
            raise ValueError("the model's features are not the ones this code computes "
                             f"(unknown {unknown}, missing {missing}, or another order): "
                             "re-fit it with bench/fit_rerank.py")
        if not (len(self.mean) == len(self.scale) == len(self.coef) == len(FEATURES)):
            raise ValueError("mean, scale and coef need one value per feature")
        if any(s <= 0 for s in self.scale):
            raise ValueError("every scale must be positive")
        return self


def load_rerank_model(path: Path | None = None) -> RerankModel | None:
    """The shipped model, or None when the file is absent (the search's order is kept)."""
    return _load(path or config_dir() / "rerank.yaml")


@cache  # read once per process: every KB change rebuilds the index with it
def _load(path: Path) -> RerankModel | None:
    if not path.exists():
        return None
    try:
        return RerankModel.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValueError as exc:  # pydantic's ValidationError and yaml's errors are ValueErrors
        raise ConfigError(f"{path}: {exc}") from None


class _Raw:
    """What the raw-text features need of one text."""

    __slots__ = ("chars", "charset", "bigrams", "qgroups", "negations", "numbers")

    def __init__(self, text: str) -> None:
        self.chars = Analyzer.chars(normalise(text))
        self.charset = frozenset(self.chars)
        self.bigrams = frozenset(self.chars[i:i + 2] for i in range(len(self.chars) - 1))
        self.qgroups = frozenset(i for i, g in enumerate(QUESTION_GROUPS)
                                 if any(w in self.chars for w in g))
        self.negations = sum(self.chars.count(n) for n in NEGATIONS)
        self.numbers = frozenset(_NUMBER.findall(self.chars))


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class Reranker:
    """Pair features of one index's candidates, and a model's order over them (``model`` may
    be None for computing features alone, as the fitting script does)."""

    def __init__(self, index: KbIndex, model: RerankModel | None, depth: int | None = None
                 ) -> None:
        self.model = model
        self.depth = depth or (model.depth if model else 10)
        self._index = index
        self._raw: dict[int, _Raw] = {}
        if model is not None:  # the standardisation folded into the coefficients
            scale = np.asarray(model.scale)
            self._w = np.asarray(model.coef) / scale
            self._b = model.intercept - float(self._w @ np.asarray(model.mean))

    def _row_raw(self, row: int) -> _Raw:
        raw = self._raw.get(row)
        if raw is None:
            raw = self._raw[row] = _Raw(self._index.row_text[row])
        return raw

    @staticmethod
    def _overlap(bm: _Bm25, tokens: list[str], rows: np.ndarray) -> np.ndarray:
        """Per row: query cover, row cover, jaccard, the most specific query term the row
        lacks and the most specific row term the query lacks, all idf-weighted (a query term
        the KB has never seen counts as the rarest there is). Vectorised over the rows: one
        question's ten candidates cost a handful of numpy calls, not a Python loop per term."""
        vocab = bm.vec.vocabulary_
        known = np.asarray(sorted({vocab[t] for t in tokens if t in vocab}), dtype=np.int64)
        unseen = len({t for t in tokens if t not in vocab})
        q_idf = bm.idf[known].astype(np.float64)
        q_mass = float(q_idf.sum()) + unseen * bm.max_idf + 1e-6
        m, k = bm.present, len(rows)
        starts, lengths = m.indptr[rows], m.indptr[rows + 1] - m.indptr[rows]
        owner = np.repeat(np.arange(k), lengths)
        # positions of every candidate's terms in the matrix, without a Python loop
        take = np.arange(len(owner)) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        terms, weight = m.indices[take], m.data[take].astype(np.float64)  # data: each term's idf
        place = np.searchsorted(known, terms)
        shared = place < len(known)
        shared[shared] = known[place[shared]] == terms[shared]
        inter = np.bincount(owner, weights=weight * shared, minlength=k)
        extra = np.zeros(k)
        np.maximum.at(extra, owner[~shared], weight[~shared])
        if unseen:
            missing = np.full(k, bm.max_idf)
        elif len(known):
            has = np.zeros((k, len(known)), dtype=bool)
            has[owner[shared], place[shared]] = True
            missing = np.where(has, 0.0, q_idf).max(axis=1)
        else:
            missing = np.zeros(k)
        row_mass = bm.row_mass[rows]
        return np.column_stack((inter / q_mass, inter / row_mass,
                                inter / (q_mass + row_mass - inter),
                                missing / bm.max_idf, extra / bm.max_idf))

    def features(self, query: str, words: list[str], chars: list[str], hits: list[Hit]
                 ) -> np.ndarray:
        """One feature row per hit (``words`` / ``chars``: the query's tokens as indexed)."""
        k = len(hits)
        if not k:
            return np.zeros((0, len(FEATURES)))
        index = self._index
        rows = np.asarray([h.row_index for h in hits], dtype=np.int64)
        scores = np.asarray([h.score for h in hits])
        top = scores[0]
        # relative to the list's best only: absolute scores differ from KB to KB
        own = [scores / top if top > 0 else np.zeros(k), np.arange(k) / self.depth,
               self._overlap(index.words, words, rows), self._overlap(index.chars, chars, rows)]
        q = _Raw(query)
        raw = []
        for row in rows.tolist():
            c = self._row_raw(row)
            lq, lc = len(q.chars), len(c.chars)
            shared = len(q.charset & c.charset)
            raw.append((min(lq, lc) / max(lq, lc, 1), len(q.qgroups ^ c.qgroups),
                        (q.negations - c.negations) % 2,
                        bool(q.numbers or c.numbers) and q.numbers != c.numbers,
                        q.chars == c.chars,
                        shared / max(len(q.charset | c.charset), 1),
                        shared / max(len(q.charset), 1), shared / max(len(c.charset), 1),
                        _jaccard(q.bigrams, c.bigrams)))
        own.append(np.asarray(raw, dtype=np.float64))
        f = np.empty((k, len(FEATURES)))
        f[:, :len(_OWN)] = np.column_stack(own)
        v = f[:, _ACROSS_COLS] * _ACROSS_SIGN
        f[:, len(_OWN)::2] = v.max(axis=0) - v
        f[:, len(_OWN) + 1::2] = np.argsort(np.argsort(-v, axis=0, kind="stable"), axis=0,
                                            kind="stable") / self.depth
        return f

    def rerank(self, query: str, words: list[str], chars: list[str], hits: list[Hit]
               ) -> list[Hit]:
        """The hits in the model's order (ties keep the search's order).

        Two rules are not learned. Only question-like rows (questions, titles, aliases) are
        re-ordered, among the places they hold: the features compare a question with a
        question, and an answer's text is no paraphrase of one. And a row that is the question
        as typed (after normalisation) goes first: a citizen who types a KB question as stored
        must get that entry, and a learner can be led to unlearn exactly that
        (bench/fit_rerank.py's docstring)."""
        places = [i for i, h in enumerate(hits) if not h.body]
        if len(places) < 2 or self.model is None:
            return hits
        asked = [hits[i] for i in places]
        f = self.features(query, words, chars, asked)
        logits = f @ self._w + self._b
        same = f[:, _SAME]
        for hit, z in zip(asked, logits.tolist(), strict=True):
            hit.rerank = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        order = np.lexsort((np.arange(len(asked)), -logits, -same)).tolist()
        if not same[order[0]] and logits[order[0]] - logits[0] <= self.model.margin:
            return hits
        out = list(hits)
        for place, i in zip(places, order, strict=True):
            out[place] = asked[i]
        return out
