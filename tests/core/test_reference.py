"""Reference data: config/codes.yaml and config/matters.yaml load and agree with each other."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.paths import config_dir
from core.reference import CODE_TABLES, load_codes, load_matters

PSEUDO_UNITS = {"districts"}  # "the district office of the citizen's district", not one unit


@pytest.fixture(scope="module")
def codes():
    return load_codes()


@pytest.fixture(scope="module")
def matters():
    return load_matters()


def test_every_code_table_loads_with_entries(codes):
    for table in CODE_TABLES:
        assert codes.table(table), f"code table {table!r} is empty"
    assert codes.label("policy_category2", "0901") == "居住证"
    assert codes.label("region", "310000") == "上海市"


def test_there_are_35_matters_m01_to_m35_in_order(matters):
    assert [m.code for m in matters.matters] == [f"M{i:02d}" for i in range(1, 36)]
    assert all(m.name.strip() for m in matters.matters)


def test_every_responsible_unit_is_a_department_code(codes, matters):
    for m in matters.matters:
        assert m.department in codes.department, (m.code, m.department)
        for unit in m.units:
            assert unit in PSEUDO_UNITS or unit in codes.department, (m.code, unit)
    assert set(matters.units) - PSEUDO_UNITS <= set(codes.department)
    assert {m.department for m in matters.matters}.isdisjoint(PSEUDO_UNITS)


def test_every_matter_region_is_a_region_code_with_a_district_office(codes, matters):
    for code, name in matters.regions.items():
        assert codes.region.get(code) == name, code
    # 'districts' routing sends a citizen to the office of their district
    districts = [c for c in matters.regions if c != "310000"]
    assert districts
    assert [c for c in districts if f"district-{c}" not in codes.department] == []


def test_matter_audiences_are_audience_codes(codes, matters):
    assert {a for m in matters.matters for a in m.audience} <= set(codes.audience)


def test_a_category2_with_an_unknown_parent_is_a_config_error(tmp_path):
    text = (config_dir() / "codes.yaml").read_text(encoding="utf-8")
    text = text.replace('"0901": {name: 居住证, parent: "09"}', '"0901": {name: 居住证, parent: "88"}')
    path = tmp_path / "codes.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"codes\.yaml.*0901.*'88'"):
        load_codes(path)


def test_a_matter_naming_an_unlisted_unit_is_a_config_error(tmp_path):
    text = (config_dir() / "matters.yaml").read_text(encoding="utf-8")
    text = text.replace("units: [police, civil-community]", "units: [police, nobody]", 1)
    path = tmp_path / "matters.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"matters\.yaml.*M03.*'nobody'"):
        load_matters(path)
