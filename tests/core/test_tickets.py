"""12345 dispatch: tickets delivered by a real RQ worker to the stand-in receiver, retried, dead-
lettered and de-duplicated — on the test database and Redis. (Callbacks: test_hotline_api.py;
killed workers and Redis outages: test_tickets_recovery.py; signatures: test_hotline_wire.py.)"""

from __future__ import annotations

import asyncio

import pytest
from rq.job import Job, JobStatus
from sqlalchemy import delete, update

from core import jobs
from core.db import create_engine
from core.db.schema import tickets
from core.hotline_sim import HotlineSim, RunningSim
from core.hotline_wire import DispatchConfig
from core.tickets import (
    create_ticket,
    dead_letters,
    dead_letters_key,
    get_ticket,
    post_ticket,
    ticket_payload,
)
from tests.core.test_jobs import run_burst_worker

SECRET = "s3cret-for-tests"
#: the default redis.prefix, which these tests' settings keep
PREFIX = "bangban:"
TRANSCRIPT = [{"sender": "citizen", "text": "社保卡丢了怎么补办？"},
              {"sender": "agent", "text": "需要派单给区里核实。"}]


@pytest.fixture(autouse=True)
def no_dead_letters(rq_redis):
    """The dead-letter list is shared by all queues: start and end every test without one."""
    rq_redis.delete(dead_letters_key(PREFIX))
    yield
    rq_redis.delete(dead_letters_key(PREFIX))


@pytest.fixture
def db(database_url):
    """Run ``fn(engine)`` to completion on a fresh engine (these tests are synchronous, because
    an RQ worker runs its jobs with asyncio.run); the tickets table is emptied afterwards."""

    def run(fn):
        async def go():
            engine = create_engine(database_url)
            try:
                return await fn(engine)
            finally:
                await engine.dispose()
        return asyncio.run(go())

    yield run

    async def clean(engine):
        async with engine.begin() as conn:
            await conn.execute(delete(tickets))
    run(clean)


@pytest.fixture
def sim():
    with RunningSim(HotlineSim(SECRET)) as running:
        yield running


def dispatch(sim, **kw) -> DispatchConfig:
    return DispatchConfig(endpoint=f"{sim.url}/tickets", secret=SECRET, retry_intervals=[0],
                          max_attempts=4, timeout_s=5, **kw)


def new_ticket(db, rq_redis, settings, d: DispatchConfig, **kw) -> dict:
    return db(lambda engine: create_ticket(
        engine, rq_redis, conversation_id="c1", unit="rsj", summary="补办社保卡，需区里核实",
        transcript=TRANSCRIPT, citizen_contact="13812345678", dispatch=d,
        settings=settings.model_dump(mode="json"), **kw))


def work(queue_name, rq_redis) -> None:
    run_burst_worker(jobs.queue(queue_name, rq_redis), rq_redis)


def test_a_ticket_is_delivered_signed_and_recorded_once(db, rq_redis, queue_name, settings, sim):
    d = dispatch(sim, queue=queue_name, callback_url="http://127.0.0.1:9/cb")
    ticket = new_ticket(db, rq_redis, settings, d)
    assert ticket["status"] == "created" and ticket["attempts"] == 0
    # the number the agent typed, whole: 12345 calls the citizen back on it
    assert ticket["citizen_contact"] == "13812345678"

    work(queue_name, rq_redis)

    row = db(lambda e: get_ticket(e, ticket["id"]))
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
    assert row["external_id"] == "12345-000001"
    [got] = sim.sim.tickets.values()
    assert got["idempotency_key"] == ticket["idempotency_key"] and got["deliveries"] == 1
    assert got["payload"]["ticket_id"] == ticket["id"]
    assert got["payload"]["transcript"] == TRANSCRIPT
    assert got["payload"]["citizen_contact"] == "13812345678"
    assert got["payload"]["callback_url"] == "http://127.0.0.1:9/cb"
    assert dead_letters(rq_redis, PREFIX) == []


def test_the_same_idempotency_key_makes_one_ticket(db, rq_redis, queue_name, settings, sim):
    d = dispatch(sim, queue=queue_name)
    a = new_ticket(db, rq_redis, settings, d, idempotency_key="click-1")
    b = new_ticket(db, rq_redis, settings, d, idempotency_key="click-1")
    assert a["id"] == b["id"]
    assert len(jobs.queue(queue_name, rq_redis)) == 1


def test_failures_are_retried_until_sent_and_recorded_once(db, rq_redis, queue_name, settings):
    with RunningSim(HotlineSim(SECRET, fail_first=2)) as sim:
        ticket = new_ticket(db, rq_redis, settings, dispatch(sim, queue=queue_name))
        work(queue_name, rq_redis)
        row = db(lambda e: get_ticket(e, ticket["id"]))
        assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)
        assert sim.sim.failed == 2 and sim.sim.requests == 3
        assert [t["deliveries"] for t in sim.sim.tickets.values()] == [1]
    assert dead_letters(rq_redis, PREFIX) == []


