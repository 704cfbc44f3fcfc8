"""Routing of requests for a person (core/routing.py): every matter lands on a unit that has hours.

How 临港 is decided (documented in core/routing.py): by topic, not by district — a citizen who
mentions 临港/新片区/洋山/滴水湖 is in the 新片区, which spans parts of several districts.
"""

from __future__ import annotations

import pytest

from core.hours import load_units
from core.reference import load_matters
from core.routing import (
    DISTRICTS, department_menu, detect_topic, district_choices, parse_district, route,
    serving_units,
)

MATTER_CODES = [f"M{i:02d}" for i in range(1, 36)]


@pytest.fixture(scope="module")
def matters():
    return load_matters()


@pytest.fixture(scope="module")
def units():
    return load_units()


@pytest.fixture(scope="module")
def districts(matters):
    return [(code, name) for code, name in matters.regions.items() if code != "310000"]


def test_there_are_16_district_choices(districts):
    assert len(districts) == 16
    assert district_choices() == tuple(districts)


@pytest.mark.parametrize("code", MATTER_CODES)
def test_every_matter_routes_to_a_unit_with_hours(code, matters, units, districts):
    m = matters.by_code()[code]
    if DISTRICTS in m.units:
        asked = route(code, district=None, topic=None)
        assert asked.action == "ask_district" and asked.reason == "district_unknown"
        assert asked.choices == tuple(districts) and len(asked.choices) == 16
        assert asked.default_unit == m.units[0] and asked.default_unit in units
        for region, _ in districts:
            d = route(code, district=region, topic=None)
            assert d.action == "queue" and d.reason == "district_office"
            assert d.unit == f"district-{region}"
            assert d.unit in units
        # 310000 上海市: no particular district, so the default (first) unit
        assert route(code, district="310000", topic=None).unit == m.units[0]
    else:
        d = route(code, district=None, topic=None)
        assert (d.action, d.unit, d.reason) == ("queue", m.units[0], "matter_default")
        assert d.unit in units
    # whatever the topic, with a district known the citizen is queued on a real unit
    for topic in (None, "community", "lingang", "technical"):
        d = route(code, district="310110", topic=topic)
        assert d.action == "queue" and d.unit in units and d.matter == code, (topic, d)


def test_some_matters_by_name(matters):
    assert route("M01", district="310104", topic=None).unit == "district-310104"
    assert route("M06", district=None, topic=None).unit == "police"
    assert route("M13", district="310104", topic=None).unit == "planning"
    assert route("M20", district=None, topic=None).unit == "health"
    assert route("M35", district=None, topic=None).unit == "tax"


@pytest.mark.parametrize("code", MATTER_CODES)
def test_community_topic_goes_to_civil_community_only_where_listed(code, matters):
    m = matters.by_code()[code]
    d = route(code, district="310101", topic="community")
    plain = route(code, district="310101", topic=None)
    if "civil-community" in m.units:
        assert (d.unit, d.reason) == ("civil-community", "community")
        assert plain.unit != "civil-community"  # not without the topic
    else:
        assert d.unit == plain.unit != "civil-community"


@pytest.mark.parametrize("matter", [*MATTER_CODES, None, "M99"])
def test_technical_problems_go_to_bigdata_whatever_the_matter(matter):
    for district in (None, "310115"):
        d = route(matter, district=district, topic="technical")
        assert (d.action, d.unit, d.reason) == ("queue", "bigdata", "technical")


@pytest.mark.parametrize("matter", [None, "M99", "居住证"])
def test_unknown_matter_offers_a_menu_of_every_department(matter, matters, units):
    d = route(matter, district="310101", topic=None)
    assert (d.action, d.reason, d.unit) == ("choose_department", "matter_unknown", None)
    groups = {g.unit: g for g in d.menu}
    assert {m.department for m in matters.matters} <= set(groups)
    assert {"bigdata", "hotline-12345"} <= set(groups)  # always something to pick
    listed = [code for g in d.menu for code, _ in g.matters]
    assert sorted(listed) == MATTER_CODES  # every matter exactly once
    for g in d.menu:
        assert g.unit in units and g.name
        for code, name in g.matters:
            assert matters.by_code()[code].department == g.unit and name
    assert d.menu == department_menu()


def test_lingang_for_m18(units):
    # in 临港 (here: 浦东新区 and said so), M18 goes to the 临港 committee
    d = route("M18", district="310115", topic=detect_topic("我们公司在临港新片区，办道路运输证"))
    assert (d.unit, d.reason) == ("lingang", "lingang") and d.unit in units
    # the topic alone is enough: the 新片区 also covers parts of 奉贤 and 闵行
    assert route("M18", district=None, topic="lingang").unit == "lingang"
    assert route("M18", district="310120", topic="lingang").unit == "lingang"
    # 浦东 without a 临港 cue: the 浦东 district office
    assert route("M18", district="310115", topic=None).unit == "district-310115"
    # a matter that does not list lingang ignores the topic
    assert route("M21", district="310115", topic="lingang").unit == "district-310115"
    assert route("M06", district=None, topic="lingang").unit == "police"


def test_districts_given_by_name_and_unrecognised_ones_are_asked_again():
    assert parse_district("徐汇区") == parse_district("徐汇") == parse_district(" 310104 ") == "310104"
    assert parse_district("浦东") == parse_district("浦东新区") == "310115"
    assert parse_district("上海市") == "310000"
    assert parse_district("杭州") is None and parse_district("") is None
    assert route("M22", district="静安", topic=None).unit == "district-310106"
    d = route("M22", district="999999", topic=None)
    assert d.action == "ask_district" and "999999" in d.detail and len(d.choices) == 16


def test_detect_topic():
    assert detect_topic("一网通办登录不上怎么办") == "technical"
    assert detect_topic("页面打不开") == "technical"
    assert detect_topic("实名认证失败了") == "technical"
    assert detect_topic("提交的时候系统报错") == "technical"
    assert detect_topic("网页有BUG") == "technical"
    assert detect_topic("居住证能在社区事务受理中心领吗") == "community"
    assert detect_topic("要去居委会开证明吗") == "community"
    assert detect_topic("街道能办吗") == "community"
    assert detect_topic("公司在临港") == "lingang"
    assert detect_topic("教师资格认定需要什么材料") is None
    assert detect_topic("") is None and detect_topic(None) is None
    # a platform problem outranks everything else said with it
    assert detect_topic("社区事务受理中心的网页打不开") == "technical"


def test_unknown_topic_is_a_caller_error():
    with pytest.raises(ValueError, match="topic"):
        route("M01", district=None, topic="urgent")


def test_units_file_covers_every_unit_routing_names(units):
    assert serving_units() <= set(units)
    assert {f"district-{code}" for code, _ in district_choices()} <= set(units)


@pytest.mark.parametrize("code", MATTER_CODES)
def test_overflow_from_any_unit_of_a_matter_ends_at_12345(code, matters, units):
    m = matters.by_code()[code]
    starts = {route(code, district="310107", topic=t).unit
              for t in (None, "community", "lingang", "technical")}
    for unit in starts:
        chain = [unit]
        while (nxt := units.overflow_target(chain[-1], m.department)) is not None:
            assert nxt not in chain, chain
            chain.append(nxt)
        assert chain[-1] == "hotline-12345", chain
