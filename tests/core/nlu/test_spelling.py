"""Questions typed in pinyin are read as the Chinese they spell (core/nlu/spelling.py)."""

from __future__ import annotations

import jieba
import pytest

from core.dialog.bot import Context
from core.nlu.spelling import Spelling

CORPUS = ["居住证怎么签注", "居住证签注要什么材料", "我要转人工", "发票领用", "专用发票", "专用发票代开"]


@pytest.fixture(scope="module")
def spelling() -> Spelling:
    return Spelling(CORPUS, jieba.lcut)


@pytest.mark.parametrize(("typed", "spelt"), [
    ("juzhuzheng zenme qianzhu", "居住证怎么签注"),
    ("JuZhuZheng QianZhu CaiLiao", "居住证签注材料"),  # capitals and no spaces between words
    ("fapiao lingyong", "发票领用"),
])
def test_pinyin_of_known_words_is_spelt_in_chinese(spelling, typed, spelt):
    assert spelling.hanzi(typed) == spelt


@pytest.mark.parametrize("typed", [
    "hello",  # English: "he" + "llo" spells nothing
    "ukey",
    "ok",  # too short to tell
    "居住证 qianzhu",  # Chinese already there: not a pinyin message
    "juzhuzheng 2025",  # digits
    "juzhuzheng xyz",  # one piece spells nothing: left as typed
    "fapiao " * 50,  # longer than any question typed by sound
])
def test_what_is_not_all_pinyin_of_known_words_is_left_alone(spelling, typed):
    assert spelling.hanzi(typed) is None


def test_the_most_frequent_of_two_words_that_sound_alike_is_taken(spelling):
    # 专 (in 专用 twice) is more frequent than 转 (once, in 转人工)
    assert spelling.hanzi("zhuan") == "专"
    # spaces may split a word: its syllables still spell it
    assert spelling.hanzi("qian zhu cai liao") == "签注材料"


@pytest.mark.parametrize(("typed", "action", "matter"), [
    ("zhuan rengong", "handoff", None),
    ("zhuanrengong", "handoff", None),
    ("juzhuzheng qianzhu yao shenme cailiao", "answer", "M03"),
    ("hello", "greet", None),
])
def test_the_bot_reads_a_question_typed_in_pinyin(bot, typed, action, matter):
    reply = bot.respond(typed, Context())
    assert reply.action == action, (reply.action, reply.meta.entry_id, reply.text)
    if matter:
        assert matter in reply.meta.matters
