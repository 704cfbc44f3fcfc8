"""The ``bangban`` command line."""

from __future__ import annotations

import sys

import click

from ..errors import BangbanError, ConfigError, ImportFailed
from . import kb as _kb  # noqa: F401 - registers the kb group
from . import bot as _bot  # noqa: F401 - registers ask, kb search, eval
from . import server as _server  # noqa: F401 - registers serve, worker, db
from . import users as _users  # noqa: F401 - registers users add/passwd/disable/enable/list
from . import hotline as _hotline  # noqa: F401 - registers hotline-sim
from . import figures as _figures  # noqa: F401 - registers figures
from .common import cli


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="bangban", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ImportFailed as exc:
        click.echo(f"error: {exc}", err=True)
        for where, field, reason in exc.problems[:200]:
            click.echo(f"  {where}: {field}: {reason}", err=True)
        if len(exc.problems) > 200:
            click.echo(f"  … and {len(exc.problems) - 200} more", err=True)
        sys.exit(1)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except BangbanError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


__all__ = ["cli", "main"]
