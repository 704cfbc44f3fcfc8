"""The bot's knowledge at run time: the published KB, its search index and the intent model.

Built from SQL in a worker thread and swapped in with one attribute assignment, so requests in
flight keep the snapshot they started with. Every process polls a cheap fingerprint of the KB
(entry count and latest modification) and rebuilds when it changes — whichever process or CLI
made the change — so all processes converge within one poll interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import RerankMode
from .db.schema import kb_entries
from .kb.models import KbEntryBase, entry_adapter
from .kb.richtext import html_to_text
from .nlu.agencies import Agencies
from .nlu.names import MatterNames
from .nlu.coverage import Coverage, Licences
from .nlu.index import KbIndex
from .nlu.intent import SklearnIntentClassifier, load_intents
from .nlu.rerank import RerankModel, load_rerank_model
from .nlu.spelling import Spelling
from .nlu.text import Analyzer, normalise
from .reference import load_matters
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """Everything the bot reads, consistent with one state of the KB."""

    index: KbIndex
    intents: SklearnIntentClassifier
    entries: dict[str, KbEntryBase]
    guides: dict[str, KbEntryBase]  # matter code → its first guide
    fingerprint: tuple
    built_at: float
    #: services the KB does not cover, and each entry's whole text to check them against
    coverage: Coverage
    entry_text: dict[str, str]
    #: departments named in a question (人社, 税务), to weigh their matters' entries
    agencies: Agencies
    #: licences the KB never names (药品经营许可证): another department's
    licences: Licences
    #: matters' own names used in a question (居住登记), to weigh that matter's entries
    names: MatterNames

    def outside(self, question: str, entry_id: str) -> str | None:
        """A service the question names that the entry ``entry_id`` never mentions: one of
        config/not_covered.yaml's, or a licence the KB never names."""
        text = self.entry_text.get(entry_id, "")
        listed = self.coverage.outside(question, text)
        if listed is not None:
            return listed
        licence = self.licences.unknown(question)
        return licence if licence is not None and licence not in text else None

    def entry(self, entry_id: str) -> KbEntryBase | None:
        return self.entries.get(entry_id)

    @functools.cached_property
    def spelling(self) -> Spelling:
        """The KB's questions and the intent examples, to read questions typed in pinyin
        (built on the first one: most processes never see one)."""
        texts = [q for e in self.entries.values() if e.type in ("faq", "guide")
                 for q in (e.display_title, *(getattr(e, "aliases", None) or []))]
        spec = self.intents.spec
        for intent in spec.intents.values():
            texts += intent.examples
            texts += [x for c in intent.categories.values() for x in c.examples]
        return Spelling(texts, self.index.analyzer.cut)


def answerable(entries: Sequence[KbEntryBase]) -> list[KbEntryBase]:
    """The bot only ever answers from published, valid entries."""
    return [e for e in entries if e.status == "published" and e.valid == "1"]


def build_snapshot(entries: Sequence[KbEntryBase], fingerprint: tuple = (),
                   rerank: RerankMode = "auto") -> Snapshot:
    """The bot's view of these entries. Identical KB content gives the same (immutable)
    snapshot object from a small per-process cache: several apps in one process, or a
    fingerprint change that left the published entries as they were, cost nothing."""
    entries = answerable(entries)
    digest = hashlib.sha256(json.dumps([rerank, *(e.wire() for e in entries)], ensure_ascii=False,
                                       sort_keys=True).encode()).hexdigest()
    cached = _CACHE.get(digest)
    if cached is not None:
        return dataclasses.replace(cached, fingerprint=fingerprint)
    snapshot = _build(entries, fingerprint, rerank)
    _CACHE[digest] = snapshot
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    return snapshot


_CACHE: dict[str, Snapshot] = {}
_CACHE_SIZE = 4


def kb_analyzer(entries: Sequence[KbEntryBase]) -> Analyzer:
    """The analyzer the bot uses for this KB: synonyms plus its term names and matter names as
    words. `kb search` and `eval --mode retrieval` use it too, so they rank as the bot does."""
    extra_words = [e.display_title for e in entries if e.type == "term"]
    extra_words += [m.name for m in load_matters().matters if len(m.name) <= 12]
    return Analyzer(extra_words=extra_words)


def search_index(entries: Sequence[KbEntryBase], rerank: RerankMode = "auto") -> KbIndex:
    """The bot's search index alone (no intent model), over the answerable entries."""
    entries = answerable(entries)
    return KbIndex(entries, kb_analyzer(entries), rerank=rerank_model_for(entries, rerank))