def test_exhausted_attempts_end_dead_in_the_dead_letter_list(db, rq_redis, queue_name, settings):
    with RunningSim(HotlineSim(SECRET, fail_first=100)) as sim:
        ticket = new_ticket(db, rq_redis, settings,
                            dispatch(sim, queue=queue_name).model_copy(update={"max_attempts": 3}))
        job_id = jobs.queue(queue_name, rq_redis).job_ids[0]
        work(queue_name, rq_redis)
        assert sim.sim.requests == 3 and sim.sim.tickets == {}
    row = db(lambda e: get_ticket(e, ticket["id"]))
    assert (row["status"], row["attempts"]) == ("dead", 3)
    assert "HTTP 503" in row["last_error"]
    assert Job.fetch(job_id, connection=rq_redis).get_status() == JobStatus.FAILED
    [dead] = dead_letters(rq_redis, PREFIX)
    assert (dead["ticket_id"], dead["unit"], dead["attempts"]) == (ticket["id"], "rsj", 3)
    assert dead_letters(rq_redis, PREFIX, units=["gaj"]) == []


def test_deployments_sharing_a_redis_keep_their_dead_letters_apart(db, rq_redis, queue_name,
                                                                  settings, sim):
    d = dispatch(sim, queue=queue_name).model_copy(update={"secret": "not-the-secret",
                                                           "key_prefix": "other:"})
    ticket = new_ticket(db, rq_redis, settings, d)
    try:
        assert rq_redis.exists(f"other:tickets:job:{ticket['id']}")
        work(queue_name, rq_redis)
        assert db(lambda e: get_ticket(e, ticket["id"]))["status"] == "dead"
        assert [x["ticket_id"] for x in dead_letters(rq_redis, "other:")] == [ticket["id"]]
        assert dead_letters(rq_redis, PREFIX) == []
    finally:
        rq_redis.delete(dead_letters_key("other:"), f"other:tickets:job:{ticket['id']}")


def test_a_refused_ticket_is_dead_without_retries(db, rq_redis, queue_name, settings, sim):
    d = dispatch(sim, queue=queue_name).model_copy(update={"secret": "not-the-secret"})
    ticket = new_ticket(db, rq_redis, settings, d)
    work(queue_name, rq_redis)
    row = db(lambda e: get_ticket(e, ticket["id"]))
    assert (row["status"], row["attempts"]) == ("dead", 1)
    assert "HTTP 401" in row["last_error"]
    assert [x["ticket_id"] for x in dead_letters(rq_redis, PREFIX)] == [ticket["id"]]
    assert sim.sim.tickets == {}


def test_an_unreachable_endpoint_is_retried_then_dead(db, rq_redis, queue_name, settings):
    d = DispatchConfig(endpoint="http://127.0.0.1:9/tickets", secret=SECRET, retry_intervals=[0],
                       max_attempts=2, timeout_s=2, queue=queue_name)
    ticket = new_ticket(db, rq_redis, settings, d)
    work(queue_name, rq_redis)
    row = db(lambda e: get_ticket(e, ticket["id"]))
    assert (row["status"], row["attempts"]) == ("dead", 2)
    assert "cannot reach" in row["last_error"]


def test_a_crash_after_the_post_still_delivers_once(db, rq_redis, queue_name, settings, sim):
    """The worker POSTed, then died before marking the ticket sent; RQ runs the job again."""
    d = dispatch(sim, queue=queue_name)
    ticket = new_ticket(db, rq_redis, settings, d)

    # what the killed worker did: claimed the ticket (attempt 1) and POSTed it
    async def crashed_attempt(engine):
        async with engine.begin() as conn:
            await conn.execute(update(tickets).where(tickets.c.id == ticket["id"])
                               .values(status="sending", attempts=1))
        return await get_ticket(engine, ticket["id"])
    row = db(crashed_attempt)
    first = post_ticket(ticket_payload(row, d), d)
    assert first["duplicate"] is False

    work(queue_name, rq_redis)  # the retry

    row = db(lambda e: get_ticket(e, ticket["id"]))
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert row["external_id"] == first["id"]
    [got] = sim.sim.tickets.values()
    assert got["deliveries"] == 2  # two POSTs arrived, one ticket recorded


def test_a_delivered_ticket_is_not_sent_again(db, rq_redis, queue_name, settings, sim):
    d = dispatch(sim, queue=queue_name)
    ticket = new_ticket(db, rq_redis, settings, d)
    work(queue_name, rq_redis)
    jobs.queue(queue_name, rq_redis).enqueue(
        "core.tickets.deliver_ticket", ticket["id"], settings.model_dump(mode="json"),
        d.model_dump(mode="json"))
    work(queue_name, rq_redis)
    assert sim.sim.requests == 1
    assert db(lambda e: get_ticket(e, ticket["id"]))["attempts"] == 1
