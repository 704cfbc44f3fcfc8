"""The live human-help queue on a real Redis: FIFO, caps, presence, atomic assignment, SLA,
recovery after Redis loses its data.

Time is a fake clock throughout, so heartbeat expiry and SLA breaches need no sleeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from core.hours import load_units
from core.queue import AssignedEntry, Queue
from core.redisconn import async_client

T0 = 1_760_000_000.0  # 2025-10-09 16:53 in Shanghai; any fixed instant will do
PREFIX = "bbtest:"


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def q(redis, clock) -> Queue:
    return Queue(redis, PREFIX, clock=clock, heartbeat_ttl_s=30)


async def fill(q: Queue, unit: str, n: int, clock: Clock, name: str = "c") -> list[str]:
    convs = [f"{name}{i}" for i in range(n)]
    for c in convs:
        assert await q.enqueue(unit, c, {"channel": "web"})
        clock.t += 1
    return convs


async def test_fifo_order_positions_and_no_duplicates(q, clock, redis):
    convs = await fill(q, "tax", 3, clock)
    assert [w.conversation for w in await q.waiting("tax")] == convs
    assert [await q.position(c) for c in convs] == [1, 2, 3]
    assert (await q.waiting("tax"))[0].meta == {"channel": "web"}
    assert not await q.enqueue("tax", "c0"), "a retried request must not queue twice"
    assert not await q.enqueue("edu", "c0"), "nor queue in a second unit"

    await q.heartbeat("a", ["tax"])
    got = await q.assign("tax")
    assert (got.conversation, got.agent, got.enqueued_at) == ("c0", "a", T0)
    assert await q.position("c0") is None
    assert [await q.position(c) for c in convs[1:]] == [1, 2]
    assert await q.position("nobody") is None
    assert all(k.startswith(PREFIX.encode()) for k in await redis.keys("*"))


async def test_caps_two_agents_then_release(q, clock):
    await fill(q, "tax", 6, clock)
    await q.heartbeat("a", ["tax"], cap=2)
    await q.heartbeat("b", ["tax"], cap=1)
    got = [await q.assign("tax") for _ in range(3)]
    assert Counter(g.agent for g in got) == {"a": 2, "b": 1}
    assert [g.conversation for g in got] == ["c0", "c1", "c2"], "oldest first"
    assert await q.assign("tax") is None
    assert len(await q.waiting("tax")) == 3, "a failed assign leaves the line alone"

    held_by_a = next(g.conversation for g in got if g.agent == "a")
    assert not await q.release("b", held_by_a), "only the holder can release"
    assert await q.release("a", held_by_a)
    assert not await q.release("a", held_by_a), "twice is a no-op"
    nxt = await q.assign("tax")
    assert (nxt.agent, nxt.conversation) == ("a", "c3")
    assert await q.assign("tax") is None
    loads = {s.agent: (s.load, s.cap, s.free) for s in await q.agents("tax")}
    assert loads == {"a": (2, 2, 0), "b": (1, 1, 0)}


async def test_default_cap_comes_from_units_config(redis, clock):
    q = Queue(redis, PREFIX, clock=clock, units=load_units())
    assert q.cap_for("tax") == 5 and q.sla_for("tax") == 60
    with pytest.raises(ValueError):
        await q.enqueue("no-such-unit", "x")
    await fill(q, "tax", 7, clock)
    await q.heartbeat("a", ["tax"])
    assert [await q.assign("tax") is not None for _ in range(6)] == [True] * 5 + [False]
    await q.clear_cap("a")  # no override set: still the default
    assert (await q.agents("tax"))[0].cap == 5


async def test_least_loaded_then_idle_longest(q, clock):
    await fill(q, "tax", 8, clock)
    await q.heartbeat("z", ["tax"])
    assert [(await q.assign("tax")).agent for _ in range(2)] == ["z", "z"]
    clock.t += 5
    await q.heartbeat("b", ["tax"])
    # b holds fewer until the loads are level (2-2)
    assert [(await q.assign("tax")).agent for _ in range(2)] == ["b", "b"]
    # level: z, whose last new conversation is older, goes first; then b holds fewer again
    clock.t += 1
    assert (await q.assign("tax")).agent == "z"
    clock.t += 1
    assert (await q.assign("tax")).agent == "b"
    # level again (3-3), and now z's latest is the older one
    clock.t += 1
    assert (await q.assign("tax")).agent == "z"
    clock.t += 1
    assert (await q.assign("tax")).agent == "b"
    assert {s.agent: s.load for s in await q.agents("tax")} == {"z": 4, "b": 4}


async def test_tie_on_load_and_time_goes_to_fewest_today(q, clock):
    await fill(q, "tax", 4, clock)
    await q.heartbeat("a", ["tax"])
    first = await q.assign("tax")
    await q.release("a", first.conversation)
    again = await q.assign("tax")  # same instant: a has had two today
    await q.heartbeat("b", ["tax"])
    other = await q.assign("tax")
    assert other.agent == "b"
    await q.release("a", again.conversation)
    await q.release("b", other.conversation)
    # load 0-0, last new conversation at the same instant: b has had fewer today
    assert (await q.assign("tax")).agent == "b"


async def test_away_busy_offline_get_nothing(q, clock):
    await fill(q, "tax", 3, clock)
    await q.heartbeat("away", ["tax"], "away")
    await q.heartbeat("busy", ["tax"], "busy")
    await q.heartbeat("gone", ["tax"])
    await q.heartbeat("out", ["tax"])
    await q.sign_out("out")
    clock.t += 20
    await q.heartbeat("away", ["tax"], "away")
    await q.heartbeat("busy", ["tax"], "busy")
    clock.t += 15  # 'gone' last beat 35 s ago, TTL 30 s
    assert await q.assign("tax") is None
    status = {s.agent: s.status for s in await q.agents("tax")}
    assert status == {"away": "away", "busy": "busy", "gone": "offline", "out": "offline"}
    assert all(s.free == 0 for s in await q.agents("tax"))
    with pytest.raises(ValueError):
        await q.heartbeat("x", ["tax"], "sleeping")  # type: ignore[arg-type]

    await q.heartbeat("busy", ["tax"], "online")
    got = await q.assign("tax")
    assert got.agent == "busy"
    # the held conversation stays held when its agent steps away
    await q.heartbeat("busy", ["tax"], "away")
    assert await q.assign("tax") is None
    assert next(s for s in await q.agents("tax") if s.agent == "busy").conversations == ("c0",)


async def test_heartbeat_expiry_edge(q, clock):
    await fill(q, "tax", 3, clock)
    await q.heartbeat("a", ["tax"])
    beat = clock.t
    assert await q.assign("tax", now=beat + 29.9) is not None
    assert await q.assign("tax", now=beat + 30) is None, "expired at the TTL exactly"
    await q.heartbeat("a", ["tax"], now=beat + 31)
    assert await q.assign("tax", now=beat + 31) is not None


async def test_agent_serves_only_its_units(q, clock):
    await q.enqueue("tax", "t1")
    await q.enqueue("edu", "e1")
    await q.heartbeat("a", ["tax"])
    assert await q.assign("edu") is None
    assert (await q.assign("tax")).conversation == "t1"
    await q.leave_unit("a", "tax")
    assert await q.agents("tax") == []


@pytest.mark.parametrize("caps,waiting,expected", [
    ({"a": 2, "b": 1}, 20, 3),
    ({"a": 5, "b": 5, "c": 5, "d": 3, "e": 1}, 40, 19),
    ({"a": 5, "b": 5, "c": 5, "d": 5, "e": 5, "f": 5, "g": 5, "h": 5, "i": 5, "j": 5}, 40, 40),
])
async def test_concurrent_assigns_never_double_assign_or_exceed_caps(
        redis, redis_url, clock, caps, waiting, expected):
    other = async_client(redis_url)
    try:
        q1 = Queue(redis, PREFIX, clock=clock)
        q2 = Queue(other, PREFIX, clock=clock)
        await fill(q1, "tax", waiting, clock)
        for agent, cap in caps.items():
            await q1.heartbeat(agent, ["tax"], cap=cap)
        results = await asyncio.gather(*[(q1 if i % 2 else q2).assign("tax") for i in range(50)])
        got = [r for r in results if r is not None]
        assert len(got) == expected
        convs = [g.conversation for g in got]
        assert len(set(convs)) == len(convs), "a conversation was given twice"
        per_agent = Counter(g.agent for g in got)
        assert all(per_agent[a] <= cap for a, cap in caps.items())
        # Redis agrees with what the callers were told
        states = {s.agent: s for s in await q1.agents("tax")}
        for agent, n in per_agent.items():
            assert states[agent].load == n
            assert set(states[agent].conversations) == {g.conversation for g in got
                                                        if g.agent == agent}
        left = await q1.waiting("tax")
        assert len(left) == waiting - expected
        assert not set(convs) & {w.conversation for w in left}
    finally:
        await other.aclose()


async def test_cancel_removes_waiting_and_assigned(q, clock):
    await fill(q, "tax", 3, clock)
    await q.heartbeat("a", ["tax"], cap=1)
    assert await q.cancel("c1") == "waiting"
    assert [w.conversation for w in await q.waiting("tax")] == ["c0", "c2"]
    assert await q.position("c2") == 2
    assert (await q.assign("tax")).conversation == "c0"
    assert await q.assign("tax") is None
    assert await q.cancel("c0") == "assigned", "the citizen left mid-conversation"
    assert (await q.agents("tax"))[0].load == 0
    assert (await q.assign("tax")).conversation == "c2"
    assert await q.cancel("c1") is None
    assert await q.first_response_due("c1") is None
    # the cancelled ones stopped their SLA clocks; only c2 (held by a) is still running
    assert [o.conversation for o in await q.overdue("tax", now=clock.t + 10_000)] == ["c2"]


async def test_transfer_keeps_enqueue_time_and_frees_agent(q, clock):
    await q.enqueue("edu", "e_early", now=T0 + 5)
    await q.enqueue("tax", "t_mid", now=T0 + 10)
    await q.enqueue("edu", "e_late", now=T0 + 20)
    await q.heartbeat("a", ["tax"], cap=1, now=T0 + 30)
    assert (await q.assign("tax", now=T0 + 30)).conversation == "t_mid"

    assert await q.transfer("t_mid", "edu", now=T0 + 40) == "tax"
    line = await q.waiting("edu")
    assert [w.conversation for w in line] == ["e_early", "t_mid", "e_late"]
    assert line[1].enqueued_at == T0 + 10
    assert await q.position("t_mid") == 2
    assert (await q.agents("tax", now=T0 + 40))[0].load == 0
    assert await q.waiting("tax") == []
    assert await q.first_response_due("t_mid") == T0 + 40 + 60, "the new unit's clock"
    assert not await q.release("a", "t_mid"), "no longer a's"
    assert await q.transfer("nothing", "edu") is None


async def test_rebuild_after_redis_loses_everything(q, redis, clock):
    convs = await fill(q, "tax", 5, clock)
    await q.heartbeat("a", ["tax"], cap=2)
    held = await q.assign("tax")
    await q.mark_first_response(held.conversation, now=held.assigned_at + 3)
    before = await q.waiting("tax")
    positions = {c: await q.position(c) for c in convs}

    # what SQL would hand back: the waiting rows and the held conversation
    rows = [(w.conversation, w.enqueued_at, w.meta) for w in before]
    holding = [AssignedEntry(held.conversation, held.enqueued_at, "a", held.assigned_at,
                             first_response_at=held.assigned_at + 3)]
    # FLUSHDB rather than FLUSHALL: the same loss for our keys without touching other databases
    # of a shared test Redis; SCRIPT FLUSH is the other half of a restart (NOSCRIPT must recover)
    await redis.flushdb()
    await redis.script_flush()
    assert await q.waiting("tax") == []

    # rebuild in two overlapping batches: entries already back are not duplicated
    assert await q.rebuild("tax", rows[2:]) == 2
    assert await q.rebuild("tax", list(reversed(rows)), holding) == 2 + 1
    assert await q.rebuild("tax", rows, holding) == 0
    assert await q.waiting("tax") == before
    assert {c: await q.position(c) for c in convs} == positions
    assert await redis.zcard(f"{PREFIX}queue:wait:tax") == 4

    await q.heartbeat("a", ["tax"], cap=2)
    assert (await q.agents("tax"))[0].conversations == (held.conversation,)
    assert (await q.assign("tax")).conversation == rows[0][0]
    assert await q.assign("tax") is None, "the restored load still counts against the cap"
    assert await q.first_response_due(held.conversation) is None, "answered before the loss"


async def test_sla_overdue_with_controllable_clock(q, clock):
    await q.enqueue("tax", "c1", now=T0)
    await q.enqueue("tax", "c2", now=T0 + 30)
    assert await q.first_response_due("c1") == T0 + 60
    assert await q.overdue("tax", now=T0 + 60) == [], "due is not yet late"
    late = await q.overdue("tax", now=T0 + 61)
    assert [(o.conversation, o.state, o.agent, o.late_s) for o in late] == [
        ("c1", "waiting", None, 1.0)]

    await q.heartbeat("a", ["tax"], now=T0 + 61)
    got = await q.assign("tax", now=T0 + 61)
    assert await q.first_response_due("c1") == got.assigned_at + 60
    assert [o.conversation for o in await q.overdue("tax", now=T0 + 100)] == ["c2"]
    late = await q.overdue("tax", now=T0 + 130)
    assert [(o.conversation, o.state, o.agent) for o in late] == [
        ("c2", "waiting", None), ("c1", "assigned", "a")]

    assert await q.mark_first_response("c1", now=T0 + 131) == 70
    assert await q.mark_first_response("c1", now=T0 + 140) is None, "only the first counts"
    assert await q.mark_first_response("c2", now=T0 + 140) is None, "nobody answers a waiter"
    assert await q.first_response_due("c1") is None
    assert [o.conversation for o in await q.overdue("tax", now=T0 + 10_000)] == ["c2"]
    await q.release("a", "c1")
    await q.cancel("c2")
    assert await q.overdue("tax", now=T0 + 10_000) == []


async def test_expected_wait_grows_with_position(q, clock):
    prior = [await q.expected_wait_s("tax", p) for p in (1, 2, 3)]
    assert 0 < prior[0] < prior[1] < prior[2]

    await fill(q, "tax", 6, clock)  # all waiting from T0..T0+5
    await q.heartbeat("a", ["tax"], cap=1, now=T0 + 6)
    t = T0 + 6
    first = await q.assign("tax", now=t)  # waited 6 s: first sample
    for _ in range(2):
        await q.release("a", first.conversation)
        t += 40
        await q.heartbeat("a", ["tax"], cap=1, now=t)
        first = await q.assign("tax", now=t)  # 40 s since the previous assignment
    avg = 0.3 * 40 + 0.7 * (0.3 * 40 + 0.7 * 6)
    waits = [await q.expected_wait_s("tax", p) for p in (1, 2, 3)]
    assert waits == pytest.approx([avg, 2 * avg, 3 * avg])
    assert waits[0] < waits[1] < waits[2]
    # the position a waiting citizen is shown feeds straight into the estimate
    assert await q.expected_wait_s("tax", await q.position("c5")) == pytest.approx(3 * avg)
    # and a newcomer is told the same in the one round trip that queues them
    joined = await q.enqueue("tax", "late", now=t)
    assert joined.position == await q.position("late") == 4
    assert joined.wait_s == pytest.approx(4 * avg)
    first_ever = await q.enqueue("edu", "e0", now=t)
    assert (first_ever.position, first_ever.wait_s) == (1, q.PRIOR_INTERVAL_S)