def rerank_model_for(entries: Sequence[KbEntryBase], mode: RerankMode = "auto"
                     ) -> RerankModel | None:
    """The re-ranker for this KB, or None where it does not help.

    It helps a KB whose questions are each phrased once (an FAQ list as a department keeps
    it): +3 points hit@1 on LCQMC, +1 on AFQMC. On a KB whose entries carry 相似问法, the
    search already takes each entry's best phrasing, and re-ranking cost the seed KB's dev and
    blind sets 0.3–2 points (bench/RESULTS.md). So it runs when fewer than half of the
    question entries have aliases (``kb.rerank: auto``; ``on`` and ``off`` decide outright)."""
    if mode != "auto":
        return load_rerank_model() if mode == "on" else None
    asked = [e for e in entries if e.type in ("faq", "guide")]
    phrased = sum(1 for e in asked if getattr(e, "aliases", None))
    return load_rerank_model() if asked and phrased * 2 < len(asked) else None


def _build(entries: list[KbEntryBase], fingerprint: tuple, rerank: RerankMode) -> Snapshot:
    analyzer = kb_analyzer(entries)
    start = time.perf_counter()
    index = KbIndex(entries, analyzer, rerank=rerank_model_for(entries, rerank))
    questions = [q for e in entries if e.type in ("faq", "guide")
                 for q in (e.display_title, *getattr(e, "aliases", []))]
    intents = SklearnIntentClassifier(analyzer, load_intents(), kb_questions=questions)
    guides: dict[str, KbEntryBase] = {}
    for e in sorted(entries, key=lambda e: e.id or ""):
        if e.type == "guide":
            for m in e.matters:
                guides.setdefault(m, e)
    log.info("knowledge snapshot built: %d entries, %d rows in %.2f s", len(entries),
             len(index.row_text), time.perf_counter() - start)
    matters = load_matters().matters
    departments = {m.code: m.department for m in matters}
    entry_text = {e.id: whole_text(e) for e in entries}
    named = [normalise(w) for c, vs in analyzer.synonyms.items() for w in (c, *vs)]
    return Snapshot(index, intents, {e.id: e for e in entries}, guides, fingerprint,
                    time.time(), Coverage.load(), entry_text,
                    Agencies.load(index.entries, departments),
                    Licences([*entry_text.values(), *named], analyzer.cut),
                    MatterNames(index.entries, {m.code: m.name for m in matters}))


def whole_text(entry: KbEntryBase) -> str:
    """Everything an entry says (title, aliases, every searched field in full), normalised."""
    parts = [entry.display_title, *(getattr(entry, "aliases", None) or [])]
    parts += [html_to_text(str(v)) for name in entry.search_fields
              if (v := getattr(entry, name, None))]
    return normalise(" ".join(parts))


async def kb_fingerprint(engine: AsyncEngine) -> tuple:
    async with engine.connect() as conn:
        row = (await conn.execute(select(func.count(), func.max(kb_entries.c.modified_at),
                                         func.sum(kb_entries.c.version)))).one()
    return (int(row[0]), str(row[1]), int(row[2] or 0))


async def load_entries(engine: AsyncEngine) -> list[KbEntryBase]:
    q = select(kb_entries.c.data).where(kb_entries.c.status == "published",
                                        kb_entries.c.valid == "1")
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [entry_adapter.validate_python(r.data) for r in rows]


class Knowledge:
    """Holds the current snapshot and keeps it fresh."""

    def __init__(self, engine: AsyncEngine, poll_interval: float = 5.0,
                 rerank: RerankMode = "auto") -> None:
        self.engine = engine
        self.poll_interval = poll_interval
        self.rerank = rerank
        self._snapshot: Snapshot | None = None
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("knowledge not loaded yet (call start())")
        return self._snapshot

    async def refresh(self, *, force: bool = False) -> bool:
        """Rebuild if the KB changed; True when a new snapshot was swapped in."""
        async with self._lock:
            fp = await kb_fingerprint(self.engine)
            if not force and self._snapshot is not None and self._snapshot.fingerprint == fp:
                return False
            entries = await load_entries(self.engine)
            snapshot = await asyncio.to_thread(build_snapshot, entries, fp, self.rerank)
            self._snapshot = snapshot  # the atomic swap
            return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except Exception:  # keep serving the old snapshot; try again next interval
                log.exception("knowledge refresh failed; still serving the previous snapshot")

    async def start(self) -> None:
        await self.refresh(force=True)
        if self.poll_interval > 0:
            self._task = asyncio.create_task(self._poll(), name="knowledge-refresh")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
