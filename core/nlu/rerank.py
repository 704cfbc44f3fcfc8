"""The re-ranker: a second look at the search's best few candidates, pair by pair.

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

Which KBs get it is ``core.knowledge.rerank_model_for``'s decision (setting ``kb.rerank``): it
helps a plain FAQ list and made a KB with 相似问法 worse (bench/RESULTS.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    from .index import Hit, KbIndex, Terms, _Bm25

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
# one search per group and one count for all negations: every question and row is profiled
_GROUPS = tuple(re.compile("|".join(map(re.escape, g))) for g in QUESTION_GROUPS)
_NEGATION = re.compile("[" + "".join(NEGATIONS) + "]")

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
    #: a list whose second candidate scores below this fraction of the first is left as the
    #: search ordered it, without computing features: on the public sets the model never
    #: re-orders such a list (bench/RESULTS.md), and it saves a fifth of the re-ranker's time
    skip_below: float = Field(0.6, ge=0.0, le=1.0)
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
        self.qgroups = frozenset(i for i, g in enumerate(_GROUPS) if g.search(self.chars))
        self.negations = len(_NEGATION.findall(self.chars))
        self.numbers = frozenset(_NUMBER.findall(self.chars))


class Reranker:
    """Pair features of one index's candidates, and a model's order over them (``model`` may
    be None for computing features alone, as the fitting script does).

    Everything works on a batch of questions at once (``bangban eval --mode retrieval`` ranks
    512 at a time): the features of all (question, candidate) pairs are a few dozen numpy calls
    per batch, not per question. One question is a batch of one."""

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
    def _overlap(bm: _Bm25, terms: Sequence[Terms], pair_query: np.ndarray,
                 pair_row: np.ndarray) -> np.ndarray:
        """Per (question, row) pair: query cover, row cover, jaccard, the most specific query
        term the row lacks and the most specific row term the query lacks, all idf-weighted
        (a query term the KB has never seen counts as the rarest there is)."""
        n, vocab_size, max_idf = len(pair_row), bm.idf.shape[0], bm.max_idf
        known = [t.ids for t in terms]
        unseen = [t.unseen > 0 for t in terms]
        masses = [t.mass for t in terms]
        n_known = np.asarray([len(k) for k in known], dtype=np.int64)
        q_start = np.concatenate(([0], np.cumsum(n_known)[:-1]))
        # every question's terms as one sorted key array: question number × vocabulary + term
        q_keys = np.concatenate([k + i * vocab_size for i, k in enumerate(known)] or [[]]
                                ).astype(np.int64)
        q_idf = bm.idf[q_keys % vocab_size].astype(np.float64) if len(q_keys) else np.zeros(0)
        m = bm.present
        starts, lengths = m.indptr[pair_row], m.indptr[pair_row + 1] - m.indptr[pair_row]
        owner = np.repeat(np.arange(n), lengths)
        take = np.arange(len(owner)) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        terms, weight = m.indices[take], m.data[take].astype(np.float64)  # data: each term's idf
        keys = pair_query[owner] * vocab_size + terms
        at = np.searchsorted(q_keys, keys)
        shared = at < len(q_keys)
        shared[shared] = q_keys[at[shared]] == keys[shared]
        inter = np.bincount(owner, weights=weight * shared, minlength=n)
        extra = np.zeros(n)
        np.maximum.at(extra, owner[~shared], weight[~shared])
        # the query terms each row lacks: one slot per (pair, query term)
        per_pair = n_known[pair_query]
        slot_start = np.concatenate(([0], np.cumsum(per_pair)[:-1]))
        has = np.zeros(int(per_pair.sum()), dtype=bool)
        has[slot_start[owner[shared]] + at[shared] - q_start[pair_query[owner[shared]]]] = True
        slot_q = np.repeat(pair_query, per_pair)
        slot_idf = q_idf[np.arange(len(has)) - np.repeat(slot_start, per_pair)
                         + q_start[slot_q]] if len(has) else np.zeros(0)
        missing = np.zeros(n)
        some = np.flatnonzero(per_pair)
        if len(some):
            missing[some] = np.maximum.reduceat(np.where(has, 0.0, slot_idf), slot_start[some])
        missing[np.asarray(unseen, dtype=bool)[pair_query]] = max_idf
        q_mass = np.asarray(masses)[pair_query]
        row_mass = bm.row_mass[pair_row]
        return np.column_stack((inter / q_mass, inter / row_mass,
                                inter / (q_mass + row_mass - inter),
                                missing / max_idf, extra / max_idf))

    def features_many(self, queries: Sequence[str], words: Sequence[Terms],
                      chars: Sequence[Terms], hits: Sequence[list[Hit]]) -> np.ndarray:
        """One feature row per (question, hit), the questions' lists one after another
        (``words`` / ``chars``: each question's terms, as the search computed them)."""
        sizes = np.asarray([len(h) for h in hits], dtype=np.int64)
        n = int(sizes.sum())
        if not n:
            return np.zeros((0, len(FEATURES)))
        index = self._index
        pair_query = np.repeat(np.arange(len(hits)), sizes)
        list_start = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        position = np.arange(n) - list_start[pair_query]
        flat = [h for hs in hits for h in hs]
        pair_row = np.asarray([h.row_index for h in flat], dtype=np.int64)
        scores = np.asarray([h.score for h in flat])
        top = scores[list_start[pair_query]]
        f = np.empty((n, len(FEATURES)))
        # relative to the list's best only: absolute scores differ from KB to KB
        f[:, 0] = np.divide(scores, top, out=np.zeros(n), where=top > 0)
        f[:, 1] = position / self.depth
        f[:, 2:7] = self._overlap(index.words, words, pair_query, pair_row)
        f[:, 7:12] = self._overlap(index.chars, chars, pair_query, pair_row)
        asked = [_Raw(q) for q in queries]
        raw = []
        for qi, row in zip(pair_query.tolist(), pair_row.tolist(), strict=True):
            q, c = asked[qi], self._row_raw(row)
            lq, lc = len(q.chars), len(c.chars)
            nq, nc = len(q.charset), len(c.charset)
            shared = len(q.charset & c.charset)
            bq, bc = len(q.bigrams), len(c.bigrams)
            both = len(q.bigrams & c.bigrams)
            raw.append((min(lq, lc) / max(lq, lc, 1), len(q.qgroups ^ c.qgroups),
                        (q.negations - c.negations) % 2,
                        bool(q.numbers or c.numbers) and q.numbers != c.numbers,
                        q.chars == c.chars,
                        shared / max(nq + nc - shared, 1), shared / max(nq, 1),
                        shared / max(nc, 1),
                        both / (bq + bc - both) if bq or bc else 1.0))
        f[:, 12:len(_OWN)] = np.asarray(raw, dtype=np.float64)
        # against the list: how far behind its best, and the place in it by each feature
        v = f[:, _ACROSS_COLS] * _ACROSS_SIGN
        nonempty = list_start[sizes > 0]
        best = np.maximum.reduceat(v, nonempty, axis=0)
        f[:, len(_OWN)::2] = best[np.searchsorted(nonempty, list_start[pair_query])] - v
        for c in range(v.shape[1]):
            order = np.lexsort((position, -v[:, c], pair_query))
            place = np.empty(n)
            place[order] = np.arange(n) - list_start[pair_query[order]]
            f[:, len(_OWN) + 1 + 2 * c] = place / self.depth
        return f

    def features(self, query: str, words: Terms, chars: Terms, hits: list[Hit]) -> np.ndarray:
        return self.features_many([query], [words], [chars], [hits])

    def rerank_many(self, queries: Sequence[str], words: Sequence[Terms],
                    chars: Sequence[Terms], hits: Sequence[list[Hit]]) -> list[list[Hit]]:
        """Each question's hits in the model's order (ties keep the search's order).

        Two rules are not learned. Only question-like rows (questions, titles, aliases) are
        re-ordered, among the places they hold: the features compare a question with a
        question, and an answer's text is no paraphrase of one. And a row that is the question
        as typed (after normalisation) goes first: a citizen who types a KB question as stored
        must get that entry, and a learner can be led to unlearn exactly that
        (bench/fit_rerank.py's docstring)."""
        if self.model is None:
            return list(hits)
        places = [[i for i, h in enumerate(hs) if not h.body] for hs in hits]
        skip = self.model.skip_below
        asked = [[hs[i] for i in p]
                 if len(p) > 1 and hs[p[1]].score >= skip * hs[p[0]].score else []
                 for hs, p in zip(hits, places, strict=True)]
        f = self.features_many(queries, words, chars, asked)
        logits = f @ self._w + self._b
        flat = [h for a in asked for h in a]
        for hit, p in zip(flat, (1.0 / (1.0 + np.exp(-np.clip(logits, -500, 500)))).tolist(),
                          strict=True):
            hit.rerank = p
        sizes = np.asarray([len(a) for a in asked], dtype=np.int64)
        which = np.repeat(np.arange(len(asked)), sizes)
        # one sort for the batch: by question, then the question as typed first, then the model
        order = np.lexsort((np.arange(len(which)), -logits, -f[:, _SAME], which)).tolist()
        out, start, margin = [], 0, self.model.margin
        for hs, p, a in zip(hits, places, asked, strict=True):
            end = start + len(a)
            best = order[start] if a else -1
            if not a or (not f[best, _SAME] and logits[best] - logits[start] <= margin):
                out.append(hs)
            else:
                ranked = list(hs)
                for place, i in zip(p, order[start:end], strict=True):
                    ranked[place] = flat[i]
                out.append(ranked)
            start = end
        return out

    def rerank(self, query: str, words: Terms, chars: Terms, hits: list[Hit]) -> list[Hit]:
        return self.rerank_many([query], [words], [chars], [hits])[0]
