"""Shared CLI plumbing: the root group and the --config / --data-dir options."""

from __future__ import annotations

import functools
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
        return func(*args, settings=settings, **kwargs)

    return wrapper


def make_settings(config_file: Path | None, overrides: dict[str, Any]) -> Settings:
    settings = load_settings(config_file, overrides=overrides)
    setup_logging(settings.logging.level, settings.logging.mask_personal_data)
    return settings
