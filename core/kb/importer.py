"""Validating and importing KB files: all or nothing, unless told to skip invalid records.

Besides each record's own validity, the files are checked as a whole and, given the KB they go
into, against it: a question two entries are asked in, and a link to an entry that exists
nowhere, are warnings (reported, never refused).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..errors import Conflict, ImportFailed
from .models import KbEntryBase, entry_adapter
from .store import PHRASED_TYPES, KbStore, WriteResult
from .wire import RawRecord, _Unparsable, expand_paths, read_records


@dataclass(frozen=True, slots=True)
class Problem:
    where: str    # file:line or file:entry N
    field: str    # the field at fault, or "-" for the record as a whole
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.reason}"


@dataclass
class Checked:
    entries: list[KbEntryBase] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    records: int = 0
    invalid_records: int = 0
    #: valid, but worth an operator's look (a phrasing two entries claim, a link to no entry);
    #: never refuses
    warnings: list[Problem] = field(default_factory=list)


#: relations that name other KB entries (the seed's 政策/项目/文章编码); related_services names a
#: service of the 一网通办 service catalogue (服务编码), which the KB does not hold
LINK_FIELDS = ("related_policies", "related_projects", "related_articles",
               "prerequisite_projects")


@dataclass(frozen=True)
class StoredKb:
    """The KB files are checked against: every id, and who is asked in which words."""

    ids: frozenset[str] = frozenset()
    #: phrasing key → ids of the stored guides and FAQs asked in those words
    phrasings: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    async def load(cls, store: KbStore) -> StoredKb:
        phrasings: dict[str, tuple[str, ...]] = {}
        outlines = await store.outlines()
        for outline in outlines:
            for key in dict.fromkeys(phrasing_key(t) for t in outline.phrasings):
                if key:
                    phrasings[key] = (*phrasings.get(key, ()), outline.id)
        return cls(frozenset(o.id for o in outlines), phrasings)


def _explain(record: RawRecord, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        # drop the discriminator tag pydantic puts first ("faq", "function-after[...]")
        if loc and (loc[0] == record.data.get("type") or "[" in loc[0]):
            loc = loc[1:]
        name = ".".join(loc) or "-"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            reason = "required field is missing"
        elif err["type"] == "extra_forbidden":
            reason = f"unknown field for type {record.data.get('type')!r}"
        elif err["type"] == "union_tag_invalid":
            name, reason = "type", f"unknown type {record.data.get('type')!r}"
        elif err["type"] == "union_tag_not_found":
            name, reason = "type", "required field is missing"
        problems.append(Problem(record.locator, name, reason))
    return problems


def check_records(
    records: Iterable[RawRecord], *, context: dict | None = None,
    progress: Callable[[int], None] | None = None, stored: StoredKb | None = None,
) -> Checked:
    """Validate ``records``; with ``stored`` (the KB they go into) also warn of questions and
    links that clash with it. Without it, links are checked within the records only."""
    out = Checked()
    seen: dict[str, str] = {}
    phrasings: dict[str, tuple[str, str]] = {}  # phrasing key → (entry, where first)
    located: list[tuple[KbEntryBase, str]] = []
    for record in records:
        out.records += 1
        if progress:
            progress(1)
        if isinstance(record.data, _Unparsable):
            out.problems.append(Problem(record.locator, "-", record.data.reason))
            out.invalid_records += 1
            continue
        if not isinstance(record.data, dict):
            out.problems.append(Problem(record.locator, "-", "an entry must be a mapping of fields"))
            out.invalid_records += 1
            continue
        try:
            entry = entry_adapter.validate_python(record.data, context=context)
        except ValidationError as exc:
            out.problems.extend(_explain(record, exc))
            out.invalid_records += 1
            continue
        if entry.id is not None:
            if entry.id in seen:
                out.problems.append(Problem(
                    record.locator, "id", f"duplicate id {entry.id!r} (first at {seen[entry.id]})"
                ))
                out.invalid_records += 1
                continue
            seen[entry.id] = record.locator
        out.entries.append(entry)
        located.append((entry, record.locator))
        _claim_phrasings(entry, record.locator, phrasings, out.warnings)
    if stored is not None:
        _clashes_with_stored(located, stored, out.warnings)
    _dangling_links(located, stored, out.warnings)
    return out


def phrasing_key(text: str) -> str:
    """A question as the search sees it: NFKC, lower case, no punctuation or spaces (core.nlu
    is not imported here: it brings jieba, and `bangban kb validate` should start at once)."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).lower() if ch.isalnum())


