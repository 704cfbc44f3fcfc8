"""One-character homophone typos of the domain's words are understood; right words, and
look-alikes that differ in more than one character, are left alone."""

from __future__ import annotations

import pytest

from core.dialog.bot import Context
from core.nlu.homophones import Homophones


def test_a_word_mistyped_by_sound_is_found_and_a_right_one_is_not_corrected():
    h = Homophones(["失业登记", "失业", "事业", "登记", "发票"])
    assert h.corrections("失业登己在哪里办") == ["失业登记", "登记"]
    assert h.corrections("怎么领发漂") == ["发票"]
    # 失业 is itself a word: not a typo of 事业, though it sounds the same
    assert h.corrections("失业了怎么办") == []
    # 等级 differs from 登记 in both characters: another word, not a typo
    assert h.corrections("等级考试") == []
    # only Chinese characters are compared; an empty vocabulary finds nothing
    assert h.corrections("fa piao 发漂") == ["发票"]
    assert Homophones([]).corrections("失业登己") == []


@pytest.mark.parametrize(("question", "matter"), [
    ("失叶登记在随申办上怎么弄", "M10"),      # 失业登记
    ("签住居住证要多久", "M03"),              # 签注, not 居住证新办
])
def test_the_bot_answers_a_question_with_a_homophone_typo(bot, question, matter):
    reply = bot.respond(question, Context())
    assert reply.action in ("answer", "clarify"), (reply.action, reply.text)
    assert matter in reply.meta.matters, reply.meta
