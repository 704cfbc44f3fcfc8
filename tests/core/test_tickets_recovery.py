"""12345 dispatch survives its infrastructure: a worker killed in mid-dispatch, Redis down when a
ticket is made. Real `bangban worker` processes, a real (restarted) Redis, the stand-in receiver.

What RQ 3 does by itself with a job whose worker was SIGKILLed: nothing for a while. The job stays
'started' in the StartedJobRegistry until its heartbeat TTL (30 s + 60 s) has passed *and* some
worker runs its maintenance (at start-up, then every 10 minutes); then it is retried if it has
retries left, else failed. core.ticket_recovery.recover_stuck does not wait for that: it works from the SQL
row and re-enqueues the ticket as soon as its job looks dead, and the old job, superseded, does
nothing when RQ finally gets round to it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from core import jobs
from core.errors import ConfigError
from core.hotline_sim import HotlineSim, RunningSim
from core.redisconn import EmbeddedRedis, sync_client
from core.hotline_wire import DispatchConfig, dispatch_config
from core.ticket_recovery import recover_stuck
from core.tickets import create_ticket, get_ticket, job_key, utcnow
from tests.conftest import bangban_executable
from tests.core.test_jobs import run_burst_worker
from tests.core.test_tickets import SECRET, TRANSCRIPT, db, no_dead_letters, sim  # noqa: F401

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(),
                                reason="finds the worker's work horse through /proc")


def dispatch(sim, queue_name: str, **kw) -> DispatchConfig:
    return DispatchConfig(endpoint=f"{sim.url}/tickets", secret=SECRET, retry_intervals=[0],
                          max_attempts=4, timeout_s=30, queue=queue_name, **kw)


def make_ticket(db, connection, d: DispatchConfig, settings=None) -> dict:
    return db(lambda engine: create_ticket(
        engine, connection, conversation_id="c1", unit="hrss", summary="补办社保卡，需区里核实",
        transcript=TRANSCRIPT, citizen_contact="13812345678", dispatch=d, settings=settings))


def current_job(connection, ticket_id: str) -> Job:
    return Job.fetch(connection.get(job_key("bangban:", ticket_id)).decode(), connection=connection)


# -- real worker processes --------------------------------------------------------------------


def start_worker(queue_name: str, database_url: str, redis_url: str, cwd) -> subprocess.Popen:
    """`bangban worker` on the test queue, configured (like production) by its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANGBAN_")}
    env.update(BANGBAN_DATABASE_URL=database_url, BANGBAN_REDIS_URL=redis_url)
    return subprocess.Popen([bangban_executable(), "worker", "--queue", queue_name], cwd=cwd,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except OSError:
        return True


def kill_hard(proc: subprocess.Popen) -> None:
    """What a machine failure does: SIGKILL the worker, then its work horse (RQ forks one per
    job, in its own process group), the parent first so nothing is left to notice and clean up."""
    horses = descendants(proc.pid)
    proc.kill()
    proc.wait(10)
    for pid in horses:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in horses) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(pid) for pid in horses)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # RQ's warm shutdown
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            kill_hard(proc)
    return proc.stderr.read().decode(errors="replace") if proc.stderr else ""


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_worker_killed_mid_dispatch_still_delivers_the_ticket_exactly_once(
        db, rq_redis, queue_name, database_url, redis_url, tmp_path):
    with RunningSim(HotlineSim(SECRET, hold_first=1)) as running:
        d = dispatch(running, queue_name)
        # settings None: the worker runs the job with its own configuration, as in production
        ticket = make_ticket(db, rq_redis, d)
        first_job = current_job(rq_redis, ticket["id"])

        first = start_worker(queue_name, database_url, redis_url, tmp_path)
        try:
            # the POST has arrived and the receiver recorded the ticket; its answer is held
            assert running.sim.wait_holding(60), "the first worker never delivered"
            kill_hard(first)
        finally:
            running.sim.release()
            stop(first)

        row = db(lambda e: get_ticket(e, ticket["id"]))
        assert (row["status"], row["attempts"]) == ("sending", 1)  # never became 'sent'
        # RQ has not noticed: the job is still 'started', and not yet expired in its registry
        assert first_job.get_status() == JobStatus.STARTED
        registry = StartedJobRegistry(queue_name, connection=rq_redis)
        assert first_job.id in registry.get_job_ids(cleanup=False)
        assert first_job.id not in registry.get_expired_job_ids()

        # a running job is left alone while its heartbeat is fresh ...
        assert db(lambda e: recover_stuck(e, rq_redis, d, stale_after_s=60)) == []
        # ... and re-enqueued, from the SQL row, once it has been silent long enough
        time.sleep(1.2)
        assert db(lambda e: recover_stuck(e, rq_redis, d, stale_after_s=1)) == [ticket["id"]]
        assert current_job(rq_redis, ticket["id"]).id != first_job.id

        second = start_worker(queue_name, database_url, redis_url, tmp_path)
        try:
            wait_for(lambda: db(lambda e: get_ticket(e, ticket["id"]))["status"] == "sent", 60,
                     "the ticket to be sent")
        finally:
            log = stop(second)

        row = db(lambda e: get_ticket(e, ticket["id"]))
        assert (row["status"], row["attempts"], row["external_id"]) == ("sent", 2,
                                                                        "12345-000001"), log
        [got] = running.sim.tickets.values()
        assert got["deliveries"] == 2 and running.sim.requests == 2  # POSTed twice, recorded once
        assert got["idempotency_key"] == ticket["idempotency_key"]

        # Much later RQ cleans up the dead job: its failure callback must not kill the ticket,
        # and the retry RQ makes of it must not POST again.
        registry.cleanup(time.time() + 3600)
        run_burst_worker(jobs.queue(queue_name, rq_redis), rq_redis)
        assert db(lambda e: get_ticket(e, ticket["id"]))["status"] == "sent"
        assert running.sim.requests == 2
        assert db(lambda e: recover_stuck(e, rq_redis, d, stale_after_s=0)) == []


