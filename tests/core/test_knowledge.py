"""Knowledge: the bot's snapshot follows the KB in SQL, swapped in whole on refresh()."""

from __future__ import annotations

import functools

import pytest

from core.config import BotSettings
from core.dialog.bot import Bot, BotReply, Context
from core.kb.importer import check_files
from core.kb.models import KbEntryBase, entry_adapter
from core.kb.store import KbStore
from core.knowledge import Knowledge, Snapshot
from core.paths import config_dir

NEW_QUESTION = "护照怎么办理"
NEW_FAQ = {
    "id": "faq-passport-01",
    "type": "faq",
    "question": "在上海怎么办理普通护照？",
    "aliases": ["护照怎么办理", "第一次办护照去哪里", "办护照要带什么"],
    "answer": "<p>可在“随申办”预约后，携带本人身份证到任一出入境接待大厅申请普通护照。</p>",
    "region": "310000",
    "published_at": "2026-01-05 09:00:00",
    "published_by": "police",
    "updated_at": "2026-01-05 09:00:00",
    "updated_by": "police",
    "valid": "1",
}
RETIRED = "M34-faq-01"


@functools.cache
def seed() -> tuple[KbEntryBase, ...]:
    return tuple(check_files([config_dir() / "kb"]).entries)


def ask(snapshot: Snapshot, text: str) -> BotReply:
    return Bot(lambda: snapshot, BotSettings()).respond(text, Context())


@pytest.fixture
async def kb(engine) -> KbStore:
    store = KbStore(engine)
    await store.write(list(seed()), actor="test")
    return store


@pytest.fixture
async def knowledge(engine, kb) -> Knowledge:
    k = Knowledge(engine, poll_interval=0)
    await k.start()
    yield k
    await k.stop()


async def test_an_unchanged_kb_is_not_rebuilt(knowledge):
    before = knowledge.snapshot
    assert await knowledge.refresh() is False
    assert knowledge.snapshot is before


async def test_a_new_faq_is_answered_after_refresh_and_the_old_snapshot_is_untouched(
        knowledge, kb):
    old = knowledge.snapshot
    live = Bot(lambda: knowledge.snapshot, BotSettings())  # as the app wires it
    assert live.respond(NEW_QUESTION, Context()).action == "fallback"

    await kb.write([entry_adapter.validate_python(NEW_FAQ)], actor="editor")
    # until the refresh the bot keeps serving the snapshot it has
    assert live.respond(NEW_QUESTION, Context()).action == "fallback"
    assert await knowledge.refresh() is True
    assert live.respond(NEW_QUESTION, Context()).meta.entry_id == NEW_FAQ["id"]

    new = knowledge.snapshot
    assert new is not old
    reply = ask(new, NEW_QUESTION)
    assert reply.action == "answer" and reply.meta.entry_id == NEW_FAQ["id"], reply
    assert "出入境" in reply.text
    # a request that took its snapshot before the refresh still runs on the old KB, unchanged
    assert NEW_FAQ["id"] not in old.entries
    assert ask(old, NEW_QUESTION).action == "fallback"
    # and nothing more to do until the KB changes again
    assert await knowledge.refresh() is False


async def test_a_retired_entry_is_no_longer_answered_after_refresh(knowledge, kb):
    question = "个税清单怎么开"
    old = knowledge.snapshot
    assert ask(old, question).meta.entry_id == RETIRED

    await kb.set_status(RETIRED, "retired", actor="editor")
    assert await knowledge.refresh() is True

    assert RETIRED not in knowledge.snapshot.entries
    reply = ask(knowledge.snapshot, question)
    assert reply.meta.entry_id != RETIRED and RETIRED not in reply.meta.suggestions
    # the snapshot in use before the refresh was not modified in place
    assert RETIRED in old.entries and ask(old, question).meta.entry_id == RETIRED


async def test_snapshot_before_start_is_an_error(engine):
    with pytest.raises(RuntimeError):
        Knowledge(engine, poll_interval=0).snapshot
