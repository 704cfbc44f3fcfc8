"""Shared CLI plumbing: the root group and the --config / --data-dir options."""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..config import Settings, load_settings
from ..logging import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bangban")
def cli() -> None:
    """帮办 Bangban — a multichannel help desk for government services.

    Run `bangban serve` to start the service with its embedded defaults (SQLite and a private
    Redis under ./var), or point it at PostgreSQL and Redis with BANGBAN_DATABASE_URL and
    BANGBAN_REDIS_URL. Every command takes --help.
    """


def settings_options(func):
    """Adds --config and --data-dir and passes the loaded Settings as ``settings``."""

    @click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                  help="YAML file with settings that override config/default.yaml "
                       "(also BANGBAN_CONFIG).")
    @click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                  help="Where the SQLite file and the embedded Redis live "
                       "(default ./var; also BANGBAN_DATA_DIR).")
    @functools.wraps(func)
    def wrapper(*args: Any, config_file: Path | None, data_dir: Path | None, **kwargs: Any):
        overrides = {"data_dir": str(data_dir)} if data_dir else {}
        settings = make_settings(config_file, overrides)
        ctx = click.get_current_context(silent=True)
        if ctx is not None:  # for commands whose jobs load settings themselves (worker)
            ctx.meta[GIVEN] = {"BANGBAN_CONFIG": config_file, "BANGBAN_DATA_DIR": data_dir}
        return func(*args, settings=settings, **kwargs)

    return wrapper


#: click context key: the --config and --data-dir a command was given, as environment variables
GIVEN = "bangban.settings_given"


def export_given_settings() -> None:
    """Put this command's --config and --data-dir into the environment, as absolute paths.

    A job enqueued without settings (12345 delivery, channel pushes) loads them as any process
    does, from ``BANGBAN_CONFIG`` / ``BANGBAN_DATA_DIR``: without this, ``bangban worker
    --config site.yaml`` ran its jobs on the defaults (a SQLite file under ./var, created
    empty on the spot) and every delivery failed."""
    ctx = click.get_current_context(silent=True)
    for name, value in ((ctx.meta.get(GIVEN) if ctx else None) or {}).items():
        if value is not None:
            os.environ[name] = str(Path(value).resolve())


def has_database(settings: Settings) -> bool:
    """An external database, or the embedded SQLite file already in the data dir."""
    return bool(settings.database.url) or (
        Path(settings.data_dir).resolve() / "bangban.db").exists()


def existing_database(settings: Settings) -> None:
    """For commands that only read: the database they read must exist.

    In the default data dir (no --data-dir, no BANGBAN_DATA_DIR) a missing one is set up as
    ``bangban serve`` sets it up on its first run, seed KB included, so ``bangban ask`` and
    ``bangban eval`` work on a fresh checkout. A data dir that was named but holds no database
    is far more often a typo than an empty deployment: refused, and nothing is created there.
    """
    if has_database(settings):
        return
    db = Path(settings.data_dir).resolve() / "bangban.db"
    ctx = click.get_current_context(silent=True)
    named = (ctx and (ctx.meta.get(GIVEN) or {}).get("BANGBAN_DATA_DIR")) \
        or os.environ.get("BANGBAN_DATA_DIR")
    if named:
        raise click.ClickException(
            f"no database in {db.parent} (is --data-dir right? 'bangban kb import' or "
            "'bangban serve' creates one there)")
    asyncio.run(_first_run(settings))
    click.echo(f"note: first run: created {db} with the seed knowledge base", err=True)


async def _first_run(settings: Settings) -> None:
    from ..db import create_engine, upgrade
    from ..kb.seed import load_seed_if_empty
    from ..kb.store import KbStore

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        await load_seed_if_empty(KbStore(engine), settings.kb_seed_dir)
    finally:
        await engine.dispose()


def make_settings(config_file: Path | None, overrides: dict[str, Any]) -> Settings:
    settings = load_settings(config_file, overrides=overrides)
    setup_logging(settings.logging.level, settings.logging.mask_personal_data)
    return settings
