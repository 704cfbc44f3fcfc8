"""A matter's own name in a question weighs that matter's entries (core/nlu/names.py)."""

from __future__ import annotations

import pytest

from core.config import BotSettings
from core.dialog.bot import Bot, Context
from core.kb.importer import check_files
from core.nlu.names import MatterNames, names_of
from core.paths import config_dir
from tests.core.dialog.test_bot import seed_snapshot


def test_names_come_from_titles_without_their_brackets():
    assert names_of("居住登记") == ["居住登记"]
    assert names_of("【导办】来沪人员居住登记") == ["来沪人员居住登记"]
    assert names_of("发票缴销（交旧）") == ["发票缴销"]  # 交旧 is too short to be a name
    assert names_of("提取住房公积金支付房屋租赁费用（租房提取）") == [
        "提取住房公积金支付房屋租赁费用", "租房提取"]
    # a bracket that lists, qualifies or excludes is not a name of its own
    assert names_of("失业登记（本市户籍/非本市户籍）") == ["失业登记"]
    assert names_of("酒类商品零售许可（含酒类食品经营许可）") == ["酒类商品零售许可"]
    # a matter's official name keeps only its head: its brackets qualify it
    assert names_of("失业登记(本市户籍)/(非本市户籍)", inner=False) == ["失业登记"]


ENTRIES = [e for m in ("M03", "M04", "M05")
           for e in check_files([config_dir() / "kb" / f"{m}.yaml"]).entries]


@pytest.fixture(scope="module")
def names() -> MatterNames:
    return MatterNames(ENTRIES, {"M03": "居住证签注", "M04": "居住证新办", "M05": "居住登记"})


def test_the_one_matter_named_weighs_its_entries(names):
    assert names.named("租的房子做居住登记 房东要一起去吗") == {"M05"}
    boost = names.boost("租的房子做居住登记 房东要一起去吗", 1.3)
    m05 = [e.matters == ["M05"] for e in ENTRIES]
    assert boost.tolist() == pytest.approx([1.3 if x else 1.0 for x in m05])
    # a name inside a longer one counts as the longer one
    assert names.named("来沪人员居住登记在哪里办") == {"M05"}


@pytest.mark.parametrize("question", [
    "居住证到期了怎么续",  # 居住证 is a word of two matters, not a name
    "办了居住证签注还要做居住登记吗",  # two names: it does not say which
])
def test_no_name_or_two_decide_nothing(names, question):
    assert names.boost(question, 1.3) is None


def test_a_factor_of_one_turns_it_off(names):
    assert names.boost("居住登记在哪办", 1.0) is None


@pytest.mark.parametrize(("question", "matter"), [
    # 居住证's FAQ on 租房 and 房东 outranked the 居住登记 one; the name settles it
    ("租房子做居住登记，房东本人必须到场吗", "M05"),
    ("我想办发票领用 要先做什么", "M30"),
])
def test_the_bot_answers_for_the_matter_named(question, matter):
    snap = seed_snapshot()
    reply = Bot(lambda: snap, BotSettings()).respond(question, Context())
    assert (reply.action, reply.meta.matters) == ("answer", [matter]), reply.meta
    off = Bot(lambda: snap, BotSettings(name_boost=1.0)).respond(question, Context())
    assert off.action == "clarify", off.meta
