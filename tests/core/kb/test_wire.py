"""KB files: YAML, JSON, JSONL and CSV round trips, defaults, and error locators."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from core.errors import ImportFailed
from core.kb.importer import check_files, check_records
from core.kb.models import ENTRY_TYPES, entry_adapter
from core.kb.wire import dumps, read_records
from tests.core.kb.test_models import valid_record

HTML = ('<p>第一步：登录“一网通办”, 点击 "我要办"；\n'
        "注意 'quotes', commas, and ~ tildes.</p>\n<ol>\n<li>一</li>\n<li>二</li>\n</ol>")


def mixed_entries() -> list[dict]:
    """At least one entry of every type, in wire form, with the awkward characters."""
    records = [valid_record(t, id=f"{t}-01") for t in ENTRY_TYPES]
    records += [
        valid_record("faq", id="faq-02", question='居住证"签注", 要带什么？\n(续签)',
                     answer=HTML, aliases=["续签, 要啥", "签注材料"],
                     related_matters=["M03", "M04"], related_policies=["policy-a", "policy-b"]),
        valid_record("guide", id="guide-02", content=HTML, source_url="https://a.gov.cn/?a=1,2",
                     related_matters=["M05"], status="draft",
                     last_reviewed_at="2025-01-02 03:04:05"),
        valid_record("notice", id="notice-02", terminals=["pc", "app", "kiosk"],
                     attachments="附件1,附件2", region="310115"),
        valid_record("policy_project", id="project-02", prerequisite_matters=["M08", "M10"],
                     prerequisite_projects=["project-01"], conditions="甲、乙,\n丙"),
        valid_record("hotline", id="hotline-02", remark='7×24小时, "全年无休"'),
        valid_record("term", id="term-02", related_matters=["M03"], aliases=["签注"],
                     basis_name="《条例》, 第1条", explanation=HTML),
    ]
    return [entry_adapter.validate_python(r).wire() for r in records]


def read_back(path: Path):
    checked = check_records(read_records(path))
    assert checked.problems == [], [str(p) for p in checked.problems]
    return [e.wire() for e in checked.entries]


@pytest.mark.parametrize("fmt", ["yaml", "json", "jsonl", "csv"])
def test_every_format_round_trips(tmp_path, fmt):
    original = mixed_entries()
    assert {e["type"] for e in original} == set(ENTRY_TYPES)
    path = tmp_path / f"kb.{fmt}"
    path.write_text(dumps(original, fmt), encoding="utf-8", newline="")
    assert read_back(path) == original
    # and writing what was read gives the same file again
    assert dumps(read_back(path), fmt) == path.read_text(encoding="utf-8")


def test_csv_joins_lists_with_tilde_and_terminals_with_dash():
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(dumps(mixed_entries(), "csv")))}
    assert rows["faq-02"]["related_matters"] == "M03~M04"
    assert rows["faq-02"]["aliases"] == "续签, 要啥~签注材料"
    assert rows["notice-02"]["terminals"] == "pc-app-kiosk"
    assert rows["project-02"]["prerequisite_matters"] == "M08~M10"
    assert rows["faq-01"]["source_url"] == ""  # a field other types have is an empty cell


def test_csv_written_by_a_spreadsheet_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    text = ("type,id,question,answer,aliases,related_matters,region,published_at,published_by,"
            "updated_at,updated_by,valid,source_url\r\n"
            "faq,x-1,能办吗？,<p>能。</p>,能不能办~可以办吗,M03~M04,310000,2024/3/1,police,"
            "2024/3/2 10:00,police,1,\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    [entry] = read_back(path)
    assert entry["type"] == "faq" and entry["id"] == "x-1"
    assert entry["aliases"] == ["能不能办", "可以办吗"]
    assert entry["related_matters"] == ["M03", "M04"]
    assert entry["published_at"] == "2024-03-01 00:00:00"
    assert "source_url" not in entry


def test_csv_without_a_type_column_is_refused(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,question\nx,q\n", encoding="utf-8")
    with pytest.raises(ImportFailed, match="line 1"):
        list(read_records(path))


YAML_WITH_DEFAULTS = """\
defaults:
  region: "310000"
  published_by: police
  updated_by: police
  published_at: "2024-03-01 09:00:00"
  updated_at: 2025-06-01 09:00:00
  valid: 1
  related_matters: [M03]
entries:
  - id: M03-faq-01
    type: faq
    question: 签注要带什么？
    answer: <p>身份证。</p>
  - id: M03-faq-02
    type: faq
    region: "310115"
    published_by: civil-community
    related_matters: [M04]
    question: 浦东怎么签注？
    answer: <p>社区事务受理服务中心。</p>
  - id: M03-term-01
    type: term
    term: 签注
    explanation: <p>续期。</p>
    collector: 陈刚
    collected_by: police
