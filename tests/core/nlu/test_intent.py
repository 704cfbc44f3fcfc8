"""The intent model: one message at a time gives the fitted pipeline's own probabilities, and
out-of-scope cues are found as the intents file says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.evaluation import load_cases
from tests.core.dialog.test_bot import seed_snapshot

DATA = Path(__file__).resolve().parents[2] / "data"


def test_one_message_gets_the_pipelines_probabilities():
    intents = seed_snapshot().intents
    texts = [c.question for c in load_cases(DATA / "devset.tsv")]
    texts += ["", "？？？", "hello", "转人工", "谢谢小申"]
    reference = intents.pipeline.predict_proba(texts)
    one = np.array([intents._probabilities(t) for t in texts])
    assert np.allclose(one, reference, atol=1e-9)
    for one, many in zip([intents.classify(t) for t in texts], intents.classify_many(texts),
                         strict=True):
        assert (one.intent, one.category) == (many.intent, many.category)
        assert abs(one.confidence - many.confidence) < 1e-9


def test_cues_name_their_category_and_skip_look_alikes():
    intents = seed_snapshot().intents
    assert intents.cue("我要去法院起诉他").category == "lawsuit"
    assert intents.cue("这个窗口办事员态度很差 我要投诉").category == "complaint"
    assert intents.cue("发现有人虚开发票 想举报").category == "report"
    assert intents.cue("对处罚决定不服 想申请行政复议").category == "legal"
    assert intents.cue("开发商拖欠我们装修款 你们能帮忙追回吗").category == "legal"
    assert intents.cue("楼下饭店油烟扰民 请政府出面处理").category == "complaint"
    assert intents.cue("网上办证被骗了三百块").category == "report"
    # 核查处理 (a registry checking its files) is not 查处 (punishing someone)
    assert intents.cue("档案缺页可以申请核查处理吗") is None
    # 告知承诺 is a way of applying; 投诉电话 asks for a number the KB has
    assert intents.cue("可以用告知承诺制办吗") is None
    assert intents.cue("消费投诉电话是多少") is None


def test_the_same_kb_trains_the_same_model():
    """Every process trains its own model: two of them must answer a citizen alike (the
    solver visits samples in random order; it was unseeded and flipped dev answers)."""
    from core.nlu.intent import SklearnIntentClassifier

    snap = seed_snapshot()
    questions = [q for e in snap.entries.values() if e.type in ("faq", "guide")
                 for q in (e.display_title, *getattr(e, "aliases", []))]
    texts = [c.question for c in load_cases(DATA / "blind-c.tsv")]
    again = SklearnIntentClassifier(snap.index.analyzer, kb_questions=questions)
    assert np.array_equal(again.pipeline.predict_proba(texts),
                          snap.intents.pipeline.predict_proba(texts))