def test_a_ticket_made_while_redis_is_down_is_queued_when_it_is_back(db, queue_name, settings,
                                                                      sim, tmp_path):
    """A real Redis, stopped while the agent presses 派单 and started again afterwards."""
    server = EmbeddedRedis(tmp_path / "own-redis")
    connection = sync_client(server.start())
    d = DispatchConfig(endpoint=f"{sim.url}/tickets", secret=SECRET, retry_intervals=[0],
                       max_attempts=3, timeout_s=5, queue=queue_name)
    dump = settings.model_dump(mode="json")
    try:
        server.stop()
        ticket = make_ticket(db, connection, d, settings=dump)  # no error for the agent
        assert (ticket["status"], ticket["attempts"]) == ("created", 0)
        assert db(lambda e: get_ticket(e, ticket["id"]))["status"] == "created"  # in SQL

        server.start()
        queue = jobs.queue(queue_name, connection)
        assert len(queue) == 0  # the enqueue was lost with Redis
        # too recent for the sweep, which leaves tickets a moment to be queued normally
        assert db(lambda e: recover_stuck(e, connection, d, settings=dump)) == []
        later = utcnow() + timedelta(minutes=5)
        assert db(lambda e: recover_stuck(e, connection, d, settings=dump, now=later)) == [
            ticket["id"]]
        # run again (another process, the next round): the queued job is left alone
        assert db(lambda e: recover_stuck(e, connection, d, settings=dump, now=later)) == []
        assert len(queue) == 1
        run_burst_worker(queue, connection)
    finally:
        queue = jobs.queue(queue_name, connection)
        queue.delete(delete_jobs=True)
        connection.close()
        server.stop()
    row = db(lambda e: get_ticket(e, ticket["id"]))
    assert (row["status"], row["attempts"]) == ("sent", 1)
    assert [t["deliveries"] for t in sim.sim.tickets.values()] == [1]


def test_a_superseded_job_does_nothing(db, rq_redis, queue_name, settings, sim):
    """A job taken for dead (a stalled worker) but running after all leaves the ticket to the
    newer job: one POST in all."""
    d = dispatch(sim, queue_name)
    dump = settings.model_dump(mode="json")
    ticket = make_ticket(db, rq_redis, d, settings=dump)
    old = current_job(rq_redis, ticket["id"])
    # the job looks started by a worker that went silent 10 minutes ago
    old.set_status(JobStatus.STARTED)
    old.heartbeat(utcnow() - timedelta(minutes=10), 60)
    assert db(lambda e: recover_stuck(e, rq_redis, d, settings=dump,
                                      now=utcnow() + timedelta(minutes=5))) == [ticket["id"]]
    old.set_status(JobStatus.QUEUED)  # it is still in the queue, first in line
    run_burst_worker(jobs.queue(queue_name, rq_redis), rq_redis)

    assert Job.fetch(old.id, connection=rq_redis).return_value() == {
        "ticket_id": ticket["id"], "skipped": True, "superseded": True}
    row = db(lambda e: get_ticket(e, ticket["id"]))
    assert (row["status"], row["attempts"]) == ("sent", 1)
    assert sim.sim.requests == 1


def test_a_fresh_or_scheduled_ticket_is_left_alone(db, rq_redis, queue_name, settings, sim):
    d = dispatch(sim, queue_name)
    ticket = make_ticket(db, rq_redis, d, settings=settings.model_dump(mode="json"))
    later = utcnow() + timedelta(hours=1)
    # queued and waiting for a worker (however long): not stuck
    assert db(lambda e: recover_stuck(e, rq_redis, d, now=later)) == []
    job = current_job(rq_redis, ticket["id"])
    job.set_status(JobStatus.SCHEDULED)  # waiting for a retry's back-off
    assert db(lambda e: recover_stuck(e, rq_redis, d, now=later)) == []
    job.delete()  # gone from Redis
    assert db(lambda e: recover_stuck(e, rq_redis, d, now=later)) == [ticket["id"]]


