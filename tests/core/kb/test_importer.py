"""Checking KB files against the KB they go into (core.kb.importer with a StoredKb): questions
already asked of another entry, and links to entries that exist nowhere, are warnings."""

from __future__ import annotations

import time

import pytest

from core.kb.importer import StoredKb, check_records
from core.kb.store import KbStore
from tests.core.kb.test_models import valid_record
from tests.core.kb.test_store import entry, records


@pytest.fixture
def store(engine) -> KbStore:
    return KbStore(engine)


def warnings(checked) -> list[tuple[str, str, str]]:
    return [(w.where, w.field, w.reason) for w in checked.warnings]


async def test_a_question_the_kb_already_has_under_another_id_is_a_warning(store):
    await store.write([entry(id="M03-faq-03", question="在随申办上怎么办理居住证签注？",
                             aliases=["随申办签注"])], actor="seed")
    stored = await StoredKb.load(store)
    checked = check_records(records(
        valid_record("faq", id="QA3-bad-3", question="在随申办上怎么办理居住证签注?"),
        valid_record("guide", id="new-guide", title="怎么签注", aliases=["随申办 签注"]),
        valid_record("faq", question="完全不同的问题？")), stored=stored)
    assert checked.problems == []  # a warning, never a refusal
    assert warnings(checked) == [
        ("import.jsonl:line 1", "title", "'在随申办上怎么办理居住证签注?' is also a question of "
         "M03-faq-03 in the KB: keep it on the entry that answers it"),
        ("import.jsonl:line 2", "aliases", "'随申办 签注' is also a question of M03-faq-03 in "
         "the KB: keep it on the entry that answers it"),
    ]
    # without the KB (as before) nothing is seen: the entries would then tie in search
    assert check_records(records(valid_record("faq", id="QA3-bad-3",
                                              question="在随申办上怎么办理居住证签注?"))
                         ).warnings == []


async def test_an_entry_replaced_by_the_files_is_not_a_rival(store):
    await store.write([entry(id="a", question="签注要带什么？"),
                       entry(id="b", question="旧的问法？")], actor="seed")
    stored = await StoredKb.load(store)
    # a itself (--replace), and b's question taken over while b is rephrased in the same files
    checked = check_records(records(valid_record("faq", id="a", question="签注要带什么？"),
                                    valid_record("faq", id="c", question="旧的问法？"),
                                    valid_record("faq", id="b", question="新的问法？")),
                            stored=stored)
    assert checked.warnings == []


async def test_retired_and_invalid_entries_are_not_asked_and_other_types_not_compared(store):
    await store.write([entry(id="old", question="签注要带什么？", status="retired"),
                       entry(id="void", question="怎么续签？", valid="0"),
                       entry("hotline", id="tel", unit_name="签注热线")], actor="seed")
    stored = await StoredKb.load(store)
    assert stored.ids == {"old", "void", "tel"}
    checked = check_records(records(valid_record("faq", question="签注要带什么？"),
                                    valid_record("faq", question="怎么续签？"),
                                    valid_record("faq", question="签注热线 12345")),
                            stored=stored)
    assert checked.warnings == []


async def test_links_to_ids_neither_in_the_files_nor_the_kb_are_warnings(store):
    await store.write([entry("policy_interpretation", id="policy-known")], actor="seed")
    stored = await StoredKb.load(store)
    checked = check_records(records(
        valid_record("faq", id="f1", related_policies=["policy-known", "NO-SUCH-POLICY"],
                     related_articles=["NO-SUCH-ARTICLE", "f2"]),
        # a service code (服务编码) of the 一网通办 catalogue is no KB entry: not checked
        valid_record("faq", id="f2", question="另一个问题？", related_projects=["f1"],
                     related_services=["310000-SVC-0001"]),
        valid_record("policy_project", id="p1", prerequisite_projects=["no-such-project"])),
        stored=stored)
    assert checked.problems == []
    assert warnings(checked) == [
        ("import.jsonl:line 1", "related_policies",
         "'NO-SUCH-POLICY' is not the id of an entry in these files or the KB"),
        ("import.jsonl:line 1", "related_articles",
         "'NO-SUCH-ARTICLE' is not the id of an entry in these files or the KB"),
        ("import.jsonl:line 3", "prerequisite_projects",
         "'no-such-project' is not the id of an entry in these files or the KB"),
    ]
    # without the KB the files are all there is to look in, and the warning says so
    alone = check_records(records(valid_record("faq", related_policies=["policy-known"])))
    assert warnings(alone) == [("import.jsonl:line 1", "related_policies",
                                "'policy-known' is not the id of an entry in these files")]


async def test_checking_against_a_500_entry_kb_stays_quick(store):
    await store.write([entry(id=f"faq-{i:03d}", question=f"第{i}个问题？", aliases=[f"问法{i}"],
                             related_policies=[f"faq-{(i + 1) % 500:03d}"]) for i in range(500)],
                      actor="seed")
    started = time.perf_counter()
    stored = await StoredKb.load(store)
    checked = check_records(records(*(valid_record("faq", id=f"new-{i:03d}",
                                                   question=f"新问题{i}？", aliases=[f"问法{i}"])
                                      for i in range(500))), stored=stored)
    assert time.perf_counter() - started < 5
    assert len(checked.warnings) == 500 and len(stored.ids) == 500
