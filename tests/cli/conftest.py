"""Helpers for driving the real ``bangban`` console script in a subprocess.

Every command runs with a clean environment (no BANGBAN_* variables from the developer's shell)
and in a temporary working directory, so the default ``./var`` of the checkout is never touched.
A :class:`Store` is one knowledge base the CLI can talk to: a fresh ``--data-dir`` with its own
SQLite file by default, or a fresh PostgreSQL database (plus the test Redis) when the suite runs
with BANGBAN_TEST_DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import TEST_DATABASE_URL, bangban_executable, fresh_database_url

#: generous bound for one CLI call (importing the whole seed KB takes a second or two)
CLI_TIMEOUT_S = 120


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment minus every BANGBAN_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANGBAN_")}
    env.update(extra or {})
    return env


def run_cli(
    *args: object, env: Mapping[str, str] | None = None, cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``bangban ARGS…``; ``env`` is added to a clean environment."""
    return subprocess.run(
        [bangban_executable(), *map(str, args)],
        env=clean_env(env), cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    """Both streams, for assertion messages and for checks that do not care which one."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, output(result)
    assert "Traceback" not in result.stderr, output(result)
    return result


@dataclass
class Store:
    """One knowledge base the CLI works on: a data dir, and a database URL on PostgreSQL runs."""

    data_dir: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: object) -> subprocess.CompletedProcess[str]:
        """``bangban ARGS… --data-dir DIR`` (for commands that take settings)."""
        return run_cli(*args, "--data-dir", self.data_dir, env=self.env, cwd=self.cwd)

    def export(self, fmt: str = "jsonl") -> str:
        return ok(self("kb", "export", "-", "--format", fmt)).stdout

    def ids(self) -> list[str]:
        return [json.loads(line)["id"] for line in self.export("jsonl").splitlines()]


@pytest.fixture
def make_store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    """Factory of empty stores; each call gives a new one (a new PostgreSQL DB on PG runs)."""
    drops = []
    counter = iter(range(1, 1000))

    def make() -> Store:
        data_dir = tmp_path / f"store{next(counter)}"
        env: dict[str, str] = {}
        if TEST_DATABASE_URL:
            url, drop = fresh_database_url(tmp_path)
            drops.append(drop)
            env = {"BANGBAN_DATABASE_URL": url,
                   "BANGBAN_REDIS_URL": request.getfixturevalue("redis_url")}
        return Store(data_dir=data_dir, cwd=tmp_path, env=env)

    yield make
    for drop in drops:
        drop()


@pytest.fixture
def store(make_store) -> Store:
    return make_store()
