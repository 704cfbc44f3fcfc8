"""The KB search index: sparse BM25 over words and character n-grams, vectorised with scipy.

Each entry becomes several rows — its question or title, each alias (相似问法), and its body —
so a query is matched against every way the KB phrases the thing, and an entry scores as its
best row. A row's score combines, per representation (words, character n-grams):

- query coverage: BM25 normalised by the query's own idf mass, i.e. how much of what the citizen
  said the row contains (0–~1);
- row coverage: how much of the row's idf mass the query contains, which is what separates
  "居住证签注要什么材料" from "居住证签注要多久" when both share the matter's vocabulary.

All of it is sparse matrix algebra over the whole KB, in batches for evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

from ..kb.models import KbEntryBase
from ..kb.richtext import html_to_text
from .rerank import Reranker, RerankModel
from .text import Analyzer

# b = 0.3, not the textbook 0.75: rows are short questions and aliases, where a longer row is
# rarely "diluted"; weaker length normalisation ranked better on both the paraphrase sets and
# the dev set (bench/RESULTS.md)
K1, B = 1.2, 0.3
#: longest body text indexed per entry (the start of an answer says what it is about)
BODY_CHARS = 400


@dataclass(frozen=True, slots=True)
class Weights:
    """How row features combine. Defaults were set on public paraphrase data and the dev set."""

    word_q: float = 0.45
    char_q: float = 0.35
    word_d: float = 0.10
    char_d: float = 0.10
    body: float = 0.75  # a match in an answer body counts less than one in a question or alias


@dataclass(slots=True)
class Hit:
    entry_id: str
    score: float
    row: str
    index: int = -1
    matters: list[str] = field(default_factory=list)
    type: str = ""
    #: the row that matched is an answer's text, not a question, title or alias
    body: bool = False
    #: the matching row's number in the index
    row_index: int = -1
    #: the re-ranker's probability that this is the entry asked about (None: not re-ranked)
    rerank: float | None = None


def matter_positions(entries: Sequence[KbEntryBase]) -> dict[str, list[int]]:
    """Each matter's entries, by their position in ``entries``."""
    out: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        for m in entry.matters:
            out.setdefault(m, []).append(i)
    return out


def combine(*boosts: np.ndarray | None) -> np.ndarray | None:
    """Per-entry multipliers of several boosts together (None: no boost at all)."""
    given = [b for b in boosts if b is not None]
    if not given:
        return None
    out = given[0]
    for b in given[1:]:
        out = out * b
    return out


def _identity(tokens):  # CountVectorizer analyzer for pre-tokenised input
    return tokens


class Terms(NamedTuple):
    """A query in one representation: the terms the KB knows, and its idf mass."""

    #: known term ids, sorted and distinct
    ids: np.ndarray
    #: idf of the known terms plus the highest idf for each term the KB has never seen
    mass: float
    #: how many distinct terms the KB has never seen
    unseen: int


class _Bm25:
    """One representation (words or character n-grams) of all rows."""

    def __init__(self, docs: list[list[str]]) -> None:
        self.vec = CountVectorizer(analyzer=_identity, dtype=np.float32)
        tf = self.vec.fit_transform(docs).tocsr()
        n_docs = tf.shape[0]
        df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float32)
        self.idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        self.max_idf = float(np.log1p((n_docs + 0.5) / 0.5))
        lengths = np.asarray(tf.sum(axis=1)).ravel()
        avg = lengths.mean() if n_docs else 1.0
        norm = K1 * (1 - B + B * lengths / max(avg, 1e-9))
        rows = np.repeat(np.arange(n_docs), np.diff(tf.indptr))
        data = tf.data * (K1 + 1) / (tf.data + norm[rows])
        # rows × terms: saturated tf times idf
        self.bm25 = sparse.csr_matrix((data * self.idf[tf.indices], tf.indices, tf.indptr),
                                      shape=tf.shape)
        # rows × terms: idf where the term occurs, for "how much of the row was asked about"
        self.present = sparse.csr_matrix((self.idf[tf.indices], tf.indices, tf.indptr),
                                         shape=tf.shape)
        self.row_mass = np.asarray(self.present.sum(axis=1)).ravel() + 1e-6

    def terms(self, tokens: list[str]) -> Terms:
        """One query's terms as this representation knows them.

        A term the KB has never seen counts in the mass with the highest idf: it is the most
        specific thing the citizen said, and no row covers it — which is how "护照怎么办" scores
        low against a KB without passports, instead of matching on "怎么办" alone.
        """
        vocab = self.vec.vocabulary_
        ids = np.asarray(sorted({vocab[t] for t in tokens if t in vocab}), dtype=np.int64)
        unseen = len({t for t in tokens if t not in vocab})
        mass = float(self.idf[ids].sum(dtype=np.float32)) + unseen * self.max_idf + 1e-6
        return Terms(ids, mass, unseen)

    def matrix(self, queries: Sequence[Terms]) -> sparse.csr_matrix:
        """Binary queries × terms matrix."""
        indptr = np.concatenate(([0], np.cumsum([len(t.ids) for t in queries])))
        indices = np.concatenate([t.ids for t in queries]) if queries else np.zeros(0, np.int64)
        return sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                                 shape=(len(queries), len(self.idf)))


