"""The search index: one question at a time (the bot's path) ranks exactly as a batch does
(`bangban eval --mode retrieval`, the benchmarks), on the questions citizens type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.evaluation import load_cases
from core.knowledge import search_index
from core.nlu.index import KbIndex
from core.nlu.text import Analyzer
from tests.core.dialog.test_bot import seed_entries, seed_snapshot

DATA = Path(__file__).resolve().parents[2] / "data"


def questions() -> list[str]:
    return [c.question for name in ("devset.tsv", "blind-c.tsv") for c in load_cases(DATA / name)]


def same(a, b) -> bool:
    return ([h.entry_id for h in a] == [h.entry_id for h in b]
            and [h.row for h in a] == [h.row for h in b]
            and np.allclose([h.score for h in a], [h.score for h in b], rtol=1e-5, atol=1e-6))


def test_one_question_ranks_as_in_a_batch():
    index = seed_snapshot().index
    qs = questions()
    batch = index.search_many(qs, top=5)
    differ = [q for q, b in zip(qs, batch, strict=True) if not same(index.search(q, top=5), b)]
    assert not differ, differ[:5]
    # and the bot's answers come from somewhere: most questions find candidates
    assert sum(1 for b in batch if b) > 0.95 * len(qs)


def test_a_boosted_follow_up_ranks_as_in_a_batch():
    index = seed_snapshot().index
    boost = index.boost_for("M03", 1.35)
    for q in ["那要带什么材料", "多久能办好", "可以网上办吗", "要本人去吗"]:
        one = index.search(f"居住证签注 {q}", top=5, boost=boost)
        assert same(one, index.search_many([f"居住证签注 {q}"], top=5, boost=[boost])[0]), q
        assert one[0].matters == ["M03"], (q, one[0])


def test_a_question_sharing_nothing_with_the_kb_finds_nothing():
    index = search_index(list(seed_entries()))
    assert index.search("龘靐") == [] == index.search_many(["龘靐"])[0]
    assert index.search("") == []


def test_an_empty_kb_finds_nothing():
    index = KbIndex([], Analyzer(synonyms={}))
    assert index.search("居住证签注") == []


@pytest.mark.parametrize("question", ["护照怎么办理", "港澳通行证续签"])
def test_words_the_kb_uses_only_in_answers_are_told_apart(question):
    index = seed_snapshot().index
    assert index.answer_only_words(question), "these words appear only in answer text"
    assert index.answer_only_words("居住证签注要什么材料") == []
