"""kb import / export / validate / history."""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path

import click

from ..config import Settings
from ..conversations import SHANGHAI
from ..db import create_engine, upgrade
from ..errors import ImportFailed, NotFound
from ..kb.importer import Checked, StoredKb, check_records, import_checked
from ..kb.models import ENTRY_TYPES, STATUSES
from ..kb.store import KbStore
from ..kb.wire import detect_format, dumps, expand_paths, read_records, write_entries
from ..reference import load_matters
from .common import cli, existing_database, has_database, settings_options

FORMAT_CHOICE = click.Choice(["yaml", "json", "jsonl", "csv"])


@cli.group()
def kb() -> None:
    """Knowledge base: import, export, validate, history."""


def _read_all(paths: tuple[str, ...], fmt: str | None) -> list:
    records = []
    for path in expand_paths(paths):
        records.extend(read_records(path, fmt))
    return records


def _check(paths: tuple[str, ...], fmt: str | None, quiet: bool,
           stored: StoredKb | None) -> Checked:
    records = _read_all(paths, fmt)
    with click.progressbar(length=len(records), label="validating", file=sys.stderr,
                           hidden=quiet or len(records) < 2000) as bar:
        return check_records(records, progress=bar.update, stored=stored)


def _stored(settings: Settings) -> StoredKb | None:
    """The KB of these settings as checking files against it needs, or None when it has no
    database yet (none is created here: a refused import or a validation leaves no trace)."""
    if not has_database(settings):
        return None

    async def run() -> StoredKb:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await StoredKb.load(KbStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _report(checked: Checked, limit: int = 200) -> None:
    for problem in checked.problems[:limit]:
        click.echo(f"  {problem}", err=True)
    if len(checked.problems) > limit:
        click.echo(f"  … and {len(checked.problems) - limit} more", err=True)


def _warn(checked: Checked, limit: int = 200) -> None:
    for warning in checked.warnings[:limit]:
        click.echo(f"  warning: {warning}", err=True)
    if len(checked.warnings) > limit:
        click.echo(f"  … and {len(checked.warnings) - limit} more warnings", err=True)


@kb.command("validate")
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=FORMAT_CHOICE, help="Input format (default: from extension).")
@settings_options
def kb_validate(settings: Settings, paths: tuple[str, ...], fmt: str | None) -> None:
    """Check KB files without importing them.

    PATHS are files (.yaml .json .jsonl .csv) or directories of them. Every invalid record is
    reported with its file, line or entry number, field and reason; the exit status is 1 if any.
    Questions another entry is already asked in, and links to ids that exist nowhere, are
    warnings; they are checked against the KB too when the data dir has one.
    """
    stored = _stored(settings)
    if stored is None:
        click.echo("note: no KB in the data dir: questions and links were checked within these "
                   "files only (--data-dir names the KB to check against)", err=True)
    checked = _check(paths, fmt, quiet=False, stored=stored)
    _report(checked)
    _warn(checked)
    click.echo(f"{checked.records} records, {checked.invalid_records} invalid"
               + (f", {len(checked.warnings)} warnings" if checked.warnings else ""))
    if checked.invalid_records:
        sys.exit(1)


@kb.command("import")
@click.argument("paths", nargs=-1, required=True)
@click.option("--replace", is_flag=True,
              help="Update entries whose id is already in the KB (a revision is kept); "
                   "without it such records are refused.")
@click.option("--skip-invalid", is_flag=True,
              help="Import the valid records and report the others, instead of importing nothing.")
