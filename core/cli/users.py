"""users add / passwd / disable / enable / list: staff accounts of the console."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from ..config import Settings
from ..conversations import SHANGHAI
from ..db import create_engine, upgrade
from ..errors import ValidationFailed
from ..staff import MIN_PASSWORD_LENGTH, ROLES, NewStaffUser, StaffStore, StaffUser, check_password
from .common import cli, settings_options

T = TypeVar("T")

PASSWORD_STDIN_HELP = ("Read the password from the first line of standard input instead of "
                       "prompting for it (for scripts: echo \"$PW\" | bangban users …).")


@cli.group()
def users() -> None:
    """Staff accounts of the console: add, passwd, disable, enable, list.

    Roles: agent (坐席), supervisor (班长), kb_editor (知识库编辑), admin (管理员). Units are
    department codes of config/codes.yaml (e.g. police, hrss, district-310115); agents and
    supervisors need at least one. Passwords are stored as argon2id hashes and must have at
    least 10 characters.
    """


def _run(settings: Settings, work: Callable[[StaffStore], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await work(StaffStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _checked(username: str) -> Callable[[str], str]:
    def check(password: str) -> str:
        try:
            check_password(password, username)
        except ValidationFailed as exc:
            raise click.UsageError(str(exc)) from None  # click.prompt asks again
        return password

    return check


def _read_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: standard input held no password")
        check_password(password, username)
        return password
    if not sys.stdin.isatty():
        raise click.UsageError("no terminal to ask for the password on; "
                               "pipe it in with --password-stdin")
    return click.prompt(f"Password for {username} (at least {MIN_PASSWORD_LENGTH} characters)",
                        hide_input=True, confirmation_prompt="Repeat the password",
                        value_proc=_checked(username))


def _describe(user: StaffUser) -> str:
    return (f"{user.username} ({user.display_name}): roles {', '.join(user.roles)}; "
            f"units {', '.join(user.units) or '-'}")


@users.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLES),
              help="A role of the user; repeatable (e.g. --role agent --role supervisor).")
@click.option("--unit", "units", multiple=True, metavar="CODE",
              help="A unit the user works for: a department code of config/codes.yaml "
                   "(e.g. police, district-310115); repeatable. Agents and supervisors need one.")
@click.option("--name", "display_name", help="Name shown in the console (default: USERNAME).")
@click.option("--password-stdin", is_flag=True, help=PASSWORD_STDIN_HELP)
@settings_options
def users_add(settings: Settings, username: str, roles: tuple[str, ...], units: tuple[str, ...],
              display_name: str | None, password_stdin: bool) -> None:
    """Create a staff account USERNAME (lower-case letters, digits, '.', '_', '-').

    The password is asked twice on the terminal, or read from standard input with
    --password-stdin.
    """
    # validate everything else before asking for a password
    new = NewStaffUser.create(username, roles=roles, units=units, display_name=display_name)
    if new.username != username:
        click.echo(f"note: user names are lower case; this one signs in as {new.username!r}",
                   err=True)
    password = _read_password(new.username, password_stdin)
    user = _run(settings, lambda store: store.add_user(
        new.username, password, roles=new.roles, units=new.units,
        display_name=new.display_name))
    click.echo(f"added {_describe(user)}")


@users.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help=PASSWORD_STDIN_HELP)
@settings_options
def users_passwd(settings: Settings, username: str, password_stdin: bool) -> None:
    """Set a new password for USERNAME; the user's open sessions are signed out."""
    _run(settings, lambda store: store.get_user(username))  # unknown user: fail before asking
    password = _read_password(username.strip().lower(), password_stdin)
    user = _run(settings, lambda store: store.set_password(username, password))
    click.echo(f"password of {user.username} changed; their sessions were signed out")


@users.command("disable")
@click.argument("username")
@settings_options
def users_disable(settings: Settings, username: str) -> None:
    """Stop USERNAME from signing in and sign out their sessions (the account is kept).

    Unlike the admin page, this may disable the last admin: it is the operator's tool on the
    server, which can always undo it ('bangban users enable')."""
    user = _run(settings, lambda store: store.disable(username))
    click.echo(f"disabled {user.username}; their sessions were signed out")
    if not any(u.active and u.has_role("admin")
               for u in _run(settings, lambda store: store.list_users())):
        click.echo(f"warning: no active admin is left to manage accounts in the console; "
                   f"'bangban users enable {user.username}' restores access", err=True)


@users.command("enable")
@click.argument("username")
@settings_options
def users_enable(settings: Settings, username: str) -> None:
    """Let a disabled USERNAME sign in again."""
    user = _run(settings, lambda store: store.enable(username))
    click.echo(f"enabled {user.username}")


@users.command("list")
@settings_options
def users_list(settings: Settings) -> None:
    """List the staff accounts: username, status, roles, units, last sign-in, name."""
    accounts = _run(settings, lambda store: store.list_users())
    if not accounts:
        click.echo("no staff users (add one with: bangban users add USERNAME --role admin)",
                   err=True)
        return
    width = max(len(u.username) for u in accounts)
    for u in accounts:
        last = (f"{u.last_login_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M%z}" if u.last_login_at
                else "never")
        click.echo(f"{u.username:<{width}}  {'active' if u.active else 'disabled':<8}  "
                   f"roles={','.join(u.roles)}  units={','.join(u.units) or '-'}  "
                   f"last_login={last}  name={u.display_name}")
