"""The KB's system of record in SQL: entries, their matter links, and a revision per change."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..db.schema import kb_entries, kb_entry_matters, kb_revisions
from ..errors import Conflict, NotFound
from .models import KbEntry, KbEntryBase, Status, entry_adapter, new_entry_id

#: rows per INSERT batch; keeps PostgreSQL's bind-parameter limit far away
_BATCH = 500


class Revision(BaseModel):
    entry_id: str
    version: int
    action: str
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    note: str | None = None


#: the types citizens' questions are matched against by title and aliases
PHRASED_TYPES = ("faq", "guide")


@dataclass(frozen=True, slots=True)
class Outline:
    id: str
    #: the words it is asked in (title, then aliases): guides and FAQs the bot answers from, or
    #: may once published; empty for other types and for retired or invalid entries
    phrasings: tuple[str, ...] = ()


@dataclass
class WriteResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


def _row(entry: KbEntryBase, wire: dict[str, Any], version: int, now: datetime) -> dict[str, Any]:
    return {
        "id": entry.id,
        "type": entry.type,
        "kb_class": entry.kb_class,
        "status": entry.status,
        "valid": entry.valid,
        "region": getattr(entry, "region", None),
        "title": entry.display_title,
        "published_by": entry.published_by,
        "updated_by": entry.updated_by,
        "updated_at": entry.updated_at,
        "data": wire,
        "version": version,
        "modified_at": now,
    }


class KbStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- reads --------------------------------------------------------------------------------
    async def count(self, *, status: Status | None = None) -> int:
        q = select(func.count()).select_from(kb_entries)
        if status:
            q = q.where(kb_entries.c.status == status)
        async with self.engine.connect() as conn:
            return (await conn.execute(q)).scalar_one()

    async def get(self, entry_id: str) -> KbEntryBase:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(kb_entries.c.data).where(kb_entries.c.id == entry_id)
            )).first()
        if row is None:
            raise NotFound(f"no KB entry {entry_id!r}")
        return entry_adapter.validate_python(row.data)

    async def version(self, entry_id: str) -> int:
        async with self.engine.connect() as conn:
            v = (await conn.execute(
                select(kb_entries.c.version).where(kb_entries.c.id == entry_id)
            )).scalar()
        if v is None:
            raise NotFound(f"no KB entry {entry_id!r}")
        return v

    async def existing_ids(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        async with self.engine.connect() as conn:
            for i in range(0, len(ids), _BATCH):
                chunk = ids[i : i + _BATCH]
                rows = await conn.execute(select(kb_entries.c.id).where(kb_entries.c.id.in_(chunk)))
                found.update(r.id for r in rows)
        return found

    async def outlines(self) -> list[Outline]:
        """Every entry, as far as checking files against the KB needs it (no validation of the
        stored records: a 500-entry KB is two queries)."""
        asked = (kb_entries.c.type.in_(PHRASED_TYPES) & (kb_entries.c.status != "retired")
                 & (kb_entries.c.valid == "1"))
        async with self.engine.connect() as conn:
            ids = (await conn.execute(select(kb_entries.c.id))).scalars().all()
            rows = (await conn.execute(
                select(kb_entries.c.id, kb_entries.c.title, kb_entries.c.data).where(asked)
            )).all()
        phrased = {r.id: (r.title, *((r.data or {}).get("aliases") or ())) for r in rows}
        return [Outline(i, phrased.get(i, ())) for i in ids]

    async def iter_wire(
        self, *, types: Sequence[str] | None = None, statuses: Sequence[str] | None = None,
        matter: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Stored records in their wire form, ordered by id (so exports are deterministic)."""
        q = select(kb_entries.c.data).order_by(kb_entries.c.id)
        if types:
            q = q.where(kb_entries.c.type.in_(list(types)))
        if statuses:
            q = q.where(kb_entries.c.status.in_(list(statuses)))
        if matter:
            q = q.where(kb_entries.c.id.in_(
                select(kb_entry_matters.c.entry_id).where(kb_entry_matters.c.matter == matter)
            ))
        async with self.engine.connect() as conn:
            result = await conn.stream(q)
            async for row in result:
                yield row.data

    async def revisions(self, entry_id: str) -> list[Revision]:
        q = select(kb_revisions).where(kb_revisions.c.entry_id == entry_id).order_by(
            kb_revisions.c.version, kb_revisions.c.id
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [Revision.model_validate(dict(r)) for r in rows]

    # -- writes -------------------------------------------------------------------------------
    async def write(
        self, entries: Sequence[KbEntryBase], *, actor: str, replace: bool = False,
        note: str | None = None, progress=None,
    ) -> WriteResult:
        """Create or (with ``replace``) update entries in one transaction, a revision each.

        Without ``replace`` an id that already exists is a :class:`Conflict` and nothing is
        written. An entry identical to the stored one is left alone (no empty revision).
        """
        result = WriteResult()
        now = _now()
        for entry in entries:
            if entry.id is None:
                entry.id = new_entry_id(entry.type)
        async with self.engine.begin() as conn:
            current = await self._current(conn, [e.id for e in entries])
            if current and not replace:
                sample = ", ".join(sorted(current)[:5])
                raise Conflict(
                    f"{len(current)} entr{'y' if len(current) == 1 else 'ies'} already exist "
                    f"({sample}{' …' if len(current) > 5 else ''}); use --replace to update them"
                )
            new_rows, upd_rows, revs, links, unlink = [], [], [], [], []
            for entry in entries:
                wire = entry.wire()
                old = current.get(entry.id)
                if old is None:
                    new_rows.append(_row(entry, wire, 1, now))
                    revs.append(self._rev(entry.id, 1, "create", actor, now, None, wire, note))
                    result.created.append(entry.id)
                elif old[1] == wire:
                    result.unchanged.append(entry.id)
                    continue
                else:
                    version = old[0] + 1
                    row = _row(entry, wire, version, now)
                    row["b_id"] = row.pop("id")
                    upd_rows.append(row)
                    revs.append(self._rev(entry.id, version, "update", actor, now, old[1], wire, note))
                    unlink.append(entry.id)
                    result.updated.append(entry.id)
                links.extend({"entry_id": entry.id, "matter": m} for m in entry.matters)
                if progress and len(revs) % _BATCH == 0:
                    progress(_BATCH)
            await self._delete_links(conn, unlink)
            for rows, stmt in (
                (new_rows, insert(kb_entries)),
                (upd_rows, update(kb_entries).where(kb_entries.c.id == bindparam("b_id"))),
                (links, insert(kb_entry_matters)),
                (revs, insert(kb_revisions)),
            ):
                for i in range(0, len(rows), _BATCH):
                    await conn.execute(stmt, rows[i : i + _BATCH])
        if progress:
            progress(len(entries) % _BATCH)
        return result

    async def set_status(
        self, entry_id: str, status: Status, *, actor: str, note: str | None = None
    ) -> KbEntryBase:
        """Publish, retire (下架) or return an entry to draft, keeping a revision."""
        entry = await self.get(entry_id)
        if entry.status == status:
            return entry
        changed = entry.model_copy(update={"status": status})
        await self.write([changed], actor=actor, replace=True, note=note or f"status → {status}")
        return changed

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    async def _current(conn: AsyncConnection, ids: list[str]) -> dict[str, tuple[int, dict]]:
        found: dict[str, tuple[int, dict]] = {}
        for i in range(0, len(ids), _BATCH):
            chunk = ids[i : i + _BATCH]
            rows = await conn.execute(
                select(kb_entries.c.id, kb_entries.c.version, kb_entries.c.data).where(
                    kb_entries.c.id.in_(chunk)
                )
            )
            found.update({r.id: (r.version, r.data) for r in rows})
        return found

    @staticmethod
    async def _delete_links(conn: AsyncConnection, ids: list[str]) -> None:
        for i in range(0, len(ids), _BATCH):
            await conn.execute(
                delete(kb_entry_matters).where(kb_entry_matters.c.entry_id.in_(ids[i : i + _BATCH]))
            )

    @staticmethod
    def _rev(entry_id, version, action, actor, at, before, after, note) -> dict[str, Any]:
        return {"entry_id": entry_id, "version": version, "action": action, "actor": actor,
                "at": at, "before": before, "after": after, "note": note}


def parse_entry(data: dict[str, Any]) -> KbEntry:
    return entry_adapter.validate_python(data)