def entry_rows(entry: KbEntryBase) -> list[tuple[str, bool]]:
    """(text, is_body) rows an entry is searched by."""
    rows: list[tuple[str, bool]] = [(entry.display_title, False)]
    rows.extend((a, False) for a in getattr(entry, "aliases", []) or [])
    # what people ask of help entries is "what is the number / where is it": say so in a
    # question-like row, so "税务局热线多少" meets the 12366 entry
    if entry.type == "hotline":
        rows.append((f"{entry.unit_name}热线电话号码是多少 {entry.phone}", False))
        rows.append((f"{entry.phone} {entry.description or ''}", True))
    elif entry.type == "department":
        rows.append((f"{entry.name}联系电话 地址在哪里", False))
        rows.append((f"{entry.name} {entry.description or ''}", True))
    for name in entry.search_fields[1:]:
        value = getattr(entry, name, None)
        if value:
            rows.append((html_to_text(str(value))[:BODY_CHARS], True))
    return rows


class KbIndex:
    def __init__(self, entries: Sequence[KbEntryBase], analyzer: Analyzer,
                 weights: Weights | None = None, rerank: RerankModel | None = None) -> None:
        self.analyzer = analyzer
        self.weights = weights or Weights()
        self.entries = list(entries)
        self.ids = [e.id for e in self.entries]
        self.entry_matters = [e.matters for e in self.entries]  # a property that copies a list
        self.position = {eid: i for i, eid in enumerate(self.ids)}
        #: each matter's entries, by position (a follow-up's boost reads them on every message)
        self.matter_positions = matter_positions(self.entries)
        texts, owners, body, title_row = [], [], [], []
        for i, entry in enumerate(self.entries):
            title_row.append(len(texts))  # entry_rows gives the title first
            for text, is_body in entry_rows(entry):
                texts.append(text)
                owners.append(i)
                body.append(is_body)
        self.row_text = texts
        self.row_entry = np.asarray(owners, dtype=np.int64)
        self.row_body = np.asarray(body, dtype=bool)
        self.row_weight = np.where(self.row_body, self.weights.body, 1.0)
        expanded = [analyzer.expand(t) for t in texts]
        # a sentinel row keeps the vocabulary non-empty for an empty KB; it owns no entry
        word_rows = [analyzer.words(t, expanded=True) for t in expanded] or [["\x00"]]
        char_rows = [analyzer.char_ngrams(t, expanded=True) for t in expanded] or [["\x00"]]
        self.words = _Bm25(word_rows)
        self.chars = _Bm25(char_rows)
        self._stack()
        # how many matters each word is used in: "材料" is everywhere, "签注" belongs to one;
        # and the words of each entry's own questions, titles and aliases
        spread: dict[str, set[str]] = {}
        self.entry_words: list[set[str]] = [set() for _ in self.entries]
        for tokens, owner, is_body in zip(word_rows, owners, body, strict=False):
            if is_body:  # answers mention neighbouring matters; titles and aliases do not
                continue
            self.entry_words[owner].update(tokens)
            for m in self.entries[owner].matters:
                for t in tokens:
                    spread.setdefault(t, set()).add(m)
        self.word_spread = {t: len(ms) for t, ms in spread.items()}
        # and the words each matter is called by: its guides' and terms' titles ("教师资格
        # 认定", "无犯罪记录证明"), not what its FAQs happen to mention (体检, 户口本)
        self.matter_words: dict[str, set[str]] = {}
        for entry, row in zip(self.entries, title_row, strict=True):
            if entry.type in ("guide", "term"):
                for m in entry.matters:
                    self.matter_words.setdefault(m, set()).update(word_rows[row])
        self.reranker = Reranker(self, rerank) if rerank is not None else None

    def __len__(self) -> int:
        return len(self.entries)

    def row_scores(self, queries: Sequence[str]) -> sparse.csr_matrix:
        """queries × rows combined scores (sparse: rows sharing nothing with a query are 0)."""
        return self._row_scores(queries)[0]

    def _stack(self) -> None:
        """All four features of a row in one terms × rows matrix.

        A row's score is Σ weight × feature over (words, characters) × (query coverage, row
        coverage). Query coverage divides by the query's idf mass and row coverage by the
        row's, so with the row's side (its mass, the feature's weight, the body discount)
        folded in here, a query's score for every row is one product of its term vector
        [words / mass, words, chars / mass, chars] with this matrix: one sparse product per
        batch, or one weighted bincount per question, instead of four of each plus sums."""
        w, words, chars = self.weights, self.words, self.chars
        weight = np.ones(words.bm25.shape[0])  # an empty KB has one sentinel row
        weight[:len(self.row_weight)] = self.row_weight
        per_row = sparse.diags(weight)
        blocks = [per_row @ (w.word_q * words.bm25),
                  per_row @ sparse.diags(w.word_d / words.row_mass) @ words.present,
                  per_row @ (w.char_q * chars.bm25),
                  per_row @ sparse.diags(w.char_d / chars.row_mass) @ chars.present]
        self._offsets = np.cumsum([0] + [b.shape[1] for b in blocks])
        self._terms_rows = sparse.hstack(blocks).T.tocsr().astype(np.float32)

    def query_terms(self, query: str) -> tuple[Terms, Terms]:
        """A query's (word, character) terms, analysed as the rows were."""
        a = self.analyzer
        expanded = a.expand(query)
        return (self.words.terms(a.words(expanded, expanded=True)),
                self.chars.terms(a.char_ngrams(expanded, expanded=True)))

    def _row_scores(self, queries: Sequence[str]
                    ) -> tuple[sparse.csr_matrix, list[Terms], list[Terms]]:
        words, chars = zip(*map(self.query_terms, queries), strict=True) if queries else ((), ())
        qw, qc = self.words.matrix(words), self.chars.matrix(chars)
        mw = np.asarray([t.mass for t in words])
        mc = np.asarray([t.mass for t in chars])
        q = sparse.hstack([sparse.diags(1.0 / mw) @ qw, qw, sparse.diags(1.0 / mc) @ qc, qc],
                          format="csr", dtype=np.float32)
        return (q @ self._terms_rows).tocsr(), list(words), list(chars)

    def search_many(self, queries: Sequence[str], top: int = 5,
                    boost: Sequence[np.ndarray | None] | None = None) -> list[list[Hit]]:
        if not self.entries:
            return [[] for _ in queries]
        scores, words, chars = self._row_scores(queries)
        keep = top if self.reranker is None else max(top, self.reranker.depth)
        out = []
        for qi in range(scores.shape[0]):
            start, end = scores.indptr[qi], scores.indptr[qi + 1]
            rows, vals = scores.indices[start:end], scores.data[start:end]
            if boost is not None and boost[qi] is not None:
                vals = vals * boost[qi][self.row_entry[rows]]
            out.append(self._best_entries(rows, vals, keep))
        if self.reranker is not None:  # the whole batch at once
            out = [hs[:top] for hs in self.reranker.rerank_many(queries, words, chars, out)]
        return out

    def search(self, query: str, top: int = 5, boost: np.ndarray | None = None) -> list[Hit]:
        """One question (the bot's path): its terms' postings summed into a dense vector by
        one bincount, no sparse product; ranks exactly as ``search_many`` does (tested)."""
        if not self.entries:
            return []
        words, chars = self.query_terms(query)
        (kw, mw, _), (kc, mc, _) = words, chars
        o = self._offsets
        terms = np.concatenate((kw + o[0], kw + o[1], kc + o[2], kc + o[3]))
        scale = np.concatenate((np.full(len(kw), 1.0 / mw), np.ones(len(kw)),
                                np.full(len(kc), 1.0 / mc), np.ones(len(kc))))
        m = self._terms_rows
        starts, lengths = m.indptr[terms], m.indptr[terms + 1] - m.indptr[terms]
        # every posting of every query term, gathered without a Python loop
        take = np.arange(lengths.sum()) + np.repeat(starts - np.cumsum(lengths) + lengths,
                                                    lengths)
        total = np.bincount(m.indices[take], weights=m.data[take] * np.repeat(scale, lengths),
                            minlength=m.shape[1])
        rows = np.flatnonzero(total)
        vals = total[rows]
        if boost is not None:
            vals = vals * boost[self.row_entry[rows]]
        return self._ranked(query, words, chars, rows, vals, top)

    def _ranked(self, query: str, words: Terms, chars: Terms, rows: np.ndarray,
                vals: np.ndarray, top: int) -> list[Hit]:
        """The best ``top`` entries: the search's best ``depth``, re-ranked when there is a
        re-ranker (it may lift the 6th to the top, so it sees more than are returned)."""
        if self.reranker is None:
            return self._best_entries(rows, vals, top)
        hits = self._best_entries(rows, vals, max(top, self.reranker.depth))
        return self.reranker.rerank(query, words, chars, hits)[:top]

    def names_a_matter(self, query: str, generic_spread: int = 3) -> bool:
        """Whether the query says what it is about (a word specific to few matters, or a word
        the KB does not know) rather than only asking "what materials / how long"."""
        for token in self.analyzer.words(query):
            # a word no matter's questions use (unknown, or only in answers and help entries)
            # is specific too: "护照" after a 出生 question is a new topic, not a follow-up
            spread = self.word_spread.get(token)
            if spread is None or spread < generic_spread:
                return True
        return False

    def anchored(self, query: str, hit: Hit, specific: int = 2) -> bool:
        """Whether the query names the hit's matter: a word of the title of one of the
        matter's guides or terms that at most ``specific`` matters use ("无犯罪记录证明", not
        "补办"). Words the entry's FAQs merely mention do not count: "驾照快到期了 换证体检去
        哪里做" shares 体检 with 教师资格认定's FAQ and is still about a driving licence."""
        words = self.analyzer.words(query)
        return any(t in self.matter_words.get(m, ()) and
                   self.word_spread.get(t, specific + 1) <= specific
                   for m in hit.matters for t in words)

    def answer_only_words(self, query: str) -> list[str]:
        """Words of the query that the KB uses only inside answers, never in a question, title
        or alias: "护照" in "护照怎么办理", which one answer mentions in passing. A match on
        such a word says the KB mentions the thing, not that it answers questions about it."""
        vocab = self.words.vec.vocabulary_
        return [t for t in dict.fromkeys(self.analyzer.words(query))
                if len(t) > 1 and t in vocab and t not in self.word_spread]

    def boost_for(self, matter: str, factor: float) -> np.ndarray:
        """Per-entry multipliers favouring the entries of one matter."""
        b = np.ones(len(self.entries), dtype=np.float32)
        b[self.matter_positions.get(matter, [])] = factor
        return b

    def _best_entries(self, rows: np.ndarray, vals: np.ndarray, top: int) -> list[Hit]:
        if not len(rows):
            return []
        # Character unigrams give most rows some score; only the best few can win, so take
        # them with a partial sort. Ties are broken by row position, so a query ranks the same
        # alone or in a batch (the sparse product does not order its columns).
        keep = min(len(rows), max(top * 16, 64))
        if keep < len(rows):
            part = np.argpartition(-vals, keep - 1)[:keep]
            rows, vals = rows[part], vals[part]
        order = np.lexsort((rows, -vals))
        hits: list[Hit] = []
        seen: set[int] = set()
        for k in order:
            entry = int(self.row_entry[rows[k]])
            if entry in seen:
                continue
            seen.add(entry)
            e = self.entries[entry]
            row = int(rows[k])
            hits.append(Hit(e.id, float(vals[k]), self.row_text[row], entry,
                            list(self.entry_matters[entry]), e.type, bool(self.row_body[row]),
                            row))
            if len(hits) == top:
                break
        return hits
