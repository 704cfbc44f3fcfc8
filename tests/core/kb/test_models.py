"""Validation of the 9 KB types: required fields, code tables, rich-text sanitising, wire format."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

import pytest

from core.kb.importer import Problem, check_records
from core.kb.models import ENTRY_TYPES, KbEntryBase, field_order
from core.kb.richtext import sanitize_html
from core.kb.wire import RawRecord

DOC = Path(__file__).resolve().parents[3] / "docs" / "kb-format.md"

COMMON = {
    "region": "310000",
    "published_at": "2024-03-01 09:00:00",
    "published_by": "police",
    "updated_at": "2025-06-01 09:00:00",
    "updated_by": "police",
    "valid": "1",
}
OWN: dict[str, dict] = {
    "guide": {"title": "居住证签注办事指引", "content": "<p>登录“一网通办”办理。</p>"},
    "faq": {"question": "居住证签注要带什么？", "answer": "<p>带身份证和居住证。</p>"},
    "term": {"term": "居住证签注", "explanation": "<p>延续居住证使用期限的手续。</p>",
             "collector": "陈刚", "collected_by": "police"},
    "policy_original": {
        "name": "上海市居住证管理办法", "doc_number": "沪府令58号", "source": "03",
        "category1": "09", "category2": "0901", "audience": "person",
        "body": "<p>第一条 为了……</p>", "level": "2",
        "effective_from": "2018-01-01", "effective_to": "2099-12-31",
    },
    "policy_interpretation": {"title": "居住证办法解读", "content": "<p>一图读懂。</p>"},
    "policy_project": {
        "name": "创业补贴申报", "audience": "enterprise", "conditions": "在本市注册的初创企业",
        "period": "每年3月", "materials": "营业执照；申请表", "guide": "<p>网上申报。</p>",
        "system_url": "https://zwdt.sh.gov.cn", "process": "申报、审核、拨付",
        "accepting_dept": "hrss",
    },
    "notice": {"title": "系统维护公告", "source": "市大数据中心", "date": "2025-06-01",
               "body": "<p>6月1日凌晨维护。</p>", "level": "2", "terminals": ["pc", "app"]},
    "hotline": {"phone": "12345", "unit_code": "hotline-12345", "unit_name": "12345市民服务热线"},
    "department": {"dept_code": "police", "name": "市公安局", "phone": "021-12345678",
                   "address": "上海市黄浦区福州路185号", "postcode": "200002"},
}


def valid_record(entry_type: str, **fields) -> dict:
    """A minimal valid record of ``entry_type``; ``fields`` override or add."""
    common = {k: v for k, v in COMMON.items() if k != "region" or entry_type != "term"}
    return {"type": entry_type, **OWN[entry_type], **common, **fields}


def problems(data) -> list[Problem]:
    return check_records([RawRecord("t.yaml", "entry 1", data)]).problems


def parse(data: dict) -> KbEntryBase:
    checked = check_records([RawRecord("t.yaml", "entry 1", data)])
    assert checked.problems == [], checked.problems
    return checked.entries[0]


def assert_refused(data, field: str, *fragments: str) -> Problem:
    found = [p for p in problems(data) if p.field == field]
    assert found, f"no problem on {field!r}: {problems(data)}"
    for fragment in fragments:
        assert any(fragment in p.reason for p in found), (fragment, found)
    return found[0]


def _doc_rows() -> dict[str, str]:
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\|[^|]*\| (.*) \|$", DOC.read_text("utf-8"), re.M)
    return dict(rows)


REQUIRED = [
    (t, name) for t, model in ENTRY_TYPES.items()
    for name, info in model.model_fields.items() if info.is_required() and name != "type"
]


# -- required fields --------------------------------------------------------------------------


def test_required_fields_are_those_in_bold_in_the_format_doc():
    rows = _doc_rows()
    assert set(rows) == set(ENTRY_TYPES)
    for entry_type, own in rows.items():
        expected = set(re.findall(r"\*\*(\w+)\*\*", own))
        expected |= {"published_at", "published_by", "updated_at", "updated_by", "valid"}
        if entry_type != "term":
            expected.add("region")
        assert {n for t, n in REQUIRED if t == entry_type} == expected, entry_type


@pytest.mark.parametrize("entry_type", ENTRY_TYPES)
def test_the_valid_record_of_each_type_is_accepted(entry_type):
    entry = parse(valid_record(entry_type))
    assert entry.type == entry_type and entry.id is None


@pytest.mark.parametrize(("entry_type", "name"), REQUIRED)
def test_a_missing_required_field_is_refused_by_name(entry_type, name):
    data = valid_record(entry_type)
    del data[name]
    assert_refused(data, name, "required field is missing")


@pytest.mark.parametrize("blank", ["", "   \t "])
@pytest.mark.parametrize(("entry_type", "name"), REQUIRED)
def test_a_blank_required_field_is_refused_by_name(entry_type, name, blank):
    assert_refused(valid_record(entry_type, **{name: blank}), name)


def test_a_missing_or_unknown_type_is_refused():
    data = valid_record("faq")
    del data["type"]
    assert_refused(data, "type", "required field is missing")
    assert_refused(valid_record("faq", type="blog"), "type", "unknown type 'blog'")


# -- code tables ------------------------------------------------------------------------------

BAD_CODES = [
    ("faq", "region", "999999", "region"),
    ("hotline", "region", "320000", "region"),
    ("faq", "published_by", "nobody", "department"),
    ("faq", "updated_by", "nobody", "department"),
    ("term", "collected_by", "nobody", "department"),
    ("hotline", "unit_code", "nobody", "department"),
    ("department", "dept_code", "nobody", "department"),
    ("policy_project", "accepting_dept", "nobody", "department"),
    ("faq", "valid", "2", "valid_flag"),
    ("policy_original", "source", "42", "policy_source"),
    ("policy_original", "category1", "77", "policy_category1"),
    ("policy_original", "category2", "7777", "policy_category2"),
    ("policy_original", "audience", "alien", "audience"),
    ("policy_project", "audience", "alien", "audience"),
    ("policy_original", "level", "9", "policy_level"),
    ("notice", "level", "9", "article_level"),
    ("notice", "terminals", "pc-tv", "terminal"),
]


@pytest.mark.parametrize(("entry_type", "name", "value", "table"), BAD_CODES)
def test_an_unknown_code_is_refused_naming_its_table(entry_type, name, value, table):
    bad = value.split("-")[-1]
    assert_refused(valid_record(entry_type, **{name: value}), name, f"table {table!r}", repr(bad))


@pytest.mark.parametrize(("entry_type", "name"), [
    ("faq", "related_matters"), ("guide", "related_matters"), ("term", "related_matters"),
    ("policy_interpretation", "related_matters"), ("policy_project", "prerequisite_matters"),
])
def test_unknown_matter_codes_are_refused(entry_type, name):
    assert_refused(valid_record(entry_type, **{name: ["M03", "M99"]}), name,
                   "'M99'", "config/matters.yaml")
    assert_refused(valid_record(entry_type, **{name: "X1"}), name, "'X1'", "not a matter code")


def test_category2_must_belong_to_its_category1():
    problem = assert_refused(valid_record("policy_original", category1="01", category2="0901"),
                             "-", "category2 '0901' belongs to category1 '09'")
    assert "not '01'" in problem.reason
    parse(valid_record("policy_original", category1="01", category2="0101"))


def test_effective_to_before_effective_from_is_refused():
    assert_refused(valid_record("policy_original", effective_from="2025-01-01",
                                effective_to="2024-12-31"), "-", "effective_to is before")


# -- rich text --------------------------------------------------------------------------------

FORMATTED = ('<p>第一段</p><ol><li>一</li><li>二</li></ol>'
             '<p><strong>重要</strong><a href="https://zwdt.sh.gov.cn/x">一网通办</a></p>')
HOSTILE = [
    ("<script>alert(1)</script>", ["script", "alert"]),
    ("<style>body{display:none}</style>", ["style", "display"]),
    ('<iframe src="https://evil.example/"></iframe>', ["iframe", "evil"]),
    ('<p onclick="steal()">点我</p>', ["onclick", "steal"]),
    ('<img src="https://x.gov.cn/a.png" onerror="alert(1)">', ["onerror", "alert"]),
    ("<img src=x onerror=alert(1)>", ["onerror", "alert"]),
    ('<a href="javascript:alert(1)">点</a>', ["javascript", "alert"]),
    ('<a href="jav&#x61;script:alert(1)">点</a>', ["script:", "alert", "&#x61;"]),
    ('<a href="JAVASCRIPT:alert(1)">点</a>', ["javascript", "alert"]),
    ('<a href="data:text/html;base64,PHNjcmlwdD4=">点</a>', ["data:", "base64"]),
    ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', ["data:", "base64"]),
    ('<svg onload="alert(1)"><circle r="1"/></svg>', ["svg", "onload", "alert"]),
    ("<svg><script>alert(1)</script></svg>", ["svg", "script", "alert"]),
    ('<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>', ["onerror", "alert"]),
    ('<math><a xlink:href="javascript:alert(1)">点</a></math>', ["javascript", "alert"]),
]


@pytest.mark.parametrize(("payload", "forbidden"), HOSTILE)
def test_hostile_html_is_removed_and_formatting_kept(payload, forbidden):
    answer = parse(valid_record("faq", answer=FORMATTED + payload)).answer
    for fragment in forbidden:
        assert fragment not in answer.lower(), (fragment, answer)
    for kept in ("<p>第一段</p>", "<ol><li>一</li><li>二</li></ol>", "<strong>重要</strong>",
                 '<a href="https://zwdt.sh.gov.cn/x"', ">一网通办</a>"):
        assert kept in answer
    assert sanitize_html(answer) == answer


def test_sanitising_is_idempotent_on_ordinary_html():
    once = sanitize_html(FORMATTED + '<p>A &amp; B <a href="https://a.b/?x=1&y=2">x</a></p>')
    assert sanitize_html(once) == once


def _rich_fields() -> list[tuple[str, str]]:
    return [(t, name) for t, own in _doc_rows().items()
            for name in re.findall(r"\**(\w+)\**\s+\(rich\)", own)]


@pytest.mark.parametrize(("entry_type", "name"), _rich_fields())
def test_every_rich_text_field_is_sanitised(entry_type, name):
    entry = parse(valid_record(entry_type, **{name: '<p onclick="x()">正文</p><script>x()</script>'}))
    assert getattr(entry, name) == "<p>正文</p>"


def test_a_rich_text_field_with_nothing_safe_left_is_refused():
    assert_refused(valid_record("faq", answer="<script>alert(1)</script>"), "answer", "unsafe HTML")


# -- wire format ------------------------------------------------------------------------------


def test_lists_accept_the_seed_wire_format():
    guide = parse(valid_record("guide", related_matters="M03~M04", aliases="续签~ 签注 ~续签"))
    assert guide.related_matters == ["M03", "M04"]
    assert guide.aliases == ["续签", "签注"]
    notice = parse(valid_record("notice", terminals="pc-app-kiosk"))
    assert notice.terminals == ["pc", "app", "kiosk"]


def test_integer_codes_from_unquoted_yaml_are_accepted():
    entry = parse(valid_record("faq", region=310000, valid=1))
    assert (entry.region, entry.valid) == ("310000", "1")
    assert entry.wire()["region"] == "310000" and entry.wire()["valid"] == "1"


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-03-01 09:05:00", "2024-03-01 09:05:00"),
    ("2024-03-01 09:05", "2024-03-01 09:05:00"),
    ("2024-03-01T09:05:00", "2024-03-01 09:05:00"),
    ("2024/03/01 09:05:00", "2024-03-01 09:05:00"),
    ("2024/3/1 09:05", "2024-03-01 09:05:00"),
    (datetime(2024, 3, 1, 9, 5, 7, 123456), "2024-03-01 09:05:07"),
    ("2024-03-01", "2024-03-01 00:00:00"),
    ("2024/03/01", "2024-03-01 00:00:00"),
    ("20240301", "2024-03-01 00:00:00"),
    ("2024年3月1日", "2024-03-01 00:00:00"),
    (date(2024, 3, 1), "2024-03-01 00:00:00"),
])
def test_timestamps_normalise(value, expected):
    entry = parse(valid_record("faq", published_at=value, last_reviewed_at=value))
    assert entry.wire()["published_at"] == expected
    assert entry.wire()["last_reviewed_at"] == expected


def test_dates_normalise_and_nonsense_is_refused():
    notice = parse(valid_record("notice", date="2025/6/1 10:00"))
    assert notice.wire()["date"] == "2025-06-01"
    assert_refused(valid_record("faq", published_at="yesterday"), "published_at", "'yesterday'")
    assert_refused(valid_record("notice", date="2025-13-01"), "date")


def test_unknown_fields_are_refused():
    assert_refused(valid_record("faq", colour="red"), "colour", "unknown field for type 'faq'")


def test_term_has_no_region():
    assert "region" not in parse(valid_record("term")).wire()
    assert_refused(valid_record("term", region="310000"), "region",
                   "unknown field for type 'term'")


def test_wire_omits_empty_optionals_and_the_default_status():
    wire = parse(valid_record("guide", id="g-1", source_url="  ", aliases=[],
                              related_policies="", status="published")).wire()
    assert wire == {"id": "g-1", "type": "guide", **OWN["guide"], **COMMON}
    draft = parse(valid_record("guide", status="draft")).wire()
    assert draft["status"] == "draft"


def test_wire_puts_fields_in_canonical_order():
    data = valid_record("faq", id="M03-faq-01", aliases=["签注材料"], related_matters=["M03"])
    wire = parse(dict(reversed(list(data.items())))).wire()
    assert list(wire) == ["id", "type", "question", "answer", "aliases", "related_matters",
                          "region", "published_at", "published_by", "updated_at", "updated_by",
                          "valid"]
    for entry_type in ENTRY_TYPES:
        wire = parse(valid_record(entry_type, id="x-1")).wire()
        assert list(wire)[:2] == ["id", "type"]
        assert list(wire) == [k for k in field_order(entry_type) if k in wire]


def test_wire_keeps_a_required_list_and_reparses_to_itself():
    for entry_type in ENTRY_TYPES:
        wire = parse(valid_record(entry_type, id="x-1")).wire()
        assert parse(wire).wire() == wire
    assert parse(valid_record("notice")).wire()["terminals"] == ["pc", "app"]
