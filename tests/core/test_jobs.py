"""Background jobs on a real RQ queue, real Redis and the test database, run by real workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from rq import SimpleWorker
from rq.job import Job, JobStatus

from core import jobs
from core.config import Settings
from core.db import create_engine, upgrade
from core.kb.store import KbStore, parse_entry
from tests.conftest import bangban_executable

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def hotline(entry_id: str, *, reviewed: datetime | None, status: str = "published"):
    record = {
        "id": entry_id, "type": "hotline", "region": "310000", "phone": "12345",
        "unit_code": "hotline-12345", "unit_name": f"测试热线 {entry_id}",
        "published_at": "2024-01-01 09:00:00", "published_by": "hotline-12345",
        "updated_at": "2024-01-01 09:00:00", "updated_by": "hotline-12345", "valid": "1",
        "status": status,
    }
    if reviewed is not None:
        record["last_reviewed_at"] = reviewed.strftime("%Y-%m-%d %H:%M:%S")
    return parse_entry(record)


@pytest.fixture
def kb_database(empty_database_url) -> str:
    """A migrated database holding one recently reviewed entry and one never reviewed."""

    async def fill() -> None:
        engine = create_engine(empty_database_url)
        try:
            await upgrade(engine)
            await KbStore(engine).write([
                hotline("reviewed-yesterday", reviewed=NOW - timedelta(days=1)),
                hotline("never-reviewed", reviewed=None),
                # drafts are not inspected, reviewed or not
                hotline("draft-never-reviewed", reviewed=None, status="draft"),
            ], actor="test")
        finally:
            await engine.dispose()

    asyncio.run(fill())
    return empty_database_url


def run_burst_worker(queue, connection) -> None:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        SimpleWorker([queue], connection=connection).work(burst=True)
    finally:  # RQ installs its own stop handlers; give pytest its Ctrl-C back
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_kb_inspection_lists_entries_due_for_review(kb_database, settings: Settings, rq_redis,
                                                    queue_name):
    cfg = settings.model_copy(update={
        "database": settings.database.model_copy(update={"url": kb_database})})
    queue = jobs.queue(queue_name, rq_redis)
    job = queue.enqueue(jobs.kb_inspection, cfg.model_dump(mode="json"))

    run_burst_worker(queue, rq_redis)

    job = Job.fetch(job.id, connection=rq_redis)
    assert job.get_status() == JobStatus.FINISHED, job.latest_result()
    result = job.return_value()
    assert result["due"] == 1
    assert [e["id"] for e in result["entries"]] == ["never-reviewed"]
    assert result["entries"][0]["last_reviewed_at"] is None
    assert len(queue) == 0


def test_bangban_worker_runs_the_job_with_its_own_settings(kb_database, redis_url, rq_redis,
                                                           queue_name, tmp_path):
    # enqueued without settings: the worker process runs it with the configuration it has
    queue = jobs.queue(queue_name, rq_redis)
    job = queue.enqueue("core.jobs.kb_inspection")

    env = {k: v for k, v in os.environ.items() if not k.startswith("BANGBAN_")}
    env.update(BANGBAN_DATABASE_URL=kb_database, BANGBAN_REDIS_URL=redis_url)
    result = subprocess.run(
        [bangban_executable(), "worker", "--burst", "--queue", queue_name],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr

    job = Job.fetch(job.id, connection=rq_redis)
    assert job.get_status() == JobStatus.FINISHED, result.stderr
    assert job.return_value()["due"] == 1
    assert [e["id"] for e in job.return_value()["entries"]] == ["never-reviewed"]
    assert not (tmp_path / "var").exists()  # external Redis given: no embedded one was started


def test_the_workers_command_line_settings_reach_its_jobs(kb_database, redis_url, rq_redis,
                                                          queue_name, tmp_path):
    # docs/operations.md: every command takes --config; a job enqueued without settings loads
    # them as any process does, so the worker's own --config must be what it finds
    config = tmp_path / "site.yaml"
    config.write_text(f"database:\n  url: '{kb_database}'\nredis:\n  url: '{redis_url}'\n",
                      encoding="utf-8")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    queue = jobs.queue(queue_name, rq_redis)
    job = queue.enqueue("core.jobs.kb_inspection")

    env = {k: v for k, v in os.environ.items() if not k.startswith("BANGBAN_")}
    result = subprocess.run(
        [bangban_executable(), "worker", "--burst", "--queue", queue_name, "--config",
         str(config)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    job = Job.fetch(job.id, connection=rq_redis)
    assert job.get_status() == JobStatus.FINISHED, result.stderr
    assert job.return_value()["due"] == 1
    assert not (cwd / "var").exists()  # no stray SQLite file from the defaults
