"""Shared fixtures: a real database and a real Redis for every test that needs storage.

By default both are the embedded ones (a SQLite file, a private redis-server). CI runs the suite a
second time against PostgreSQL and an external Redis by setting BANGBAN_TEST_DATABASE_URL and
BANGBAN_TEST_REDIS_URL. Each test session gets its own fresh PostgreSQL database; tables are
emptied between tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from core.config import Settings, load_settings
from core.db import create_engine, upgrade
from core.db.schema import metadata
from core.redisconn import EmbeddedRedis, async_client

TEST_DATABASE_URL = os.environ.get("BANGBAN_TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("BANGBAN_TEST_REDIS_URL")
REPO = Path(__file__).resolve().parent.parent


def bangban_executable() -> str:
    """The installed console script, so CLI tests run what users run."""
    exe = Path(sys.executable).parent / "bangban"
    return str(exe) if exe.exists() else shutil.which("bangban") or "bangban"


# -- PostgreSQL databases made for the tests --------------------------------------------------


async def _admin(sql: str) -> None:
    import asyncpg

    url = make_url(TEST_DATABASE_URL)
    conn = await asyncpg.connect(
        host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
        password=url.password, database=url.database or "postgres",
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database_url(tmp_dir: Path) -> tuple[str, callable]:
    """A brand-new empty database of the kind under test, and a function that drops it."""
    if TEST_DATABASE_URL:
        name = f"bangban_test_{secrets.token_hex(4)}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
        return url, lambda: asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    path = tmp_dir / f"db-{secrets.token_hex(4)}.sqlite"
    return f"sqlite+aiosqlite:///{path}", lambda: None


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    url, drop = fresh_database_url(tmp_path_factory.mktemp("db"))

    async def migrate() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate())
    yield url
    drop()


@pytest.fixture
def empty_database_url(tmp_path) -> Iterator[str]:
    url, drop = fresh_database_url(tmp_path)
    yield url
    drop()


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    async with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(delete(table))
    await engine.dispose()


# -- Redis ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    if TEST_REDIS_URL:
        yield TEST_REDIS_URL
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
async def redis(redis_url) -> AsyncIterator:
    client = async_client(redis_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def rq_redis(redis_url):
    """A synchronous client for RQ (queues, workers) on the test Redis."""
    from core.redisconn import sync_client

    connection = sync_client(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def queue_name(rq_redis) -> str:
    """A queue of this test's own, so a worker never picks up another test's jobs."""
    from core import jobs

    name = f"test-{secrets.token_hex(4)}"
    yield name
    jobs.queue(name, rq_redis).delete(delete_jobs=True)


# -- settings and the app ---------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path, database_url, redis_url) -> Settings:
    return load_settings(environ={}, overrides={
        "data_dir": str(tmp_path / "var"),
        "database.url": database_url,
        "redis.url": redis_url,
        "kb.load_seed_on_start": False,
    })


@pytest.fixture
async def seeded(engine, settings) -> int:
    """The seed KB, loaded before the app starts (the bot reads it at start-up)."""
    from core.kb.seed import load_seed_if_empty
    from core.kb.store import KbStore

    return await load_seed_if_empty(KbStore(engine), settings.kb_seed_dir)


@pytest.fixture
async def client(aiohttp_client, settings, engine, redis):
    """A real in-process server on the test database and Redis."""
    from core.app import create_app

    return await aiohttp_client(create_app(settings))


# -- the real browser (Debian's chromium driven by Playwright) ----------------------------------

CHROMIUM = "/usr/bin/chromium"
#: as root in a sandbox without a display; background networking off because this machine's
#: closed network refuses Chromium's calls home
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def chromium() -> str:
    """The browser's path; in CI a missing browser fails the test instead of skipping it."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium fonts-noto-cjk)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
async def browser(chromium):
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
