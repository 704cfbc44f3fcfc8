"""``bangban users …`` through the installed console script, as an operator runs it."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from core.db import create_engine
from core.staff import StaffStore
from tests.conftest import bangban_executable

from .conftest import CLI_TIMEOUT_S, Store, clean_env, ok, output

PASSWORD = "correct horse battery"


def users(store: Store, *args: object, stdin: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    """``bangban users ARGS… --data-dir DIR``, with ``stdin`` piped in."""
    return subprocess.run(
        [bangban_executable(), "users", *map(str, args), "--data-dir", str(store.data_dir)],
        input=stdin if stdin is not None else "", env=clean_env(store.env), cwd=store.cwd,
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )


def authenticate(store: Store, username: str, password: str):
    """What the console would make of this sign-in, on the database the CLI wrote."""
    url = store.env.get("BANGBAN_DATABASE_URL") or \
        f"sqlite+aiosqlite:///{store.data_dir.resolve() / 'bangban.db'}"

    async def run():
        engine = create_engine(url)
        try:
            return await StaffStore(engine).authenticate(username, password)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def listed(store: Store) -> dict[str, str]:
    lines = ok(users(store, "list")).stdout.splitlines()
    return {line.split()[0]: line for line in lines}


def test_add_list_passwd_disable(store: Store):
    added = ok(users(store, "add", "ZhangSan", "--role", "agent", "--unit", "police",
                     "--unit", "district-310115", "--name", "张三", "--password-stdin",
                     stdin=PASSWORD + "\n"))
    assert "added zhangsan (张三)" in added.stdout
    assert "signs in as 'zhangsan'" in added.stderr  # told, not silently lower-cased
    assert PASSWORD not in added.stdout + added.stderr
    ok(users(store, "add", "admin1", "--role", "admin", "--password-stdin", stdin=PASSWORD))

    rows = listed(store)
    assert list(rows) == ["admin1", "zhangsan"]
    assert "active" in rows["zhangsan"] and "roles=agent" in rows["zhangsan"]
    assert "units=police,district-310115" in rows["zhangsan"] and "name=张三" in rows["zhangsan"]
    assert "last_login=never" in rows["zhangsan"]
    assert authenticate(store, "zhangsan", PASSWORD) is not None
    assert "last_login=never" not in listed(store)["zhangsan"]

    changed = ok(users(store, "passwd", "zhangsan", "--password-stdin",
                       stdin="a brand new passphrase\n"))
    assert "password of zhangsan changed" in changed.stdout
    assert authenticate(store, "zhangsan", PASSWORD) is None
    assert authenticate(store, "zhangsan", "a brand new passphrase") is not None

    assert "disabled zhangsan" in ok(users(store, "disable", "zhangsan")).stdout
    assert "disabled" in listed(store)["zhangsan"]
    assert authenticate(store, "zhangsan", "a brand new passphrase") is None
    ok(users(store, "enable", "zhangsan"))
    assert authenticate(store, "zhangsan", "a brand new passphrase") is not None
    assert "no active admin" not in users(store, "disable", "zhangsan").stderr

    # the operator may disable the last admin (and undo it), but is told what that means
    last = ok(users(store, "disable", "admin1"))
    assert "no active admin is left" in last.stderr and "users enable admin1" in last.stderr


def test_a_bad_role_is_refused_by_name_before_anything_is_written(store: Store):
    result = users(store, "add", "zhangsan", "--role", "boss", "--unit", "police",
                   "--password-stdin", stdin=PASSWORD)
    assert result.returncode == 2, output(result)
    assert "'boss'" in result.stderr and "agent" in result.stderr, output(result)
    assert "Traceback" not in result.stderr
    assert not store.data_dir.exists()  # refused before the database was opened


@pytest.mark.parametrize(("args", "stdin", "expected"), [
    (("--role", "agent", "--unit", "atlantis"), PASSWORD, "'atlantis' is not a unit"),
    (("--role", "supervisor"), PASSWORD, "needs at least one unit"),
    (("--role", "agent", "--unit", "police"), "too short", "at least 10 characters"),
    (("--role", "agent", "--unit", "police"), "", "held no password"),
])
def test_bad_input_is_refused_with_a_reason(store: Store, args, stdin, expected):
    result = users(store, "add", "zhangsan", *args, "--password-stdin", stdin=stdin)
    assert result.returncode != 0 and expected in result.stderr, output(result)
    assert "Traceback" not in result.stderr


def test_duplicates_unknown_users_and_a_missing_terminal(store: Store):
    ok(users(store, "add", "zhangsan", "--role", "agent", "--unit", "police",
             "--password-stdin", stdin=PASSWORD))
    again = users(store, "add", "zhangsan", "--role", "agent", "--unit", "hrss",
                  "--password-stdin", stdin=PASSWORD)
    assert again.returncode == 1 and "already exists" in again.stderr, output(again)
    for command in ("disable", "passwd"):
        missing = users(store, command, "nobody", "--password-stdin", stdin=PASSWORD) \
            if command == "passwd" else users(store, command, "nobody")
        assert missing.returncode == 1 and "no staff user 'nobody'" in missing.stderr, \
            output(missing)
    # without a terminal there is nobody to prompt: say how to pipe the password in
    no_tty = users(store, "passwd", "zhangsan")
    assert no_tty.returncode != 0 and "--password-stdin" in no_tty.stderr, output(no_tty)
    assert authenticate(store, "zhangsan", PASSWORD) is not None  # unchanged


def test_users_help_names_the_roles(tmp_path):
    result = ok(subprocess.run([bangban_executable(), "users", "add", "--help"],
                               env=clean_env(), cwd=tmp_path, capture_output=True, text=True,
                               timeout=CLI_TIMEOUT_S))
    assert "agent|supervisor|kb_editor|admin" in result.stdout
    assert "--password-stdin" in result.stdout and "--data-dir" in result.stdout
