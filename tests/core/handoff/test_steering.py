"""Which citizen lines only steer the conversation (left out of the 派单 draft and never offered
as the question of 纳入知识库)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from core.handoff.steering import flags, steering


@pytest.mark.parametrize("line", [
    "转人工", "我要转人工！", "人工客服在吗？", "在吗", "你好", "谢谢您", "2", "第二个", "３",
    "取消排队", "不用了", "非常满意", "未解决", "不确定 / 全市通办", "  ", ""])
def test_typed_lines_that_only_steer(line):
    assert steering(line)


@pytest.mark.parametrize("line", [
    "无犯罪记录证明怎么开？", "你好，无犯罪记录证明怎么开", "13812345678", "市公安局",
    "我是本人，户籍在徐汇区 <b>急</b>", "人工智能岗位的职称怎么评"])
def test_lines_that_say_what_the_citizen_needs(line):
    assert not steering(line)


@pytest.mark.parametrize("payload", [
    "handoff:unit:police", "handoff:district:310104", "handoff:cancel", "rate:5",
    "rate:resolved:yes", "resolved:no", "human"])
def test_a_tapped_menu_button_steers_whatever_its_label(payload):
    assert steering("市公安局", payload)


def test_a_tapped_suggested_question_is_a_question():
    assert not steering("居住证签注需要什么材料？", "pick:M03-faq-02")


def test_traditional_characters_steer_as_simplified_ones():
    assert steering("轉人工") and steering("人工客服在嗎？")
    assert not steering("居住證簽注提前多久可以辦？")


@dataclass
class Stored:
    sender: str
    text: str
    action: str | None = None
    body: dict[str, Any] = field(default_factory=dict)


def test_a_line_the_bot_handed_off_only_steers_however_it_was_worded():
    lines = [Stored("citizen", "居住證簽注提前多久可以辦？"), Stored("bot", "…", "answer"),
             Stored("citizen", "機器人別回了，叫人來"), Stored("bot", "好的，正在为您转接", "handoff"),
             Stored("citizen", "不要机器人"), Stored("bot", "…", "handoff"),
             Stored("agent", "您好，请问有什么可以帮您？"),
             Stored("citizen", "2")]
    assert flags(lines) == [False, False, True, False, True, False, False, True]