def test_dispatch_config_comes_from_the_settings(settings):
    from core.config import DispatchSettings

    assert dispatch_config(settings) is None  # no endpoint: dispatch is off
    on = settings.model_copy(update={
        "dispatch": DispatchSettings(endpoint="https://12345.example/tickets", secret=SECRET,
                                     max_attempts=3, queue="high"),
        "server": settings.server.model_copy(update={"public_url": "https://bb.example/"})})
    d = dispatch_config(on)
    assert (d.endpoint, d.secret, d.max_attempts, d.queue, d.retry_intervals) == (
        "https://12345.example/tickets", SECRET, 3, "high", [5, 30, 120, 600])
    assert d.callback_url == "https://bb.example/api/hotline/v1/callback"
    explicit = on.model_copy(update={"dispatch": on.dispatch.model_copy(
        update={"callback_url": "https://gw.example/cb"})})
    assert dispatch_config(explicit).callback_url == "https://gw.example/cb"
    bad = on.model_copy(update={"dispatch": on.dispatch.model_copy(
        update={"endpoint": "ftp://12345.example"})})
    with pytest.raises(ConfigError, match="dispatch.endpoint"):
        dispatch_config(bad)


def test_a_job_without_a_dispatch_config_uses_the_workers_settings(db, rq_redis, queue_name,
                                                                    settings, sim):
    from core.config import DispatchSettings

    configured = settings.model_copy(update={"dispatch": DispatchSettings(
        endpoint=f"{sim.url}/tickets", secret=SECRET, queue=queue_name)})
    d = dispatch_config(configured)
    ticket = make_ticket(db, rq_redis, d, settings=configured.model_dump(mode="json"))
    queue = jobs.queue(queue_name, rq_redis)
    queue.empty()
    queue.enqueue("core.tickets.deliver_ticket", ticket["id"],
                  configured.model_dump(mode="json"), None)
    rq_redis.delete(job_key("bangban:", ticket["id"]))  # enqueued by hand: no current job recorded
    run_burst_worker(queue, rq_redis)
    row = db(lambda e: get_ticket(e, ticket["id"]))
    assert row["status"] == "sent"
    [got] = sim.sim.tickets.values()
    assert got["payload"]["callback_url"] == \
        f"{configured.public_url}/api/hotline/v1/callback"


def test_bangban_dispatch_recover(db, rq_redis, queue_name, database_url, redis_url, sim,
                                  tmp_path):
    down = sync_client("redis://127.0.0.1:9/0")  # nothing listens there: the enqueue fails
    ticket = make_ticket(db, down, dispatch(sim, queue_name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANGBAN_")}
    env.update(BANGBAN_DATABASE_URL=database_url, BANGBAN_REDIS_URL=redis_url,
               BANGBAN_DISPATCH__ENDPOINT=f"{sim.url}/tickets", BANGBAN_DISPATCH__SECRET=SECRET,
               BANGBAN_DISPATCH__QUEUE=queue_name)

    def recover() -> subprocess.CompletedProcess:
        return subprocess.run([bangban_executable(), "dispatch", "recover", "--older-than", "0"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    first = recover()
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == [ticket["id"]] and "1 ticket(s) queued again" in first.stderr
    assert len(jobs.queue(queue_name, rq_redis)) == 1
    again = recover()
    assert again.stdout == "" and "0 ticket(s)" in again.stderr
    off = subprocess.run([bangban_executable(), "dispatch", "recover"], cwd=tmp_path,
                         env={**env, "BANGBAN_DISPATCH__ENDPOINT": ""}, capture_output=True,
                         text=True, timeout=120)
    assert off.returncode == 2 and "dispatch is off" in off.stderr


def test_the_desks_dispatcher_creates_and_queues_tickets(db, rq_redis, queue_name, settings,
                                                         sim):
    from core.config import DispatchSettings
    from core.tickets import dispatcher

    assert db(lambda e: _none(dispatcher(e, rq_redis, settings))) is None  # dispatch off
    configured = settings.model_copy(update={"dispatch": DispatchSettings(
        endpoint=f"{sim.url}/tickets", secret=SECRET, queue=queue_name)})

    async def dispatch_twice(engine):
        send = dispatcher(engine, rq_redis, configured)
        kw = dict(conversation_id="c1", unit="hrss", summary="需区里核实", transcript=TRANSCRIPT,
                  citizen_contact=None, idempotency_key="h-h1")
        return await send(**kw), await send(**kw)  # a double click on 派单

    first, second = db(dispatch_twice)
    assert first["id"] == second["id"] and first["status"] == "created"
    job = current_job(rq_redis, first["id"])
    assert job.origin == queue_name and job.args[1] is None  # the worker's own settings
    assert len(jobs.queue(queue_name, rq_redis)) == 1


async def _none(value):
    return value