def _claim_phrasings(entry: KbEntryBase, where: str, claimed: dict[str, tuple[str, str]],
                     warnings: list[Problem]) -> None:
    """Warn when a question or alias is already another entry's: asked in those words, the
    bot can only pick one of them by chance (M32's guide and FAQ both had 变更财务负责人)."""
    name = entry.id or where
    for key, text, field_name in _phrasings(entry):
        owner = claimed.setdefault(key, (name, where))
        if owner[0] != name:
            warnings.append(Problem(where, field_name,
                                    f"{text!r} is also a question of {owner[0]} ({owner[1]}): "
                                    "keep it on the entry that answers it"))


def _phrasings(entry: KbEntryBase) -> list[tuple[str, str, str]]:
    """(key, text, field) of each different way a guide or FAQ is asked, title first; nothing
    for the other types."""
    if entry.type not in PHRASED_TYPES:
        return []
    found: dict[str, tuple[str, str, str]] = {}
    texts = [(entry.display_title, "title"),
             *((a, "aliases") for a in getattr(entry, "aliases", None) or [])]
    for text, field_name in texts:
        key = phrasing_key(text)
        if key and key not in found:
            found[key] = (key, text, field_name)
    return list(found.values())


def _clashes_with_stored(located: list[tuple[KbEntryBase, str]], stored: StoredKb,
                         warnings: list[Problem]) -> None:
    """Warn of a question the KB already has under another id: the two entries would tie in
    search, and the bot pick one by chance. A stored entry that the files replace is not a
    rival: the file's version supersedes it, and was compared with the other files already."""
    replaced = {entry.id for entry, _ in located if entry.id}
    for entry, where in located:
        for key, text, field_name in _phrasings(entry):
            rivals = [i for i in stored.phrasings.get(key, ())
                      if i != entry.id and i not in replaced]
            if rivals:
                warnings.append(Problem(where, field_name,
                                        f"{text!r} is also a question of {', '.join(rivals)} "
                                        "in the KB: keep it on the entry that answers it"))


def _dangling_links(located: list[tuple[KbEntryBase, str]], stored: StoredKb | None,
                    warnings: list[Problem]) -> None:
    """Warn of a relation naming an id that is neither in the files nor (given) in the KB: a
    typo, or an entry not imported yet, would otherwise link to nothing unnoticed."""
    known = {entry.id for entry, _ in located if entry.id} | (stored.ids if stored else set())
    nowhere = "these files or the KB" if stored is not None else "these files"
    for entry, where in located:
        for field_name in LINK_FIELDS:
            for target in getattr(entry, field_name, None) or ():
                if target not in known:
                    warnings.append(Problem(where, field_name,
                                            f"{target!r} is not the id of an entry in {nowhere}"))


def check_files(paths: Iterable[str | Path], *, fmt: str | None = None, context=None,
                progress=None, stored: StoredKb | None = None) -> Checked:
    def records():
        for path in expand_paths(paths):
            yield from read_records(path, fmt)

    return check_records(records(), context=context, progress=progress, stored=stored)


async def import_checked(
    store: KbStore, checked: Checked, *, actor: str, replace: bool = False,
    skip_invalid: bool = False, progress=None,
) -> tuple[WriteResult, list[Problem]]:
    """Write what ``checked`` holds. Refuses (ImportFailed) on any problem unless skip_invalid."""
    problems = list(checked.problems)
    entries = checked.entries
    if problems and not skip_invalid:
        raise ImportFailed(
            f"{checked.invalid_records} of {checked.records} records are invalid; nothing was "
            "imported (fix them, or use --skip-invalid to import the rest)",
            [(p.where, p.field, p.reason) for p in problems],
        )
    if not replace:
        taken = await store.existing_ids(e.id for e in entries if e.id)
        if taken:
            conflicts = [Problem(f"id {i}", "id", "already in the KB (use --replace to update it)")
                         for i in sorted(taken)]
            if not skip_invalid:
                raise ImportFailed(
                    f"{len(taken)} records have ids already in the KB; nothing was imported "
                    "(use --replace to update them)",
                    [(p.where, p.field, p.reason) for p in conflicts],
                )
            problems.extend(conflicts)
            entries = [e for e in entries if e.id not in taken]
    try:
        result = await store.write(entries, actor=actor, replace=replace, progress=progress)
    except Conflict as exc:  # a concurrent writer took an id between our check and the write
        raise ImportFailed(str(exc)) from exc
    return result, problems
