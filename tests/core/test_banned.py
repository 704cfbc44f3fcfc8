"""core.banned: 禁语 in agents' messages, through the evasions agents really type."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.banned import BannedPhrases, skeleton
from core.config import load_settings
from core.errors import ConfigError
from core.paths import config_dir


@pytest.fixture(scope="module")
def shipped() -> BannedPhrases:
    return BannedPhrases.load(None)


def test_shipped_list_is_realistic_and_says_it_is_an_example(shipped):
    text = (config_dir() / "banned_phrases.yaml").read_text(encoding="utf-8")
    assert "NOT AN OFFICIAL LIST" in text
    raw = yaml.safe_load(text)
    assert {"推诿塞责", "态度生硬", "不当承诺", "泄露隐私"} <= set(raw["categories"])
    assert 15 <= len(shipped) <= 40
    assert all(cat["reason"] for cat in raw["categories"].values())
    # the setting that points at the file defaults to the shipped one
    assert load_settings(environ={}).handoff.banned_phrases_file is None


@pytest.mark.parametrize("text, phrase, matched", [
    ("这个问题不归我们管，您问问别人吧", "不归我们管", "不归我们管"),
    ("这个 不 归 我 们 管", "不归我们管", "不 归 我 们 管"),
    ("这事不归我们·管。", "不归我们管", "不归我们·管"),
    ("不、归、我、们、管", "不归我们管", "不、归、我、们、管"),
    ("不\u200b归我们\u200d管", "不归我们管", "不\u200b归我们\u200d管"),     # zero-width
    ("有事加我ＶＸ", "加我vx", "加我ＶＸ"),                                  # full-width
    ("加我 V x 细聊", "加我vx", "加我 V x"),                                 # spaces and case
    ("你 听 不 懂 吗？？", "听不懂吗", "听 不 懂 吗"),
    ("放心，肯定 —— 没问题", "肯定没问题", "肯定 —— 没问题"),
    ("举报人是隔壁的", "举报人是", "举报人是"),
    ("急什么！", "急什么", "急什么"),
])
def test_finds_phrases_through_evasions_with_the_original_span(shipped, text, phrase, matched):
    found = shipped.find(text)
    assert found is not None, text
    assert found.phrase == phrase
    assert text[found.start:found.end] == found.matched == matched
    assert found.category and found.reason


@pytest.mark.parametrize("text", [
    "您好，请问有什么可以帮您？",
    "您着急什么时候要？我们尽量帮您加急处理。",                     # 急什么 inside 着急什么时候
    "我们不能保证肯定没问题，最终以审核结果为准。",                   # a proper non-promise
    "请确认举报人是否为您本人。",
    "请核对一下他的身份证号是否在有效期内。",
    "居住证签注请携带身份证和居住证原件，到社区事务受理服务中心办理。",
    "这个事项由区人社局负责，电话 021-12345678，我帮您转过去。",
    "材料打包过来就可以，我这边帮您看一下。",
])
def test_no_match_in_proper_replies_and_allowed_contexts(shipped, text):
    assert shipped.find(text) is None, shipped.find(text)


def test_an_allowed_context_does_not_hide_the_same_phrase_elsewhere(shipped):
    text = "不能保证肯定没问题。不过你放心，肯定没问题！"
    found = shipped.find_all(text)
    assert [m.phrase for m in found] == ["肯定没问题"]
    assert found[0].start == text.rindex("肯定没问题")


def test_find_all_in_order(shipped):
    text = "说了多少遍了，这事别找我，有意见去投诉。"
    assert [m.phrase for m in shipped.find_all(text)] == ["说了多少遍了", "这事别找我", "有意见去投诉"]
    assert shipped.find_all("谢谢您的耐心等待") == []


def test_skeleton_keeps_origins():
    skel, origin = skeleton("Ａ b·c")
    assert skel == "abc" and origin == [0, 2, 4]


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "banned.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True),
                    encoding="utf-8")
    return path


def test_own_file_with_plain_and_detailed_phrases(tmp_path):
    path = _write(tmp_path, {"categories": {"服务态度": {"reason": "请文明用语", "phrases": [
        "不知道", {"phrase": "没空", "allow": ["没空格"]}]}}})
    banned = BannedPhrases.load(path)
    assert len(banned) == 2
    assert banned.find("我 不 知 道").phrase == "不知道"
    assert banned.find("请注意密码中没空格") is None
    assert banned.find("我没空").category == "服务态度"


@pytest.mark.parametrize("data, where, what", [
    ({"categories": {"推诿": {"phrases": ["不归我管"]}}}, "categories.推诿.reason", "required"),
    ({"categories": {"推诿": {"reason": "r", "phrases": []}}}, "categories.推诿.phrases",
     "at least 1"),
    ({"categories": {"推诿": {"reason": "r", "phrases": ["不归我管", {"phrase": "急什么",
                                                                  "allow": ["着急"]}]}}},
     "categories.推诿.phrases.1", "does not contain the phrase"),
    ({"categories": {"推诿": {"reason": "r", "phrases": ["。。"]}}},
     "categories.推诿.phrases.0.phrase", "two letters or digits"),
    ({"categories": {"推诿": {"reason": "r", "phrases": ["x", ]}, }}, "phrases.0.phrase",
     "two letters or digits"),
    ({"categories": {"推诿": {"reason": "r", "phrases": ["不归我管"], "reasn": "typo"}}},
     "categories.推诿.reasn", "Extra inputs"),
    ({"categories": {}}, "categories", "at least 1"),
    (["not", "a", "mapping"], "(file)", "valid dictionary"),
])
def test_bad_file_names_file_and_field(tmp_path, data, where, what):
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as exc:
        BannedPhrases.load(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: "), message
    assert where in message and what in message, message


def test_duplicate_unreadable_and_missing_files(tmp_path):
    path = _write(tmp_path, {"categories": {
        "甲": {"reason": "r", "phrases": ["不归我管"]},
        "乙": {"reason": "r", "phrases": ["不 归 我 管"]}}})
    with pytest.raises(ConfigError, match="listed twice"):
        BannedPhrases.load(path)
    path = _write(tmp_path, "categories: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        BannedPhrases.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        BannedPhrases.load(tmp_path / "missing.yaml")