"""


def test_yaml_defaults_apply_where_an_entry_is_silent(tmp_path):
    path = tmp_path / "M03.yaml"
    path.write_text(YAML_WITH_DEFAULTS, encoding="utf-8")
    faq1, faq2, term = read_back(path)
    assert (faq1["region"], faq1["published_by"], faq1["valid"]) == ("310000", "police", "1")
    assert faq1["updated_at"] == "2025-06-01 09:00:00"
    assert faq1["related_matters"] == ["M03"]
    assert (faq2["region"], faq2["published_by"]) == ("310115", "civil-community")
    assert faq2["related_matters"] == ["M04"]
    assert "region" not in term  # a term has no region; the default must not make it invalid
    assert term["related_matters"] == ["M03"] and term["published_by"] == "police"


# -- where errors are reported ----------------------------------------------------------------


def _problems(path: Path) -> list[str]:
    return [str(p) for p in check_files([path]).problems]


def test_yaml_problem_names_line_and_entry(tmp_path):
    text = YAML_WITH_DEFAULTS.replace("    answer: <p>社区事务受理服务中心。</p>\n", "")
    path = tmp_path / "M03.yaml"
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index("  - id: M03-faq-02") + 1
    assert _problems(path) == [f"{path}:line {line} (entry 2): answer: required field is missing"]


def test_jsonl_problem_names_the_line_and_bad_json_is_a_problem(tmp_path):
    good = json.dumps(valid_record("faq", id="a"), ensure_ascii=False)
    bad = json.dumps(valid_record("faq", id="b", valid="7"))
    other = json.dumps(valid_record("faq", id="c"))
    path = tmp_path / "kb.jsonl"
    path.write_text(f"{good}\n\n{bad}\n{{not json\n{other}\n", encoding="utf-8")
    checked = check_files([path])
    assert checked.records == 4 and len(checked.entries) == 2
    assert [p.where for p in checked.problems] == [f"{path}:line 3", f"{path}:line 4"]
    assert "'7' is not a code of table 'valid_flag'" in checked.problems[0].reason
    assert "not valid JSON" in checked.problems[1].reason


def test_csv_problem_names_the_line_counting_multiline_cells(tmp_path):
    entries = [valid_record("faq", id="a", answer="<p>一</p>\n<p>二</p>\n<p>三</p>"),
               valid_record("faq", id="b", published_by="nobody")]
    path = tmp_path / "kb.csv"
    path.write_text(dumps(entries, "csv"), encoding="utf-8", newline="")
    problems = check_files([path]).problems
    assert [(p.where, p.field) for p in problems] == [(f"{path}:line 5", "published_by")]


def test_json_problem_names_the_entry(tmp_path):
    path = tmp_path / "kb.json"
    entries = [valid_record("faq", id="a"), valid_record("hotline", id="b", phone=" ")]
    path.write_text(json.dumps({"entries": entries}, ensure_ascii=False), encoding="utf-8")
    assert [(p.where, p.field) for p in check_files([path]).problems] == [
        (f"{path}:entry 2", "phone")]


def test_malformed_yaml_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("entries:\n  - id: a\n    type: faq\n    question: a: b\n", encoding="utf-8")
    with pytest.raises(ImportFailed, match=rf"^{path}:line 4: not valid YAML"):
        check_files([path])


def test_malformed_json_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"id": "a",\n  "type": "faq"\n  "question": "x"}\n]\n', encoding="utf-8")
    with pytest.raises(ImportFailed, match=rf"^{path}:line 4: not valid JSON"):
        check_files([path])


def test_a_record_that_is_not_a_mapping_is_a_problem(tmp_path):
    path = tmp_path / "kb.yaml"
    path.write_text("- just a string\n- [a, list]\n", encoding="utf-8")
    checked = check_files([path])
    assert [p.where for p in checked.problems] == [f"{path}:entry 1", f"{path}:entry 2"]


def test_duplicate_ids_are_reported_with_both_places(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.csv"
    first.write_text(json.dumps(valid_record("faq", id="dup")) + "\n", encoding="utf-8")
    second.write_text(dumps([valid_record("faq", id="x"), valid_record("guide", id="dup")],
                            "csv"), encoding="utf-8")
    checked = check_files([first, second])
    assert [str(p) for p in checked.problems] == [
        f"{second}:line 3: id: duplicate id 'dup' (first at {first}:line 1)"]
    assert [e.id for e in checked.entries] == ["dup", "x"]
