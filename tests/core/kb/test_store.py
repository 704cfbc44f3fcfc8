"""KbStore and import_checked on the real database: revisions, conflicts, filters, bulk import."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from core.errors import Conflict, ImportFailed, NotFound
from core.kb.importer import check_records, import_checked
from core.kb.models import ENTRY_TYPES, ID_PATTERN, KbEntryBase, entry_adapter, new_entry_id
from core.kb.store import KbStore
from core.kb.wire import RawRecord
from tests.core.kb.test_models import valid_record


def entry(entry_type: str = "faq", **fields) -> KbEntryBase:
    return entry_adapter.validate_python(valid_record(entry_type, **fields))


def records(*datas: dict) -> list[RawRecord]:
    return [RawRecord("import.jsonl", f"line {i}", d) for i, d in enumerate(datas, 1)]


async def ids(store: KbStore, **filters) -> list[str]:
    return [w["id"] async for w in store.iter_wire(**filters)]


def naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@pytest.fixture
def store(engine) -> KbStore:
    return KbStore(engine)


async def test_write_creates_entries_with_a_first_revision(store):
    a, b = entry(id="a", question="签注要带什么？"), entry("hotline", id="b")
    before = naive_utc(datetime.now(UTC))
    result = await store.write([a, b], actor="alice", note="first load")
    after = naive_utc(datetime.now(UTC))
    assert result.created == ["a", "b"] and not result.updated and not result.unchanged
    assert await store.count() == 2
    assert (await store.get("a")).wire() == a.wire()
    assert await store.version("a") == 1
    [rev] = await store.revisions("a")
    assert (rev.version, rev.action, rev.actor, rev.note) == (1, "create", "alice", "first load")
    assert rev.before is None and rev.after == a.wire()
    assert before.replace(microsecond=0) <= naive_utc(rev.at) <= after


async def test_existing_ids_without_replace_conflict_and_change_nothing(store):
    await store.write([entry(id="a", question="旧问题？")], actor="alice")
    with pytest.raises(Conflict, match="already exist.*a"):
        await store.write([entry(id="a", question="新问题？"), entry(id="c")], actor="bob")
    assert (await store.get("a")).question == "旧问题？"
    assert await store.version("a") == 1 and len(await store.revisions("a")) == 1
    with pytest.raises(NotFound):
        await store.get("c")
    assert await store.count() == 1


async def test_replace_records_old_and_new_values(store):
    old = entry(id="a", answer="<p>旧答案</p>")
    new = entry(id="a", answer="<p>新答案</p>", aliases=["新问法"])
    await store.write([old], actor="alice")
    result = await store.write([new], actor="bob", replace=True)
    assert result.updated == ["a"] and not result.created
    assert await store.version("a") == 2
    assert (await store.get("a")).answer == "<p>新答案</p>"
    v1, v2 = await store.revisions("a")
    assert (v1.version, v2.version, v2.action, v2.actor) == (1, 2, "update", "bob")
    assert v2.before == old.wire() and v2.after == new.wire()
    assert v2.before["answer"] == "<p>旧答案</p>" and "aliases" not in v2.before


async def test_replacing_with_an_identical_entry_makes_no_revision(store):
    await store.write([entry(id="a"), entry(id="b")], actor="alice")
    result = await store.write([entry(id="a"), entry(id="b", question="改了？")], actor="bob",
                               replace=True)
    assert result.unchanged == ["a"] and result.updated == ["b"]
    assert await store.version("a") == 1 and len(await store.revisions("a")) == 1
    assert await store.version("b") == 2


async def test_retiring_an_entry_is_a_revision_and_shows_in_the_export(store):
    await store.write([entry(id="a"), entry(id="b")], actor="alice")
    retired = await store.set_status("a", "retired", actor="carol")
    assert retired.status == "retired"
    last = (await store.revisions("a"))[-1]
    assert (last.version, last.actor) == (2, "carol")
    assert "status" not in last.before and last.after["status"] == "retired"
    exported = {w["id"]: w async for w in store.iter_wire()}
    assert exported["a"]["status"] == "retired" and "status" not in exported["b"]
    assert await store.count(status="retired") == 1
    assert await ids(store, statuses=["published"]) == ["b"]
    # setting the status it already has is no change
    await store.set_status("a", "retired", actor="carol")
    assert await store.version("a") == 2
    await store.set_status("a", "published", actor="carol")
    assert await ids(store, statuses=["published"]) == ["a", "b"]


async def test_iter_wire_filters_by_type_status_and_matter(store):
    await store.write([
        entry(id="d-draft", status="draft"),
        entry("guide", id="c-guide", related_matters=["M03"]),
        entry(id="b-faq", related_matters=["M04"]),
        entry(id="a-faq", related_matters=["M03", "M05"]),
        entry("term", id="e-term", related_matters=["M05"]),
    ], actor="alice")
    assert await ids(store) == ["a-faq", "b-faq", "c-guide", "d-draft", "e-term"]
    assert await ids(store, types=["faq"]) == ["a-faq", "b-faq", "d-draft"]
    assert await ids(store, types=["guide", "term"]) == ["c-guide", "e-term"]
    assert await ids(store, statuses=["draft"]) == ["d-draft"]
    assert await ids(store, matter="M03") == ["a-faq", "c-guide"]
    assert await ids(store, matter="M05") == ["a-faq", "e-term"]
    assert await ids(store, matter="M03", types=["faq"]) == ["a-faq"]
    assert await ids(store, matter="M35") == []


async def test_matter_links_follow_related_matters_on_replace(store):
    await store.write([entry(id="a", related_matters=["M03"])], actor="alice")
    await store.write([entry(id="a", related_matters=["M04", "M05"])], actor="bob", replace=True)
    assert await ids(store, matter="M03") == []
    assert await ids(store, matter="M04") == ["a"] and await ids(store, matter="M05") == ["a"]
    await store.write([entry(id="a")], actor="bob", replace=True)
    assert await ids(store, matter="M04") == [] and await ids(store, matter="M05") == []


async def test_import_with_invalid_records_writes_nothing_unless_told_to_skip(store):
    checked = check_records(records(
        valid_record("faq", id="good"), valid_record("faq", id="bad", region="999999")))
    assert len(checked.problems) == 1
    with pytest.raises(ImportFailed, match="1 of 2 records are invalid") as failure:
        await import_checked(store, checked, actor="alice")
    assert [p[:2] for p in failure.value.problems] == [("import.jsonl:line 2", "region")]
    assert await store.count() == 0
    result, problems = await import_checked(store, checked, actor="alice", skip_invalid=True)
    assert result.created == ["good"] and [p.where for p in problems] == ["import.jsonl:line 2"]
    assert await ids(store) == ["good"]


async def test_import_over_existing_ids_needs_replace(store):
    await store.write([entry(id="a")], actor="alice")
    checked = check_records(records(valid_record("faq", id="a", question="改？"),
                                    valid_record("faq", id="new")))
    with pytest.raises(ImportFailed, match="already in the KB|ids already"):
        await import_checked(store, checked, actor="bob")
    assert await ids(store) == ["a"]
    result, _ = await import_checked(store, checked, actor="bob", replace=True)
    assert (result.created, result.updated) == (["new"], ["a"])


async def test_generated_ids_are_unique_and_kept(store):
    checked = check_records(records(*(valid_record("faq", question=f"问题{i}？") for i in range(3)),
                                    valid_record("term")))
    result, _ = await import_checked(store, checked, actor="alice")
    made = result.created
    assert len(set(made)) == 4 and [e.id for e in checked.entries] == made
    assert all(i.startswith("faq-") for i in made[:3]) and made[3].startswith("term-")
    assert (await store.get(made[1])).question == "问题1？"
    # exporting and importing the export again finds the same entries, unchanged
    exported = [w async for w in store.iter_wire()]
    assert sorted(w["id"] for w in exported) == sorted(made)
    again, _ = await import_checked(store, check_records(records(*exported)), actor="bob",
                                    replace=True)
    assert sorted(again.unchanged) == sorted(made) and not again.created
    assert await store.count() == 4


def test_generated_ids_do_not_collide_in_bulk():
    assert len({new_entry_id("faq") for _ in range(100_000)}) == 100_000
    for entry_type in ENTRY_TYPES:
        assert re.match(ID_PATTERN, new_entry_id(entry_type))


@pytest.mark.slow
async def test_a_ten_thousand_record_import_completes(store):
    datas = (valid_record("faq", question=f"第{i}个问题？", answer=f"<p>答案{i}</p>",
                          related_matters=[f"M{i % 35 + 1:02d}"],
                          **({"id": f"bulk-{i:05d}"} if i % 2 else {}))
             for i in range(10_000))
    checked = check_records(records(*datas))
    assert checked.problems == [] and checked.records == 10_000
    result, problems = await import_checked(store, checked, actor="bulk")
    assert problems == [] and len(result.created) == 10_000
    assert len(set(result.created)) == 10_000
    assert await store.count() == 10_000
    assert len(await ids(store, matter="M01")) == len(range(0, 10_000, 35))