@click.option("--format", "fmt", type=FORMAT_CHOICE, help="Input format (default: from extension).")
@click.option("--actor", default=None, help="Name recorded in the revisions (default: your login).")
@settings_options
def kb_import(settings: Settings, paths: tuple[str, ...], replace: bool, skip_invalid: bool,
              fmt: str | None, actor: str | None) -> None:
    """Import KB records from YAML, JSON, JSONL or CSV files.

    All or nothing: if any record is invalid, nothing is imported and each problem is reported
    with file, line/index, field and reason — unless --skip-invalid. An `id` in the file is
    kept; records without one get a generated id.
    """
    actor = actor or f"cli:{_login()}"
    # no database yet: the import creates an empty one, so there is nothing to clash with
    checked = _check(paths, fmt, quiet=False, stored=_stored(settings) or StoredKb())
    if checked.problems and not skip_invalid:
        _report(checked)
        raise ImportFailed(
            f"{checked.invalid_records} of {checked.records} records are invalid; nothing was "
            "imported (fix them, or use --skip-invalid to import the rest)"
        )

    async def run():
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            store = KbStore(engine)
            with click.progressbar(length=len(checked.entries), label="importing",
                                   file=sys.stderr, hidden=len(checked.entries) < 2000) as bar:
                return await import_checked(store, checked, actor=actor, replace=replace,
                                            skip_invalid=skip_invalid, progress=bar.update)
        finally:
            await engine.dispose()

    result, problems = asyncio.run(run())
    _warn(checked)
    # records, not problems: an invalid record can have several; import_checked adds one
    # problem per record whose id was already taken
    skipped = checked.invalid_records + len(problems) - len(checked.problems)
    if problems:
        click.echo(f"skipped {skipped} invalid or conflicting records:", err=True)
        for p in problems[:200]:
            click.echo(f"  {p}", err=True)
    written = len(result.created) + len(result.updated) + len(result.unchanged)
    click.echo(f"imported {written} records: "
               f"{len(result.created)} created, {len(result.updated)} updated, "
               f"{len(result.unchanged)} unchanged"
               + (f", {skipped} skipped" if problems else ""))


@kb.command("export")
@click.argument("path")
@click.option("--format", "fmt", type=FORMAT_CHOICE,
              help="Output format (default: from the extension; yaml for '-').")
@click.option("--type", "types", multiple=True, type=click.Choice(list(ENTRY_TYPES)),
              help="Only entries of this type (repeatable).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES),
              help="Only entries with this status (repeatable; default: all).")
@click.option("--matter", help="Only entries related to this matter code (e.g. M03).")
@settings_options
def kb_export(settings: Settings, path: str, fmt: str | None, types: tuple[str, ...],
              statuses: tuple[str, ...], matter: str | None) -> None:
    """Write the KB to PATH ('-' for standard output), in a form `kb import` reads back."""
    if matter is not None and matter not in load_matters().by_code():
        # a typo would export nothing, as if the matter had no entries
        raise click.BadParameter(f"{matter!r} is not a known matter (config/matters.yaml)",
                                 param_hint="--matter")
    existing_database(settings)
    out_fmt = fmt or ("yaml" if path == "-" else detect_format(Path(path)))

    async def run() -> list[dict]:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            return [e async for e in KbStore(engine).iter_wire(
                types=types, statuses=statuses, matter=matter)]
        finally:
            await engine.dispose()

    entries = asyncio.run(run())
    if path == "-":
        click.echo(dumps(entries, out_fmt), nl=False)
    else:
        write_entries(Path(path), entries, out_fmt)
        click.echo(f"exported {len(entries)} entries to {path}", err=True)


@kb.command("history")
@click.argument("entry_id")
@settings_options
def kb_history(settings: Settings, entry_id: str) -> None:
    """List the revisions of one entry: version, when (Beijing time), action and who."""
    existing_database(settings)

    async def run():
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await KbStore(engine).revisions(entry_id)
        finally:
            await engine.dispose()

    revisions = asyncio.run(run())
    if not revisions:
        raise NotFound(f"no KB entry {entry_id!r} and no revisions of one")
    for rev in revisions:
        changed = sorted(
            k for k in set(rev.before or {}) | set(rev.after or {})
            if (rev.before or {}).get(k) != (rev.after or {}).get(k)
        )
        at = rev.at.astimezone(SHANGHAI)  # Beijing time, as the console shows it
        click.echo(f"v{rev.version}  {at:%Y-%m-%d %H:%M:%S}+08:00  {rev.action:<7} {rev.actor}"
                   + (f"  [{', '.join(changed)}]" if rev.action == "update" else "")
                   + (f"  {rev.note}" if rev.note else ""))


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a container without /etc/passwd entry
        return "unknown"

