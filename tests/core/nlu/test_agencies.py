"""Departments named in a question weigh their matters' entries (config/agencies.yaml)."""

from __future__ import annotations

import pytest

from core.config import BotSettings
from core.dialog.bot import Bot, Context
from core.errors import ConfigError
from core.kb.importer import check_files
from core.nlu.agencies import Agencies
from core.paths import config_dir
from tests.core.dialog.test_bot import seed_snapshot


@pytest.fixture(scope="module")
def agencies() -> Agencies:
    # one entry of each of three matters, from the seed KB
    entries = [next(e for e in check_files([config_dir() / "kb" / f"{m}.yaml"]).entries)
               for m in ("M12", "M32", "M09")]
    return Agencies({"hrss": "人社|人力资源", "tax": "税务|税局"}, entries,
                    {"M09": "hrss", "M12": "hrss", "M32": "tax"})


def test_the_one_department_named_weighs_its_matters_entries(agencies):
    assert agencies.named("人社系统里单位名称怎么改") == ["hrss"]
    assert agencies.boost("人社系统里单位名称怎么改", 1.3).tolist() == pytest.approx(
        [1.3, 1.0, 1.3])
    assert agencies.boost("税务登记信息变更", 1.5).tolist() == [1.0, 1.5, 1.0]


@pytest.mark.parametrize("question", [
    "单位名称改了怎么变更",  # no department named
    "人社改好了 税务这边还要变更吗",  # two: it does not say which
])
def test_none_or_two_departments_decide_nothing(agencies, question):
    assert agencies.boost(question, 1.3) is None


def test_a_factor_of_one_turns_it_off(agencies):
    assert agencies.boost("人社系统里单位名称怎么改", 1.0) is None


def test_a_bad_pattern_is_refused_naming_the_department(tmp_path):
    bad = tmp_path / "agencies.yaml"
    bad.write_text("agencies:\n  tax: '税务('\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"agencies.*not a regular expression"):
        Agencies.load([], {}, bad)


@pytest.mark.parametrize(("question", "matter"), [
    # 人社's 单位(项目)基本信息变更 and the tax office's 一照一码户信息变更 share these words;
    # the department named settles it, where before the bot could only ask
    ("单位地址变了 人社这边的登记要改吗", "M12"),
    ("公司名字改了 税务局这边的登记信息要变更吗", "M32"),
])
def test_the_bot_answers_for_the_department_named(question, matter):
    snap = seed_snapshot()
    reply = Bot(lambda: snap, BotSettings()).respond(question, Context())
    assert (reply.action, reply.meta.matters) == ("answer", [matter]), reply.meta
    # without the weight it only knew it was close
    off = Bot(lambda: snap, BotSettings(agency_boost=1.0)).respond(question, Context())
    assert off.action == "clarify", off.meta
