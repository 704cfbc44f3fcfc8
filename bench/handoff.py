"""Human help under load: citizens asking for a person, simulated agents serving them.

    python bench/handoff.py [--citizens 1000] [--rate 7] [--burst 300] [--burst-window 1]
                            [--database-url URL] [--redis-url URL] [--steps] [--profile FILE]

The real application (``core.app.create_app``, started without an HTTP listener) on real storage:
by default a SQLite file in a temporary directory and a private redis-server
(``core.redisconn.EmbeddedRedis``, append-only as shipped); with ``--database-url`` a PostgreSQL
server (a fresh database ``bangban_bench_<hex>`` is created on it and dropped afterwards) and with
``--redis-url`` an external Redis (a unique key prefix, its keys deleted afterwards). The units
file is config/units.yaml with every schedule made ``always`` (so the run does not depend on the
time of day), ``defaults.agent_cap`` = ``--cap`` and overflow after an hour (nobody is moved to
12345, where no simulated agent works, during a run of minutes). The sweep runs every second, as
shipped.

Ten units (``--units``, real codes: seven municipal departments routed by the matter, plus the
community desk, 临港 and the platform desk, routed by cue words), five agents each
(``--agents-per-unit``), cap 5 each. Each citizen, in a unit drawn at random (seeded), asks a
dev-set question of a matter served by that unit, reads the answer for 0.2–1 s, then asks for a
person with a dev-set phrase ("帮我转人工", "人工客服在吗" …). Both messages go through
``DialogService.handle`` (the bot, ``HandoffService.request``, ``after()`` = immediate assignment),
exactly as a channel adapter calls it. The (question, phrase) pairs are chosen before the run by
asking the app's own bot and ``core.routing.route`` where they lead; a request that lands
elsewhere counts as an error.

Simulated agents sign in (``AgentDesk.heartbeat``, again every 10 s) and learn of an assignment
the way a workspace does: from the workspace event ``assigned`` on ``core.bus.Events``. Each one
replies once (``AgentDesk.send``) after a think time, then closes (``AgentDesk.close``) after a
service time (uniform in ``--think`` and ``--service``, seeded). The subscriber is its own
``Events`` on its own Redis connection, as another process's workspace socket would be; "agent
notified" is the moment the ``assigned`` event for that conversation arrives there.

First, ten warm-up citizens (not counted), 5 s at rest (the background CPU: sweep, heartbeats)
and ``--solo`` citizens one at a time (the agent answers and closes at once, the next citizen
starts after the close): ours without concurrency, with the CPU the process spent meanwhile.
Then the scenarios, one after the other, each waiting until its last citizen was served and
closed:

- poisson: ``--citizens`` citizens arriving as a Poisson process at ``--rate`` per second (7/s
  by default: about 0.3 of a core for one process on the 2-CPU bench machine);
- burst: ``--burst`` more citizens arriving uniformly within ``--burst-window`` seconds.

Per scenario: request → agent-notified latency of the citizens assigned at once (an agent was
free: they were assigned in Redis before their own request's ``after()`` returned) p50/p90/p99/
max, with its split (request → Redis assignment → publish → received); the queue wait of the
others (request → notified; bound by service times, not a latency); per-agent served counts
within each unit (min / max / stddev, Jain's index); how many were served and closed; errors.
Baselines measured first in the same run on the same Redis: a bare Redis pub/sub round trip, a
bare ``Queue.assign`` (the Lua script, no SQL), and the Redis-only request path (enqueue →
assign → publish → received) — what the same work costs without SQL and the bot.

One process does everything (citizens, agents, the app), as one ``bangban serve`` process serving
both the channels and the workspace would. Exits 1 when anyone was left unserved.

``--steps`` adds wall-clock timers around the steps of the measured request messages only (a
little overhead; not for the headline figures). ``--profile FILE`` runs the scenarios under
cProfile (main thread; aiosqlite's SQLite work runs in its own threads) and prints the top
functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import logging
import os
import platform
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
# bench/ (this script's directory, first on sys.path) holds http.py, which would shadow the
# standard library's http package that aiohttp imports
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
REPO = _HERE.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from bench.steptimer import wrap  # noqa: E402

DEVSET = REPO / "tests" / "data" / "devset.tsv"
UNITS_YAML = REPO / "config" / "units.yaml"
CHANNEL = "web"
PASSWORD = "bench-password-0123456789"
HEARTBEAT_EVERY_S = 10.0

#: the units served, with how a citizen gets there: matters whose default unit it is, or a cue
#: appended to the question (core.routing's topics)
UNITS: list[tuple[str, tuple[str, ...], str]] = [
    ("police", ("M03", "M04", "M05", "M06", "M07"), ""),
    ("hrss", ("M08", "M09", "M10", "M11", "M12"), ""),
    ("planning", ("M13", "M14"), ""),
    ("housing", ("M15", "M16", "M17"), ""),
    ("health", ("M20",), ""),
    ("medicare", ("M26",), ""),
    ("tax", tuple(f"M{n}" for n in range(27, 36)), ""),
    ("civil-community", ("M03", "M04", "M05", "M09", "M10", "M11"), "，在社区受理中心办"),
    ("lingang", ("M18",), "，我在临港新片区"),
    ("bigdata", ("M03", "M08", "M13", "M15", "M20", "M26", "M27"), "，网上办理时登录不上"),
]

# -- statistics -------------------------------------------------------------------------------


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (the same rule as bench/http.py)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def jain(xs: list[float]) -> float:
    """Jain's fairness index: 1 = all equal, 1/n = one got everything."""
    sq = sum(x * x for x in xs)
    return (sum(xs) ** 2) / (len(xs) * sq) if sq else float("nan")


def ms(x: float) -> str:
    return "—" if x != x else f"{1000 * x:,.1f}"  # noqa: PLR0124 - NaN check


def summary_ms(xs: list[float]) -> str:
    if not xs:
        return "(none)"
    return (f"n={len(xs):>4}  p50 {ms(pct(xs, 50)):>8}  p90 {ms(pct(xs, 90)):>8}  "
            f"p99 {ms(pct(xs, 99)):>8}  max {ms(max(xs)):>8} ms")


# -- records ----------------------------------------------------------------------------------


@dataclass
class Citizen:
    user: str
    scenario: str
    unit: str
    question: str
    phrase: str
    arrival: float  # seconds after the scenario's start
    read_s: float
    conv: str | None = None
    t_request: float | None = None  # just before handle() of the request for a person
    t_handled: float | None = None  # handle() returned
    t_lua: float | None = None  # the Redis assignment (Queue.assign returned it)
    t_pub: float | None = None  # the 'assigned' event about to be published
    t_notified: float | None = None  # the 'assigned' event arrived at the subscriber
    immediate: bool | None = None  # assigned before its own request's after() returned
    unit_landed: str | None = None
    position: int | None = None
    agent: str | None = None
    handoff: str | None = None
    closed: bool = False
    assigned_events: int = 0
    cpu_request: float | None = None  # process CPU (all threads) at t_request
    cpu_notified: float | None = None  # … and when notified: meaningful one at a time (solo)
    trips_notified: Counter | None = None  # round trips up to the 'assigned' publish (--steps)
    trips_total: Counter | None = None  # round trips of the whole handle() (--steps)
    #: the agent's think and service seconds; None = drawn from --think / --service
    think_s: float | None = None
    service_s: float | None = None


@dataclass
class Stats:
    errors: Counter = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    events: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        self.error_samples.setdefault(kind, detail[:300])


class WarningCounter(logging.Handler):
    def __init__(self, stats: Stats) -> None:
        super().__init__(logging.WARNING)
        self.stats = stats

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        key = f"{record.levelname} {record.name}: {msg[:80]}"
        self.stats.warnings[key] += 1


# -- storage ----------------------------------------------------------------------------------


async def pg_admin(url: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = await asyncpg.connect(host=u.host or "127.0.0.1", port=u.port or 5432,
                                 user=u.username or "postgres", password=u.password,
                                 database=u.database or "postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def units_file(tmp: Path, cap: int) -> Path:
    """config/units.yaml with every unit open around the clock, the cap given, overflow only
    after an hour."""
    raw = yaml.safe_load(UNITS_YAML.read_text(encoding="utf-8"))
    for name in raw["schedules"]:
        raw["schedules"][name] = {"days": "daily", "periods": ["00:00-24:00"]}
    raw["defaults"]["agent_cap"] = cap
    raw["defaults"]["overflow_after_s"] = 3600
    for entry in raw["units"].values():
        entry.pop("agent_cap", None)
        entry.pop("overflow_after_s", None)
    path = tmp / "units.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def redis_cpu(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return float("nan")


# -- step timers (--steps) ----------------------------------------------------------------------

IN_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)
#: (conversation, round trips) of the measured request in flight (--steps): SQL statements,
#: transactions, pool checkouts, Redis commands
TRIPS: contextvars.ContextVar[tuple[str, Counter] | None] = contextvars.ContextVar(
    "trips", default=None)
#: every round trip of the process (--steps), whoever sends it: per-scenario totals
ALL_TRIPS: Counter = Counter()
STEP_STATS: dict[str, list[float]] = {}

STEPS = [  # (module, class, method, label): timed only inside a measured request's handle()
    ("core.dialog.service", "DialogService", "handle", "handle(), total"),
    ("core.dialog.bot", "Bot", "respond", "bot respond (CPU on the loop)"),
    ("core.conversations", "ConversationStore", "current", "SQL conversation current"),
    ("core.conversations", "ConversationStore", "append", "SQL append messages"),
    ("core.conversations", "ConversationStore", "get", "SQL conversation get"),
    ("core.dialog.service", "DialogService", "load_context", "Redis load context"),
    ("core.dialog.service", "DialogService", "save_context", "Redis save context"),
    ("core.bus", "Bus", "publish", "Redis bus publish"),
    ("core.bus", "Events", "publish", "Redis events publish"),
    ("core.handoff.service", "HandoffService", "request", "handoff request (route + open)"),
    ("core.handoff.store", "HandoffStore", "open", "SQL handoff open (insert + update)"),
    ("core.queue", "Queue", "enqueue", "Redis enqueue (Lua)"),
    ("core.queue", "Queue", "position", "Redis position"),
    ("core.queue", "Queue", "expected_wait_s", "Redis expected wait"),
    ("core.handoff.service", "HandoffService", "after", "after(), total"),
    ("core.handoff.store", "HandoffStore", "current", "SQL handoff current"),
    ("core.queue", "Queue", "assign", "Redis assign (Lua)"),
    ("core.handoff.store", "HandoffStore", "assign_waiting", "SQL handoff assign (2 updates)"),
    ("core.notify", "Notifier", "tell_many", "notify citizen (SQL append, bus)"),
]


def count_round_trips(hub: Any) -> None:
    """Count what the measured request sends to SQL and Redis (--steps)."""
    from sqlalchemy import event

    def bump(kind: str) -> None:
        ALL_TRIPS[kind] += 1
        mine = TRIPS.get()
        if mine is not None:
            mine[1][kind] += 1

    sync = hub.engine.sync_engine
    event.listen(sync, "before_cursor_execute", lambda *a, **k: bump("SQL statements"))
    event.listen(sync, "begin", lambda *a, **k: bump("SQL transactions"))
    event.listen(sync.pool, "checkout", lambda *a, **k: bump("SQL pool checkouts"))
    redis = hub.redis
    orig = redis.execute_command

    async def execute_command(*args: Any, **options: Any) -> Any:
        bump("Redis commands")
        return await orig(*args, **options)

    redis.execute_command = execute_command


def install_step_timers() -> None:
    for step in STEPS:
        wrap(STEP_STATS, *step, active=IN_REQUEST.get)


# -- baselines --------------------------------------------------------------------------------


class Receiver:
    """A bare redis-py subscriber on its own connection; resolves a future per message id."""

    def __init__(self, url: str, channel: str) -> None:
        from core.redisconn import async_client

        self.client = async_client(url)
        self.channel = channel
        self.waiting: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(self.channel)
        while (await self.pubsub.get_message(timeout=1.0)) is None:
            pass  # the subscribe confirmation
        self._task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async for m in self.pubsub.listen():
            if m.get("type") != "message":
                continue
            data = json.loads(m["data"])
            fut = self.waiting.pop(data["conversation"], None)
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await self.pubsub.aclose()
        await self.client.aclose()


async def baselines(url: str, prefix: str, units: Any, unit_codes: list[str], agents: int,
                    n: int) -> dict[str, list[float]]:
    """Bare Redis pub/sub round trip, bare Queue.assign, and enqueue → assign → publish →
    received, sequentially, on the app's kind of client (its own pool) and the same Redis."""
    from core.queue import Queue
    from core.redisconn import async_client

    out: dict[str, list[float]] = {"pubsub": [], "assign": [], "redis_path": []}
    client = async_client(url)
    channel = f"{prefix}baseline:workspace"
    recv = Receiver(url, channel)
    await recv.start()
    qprefix = f"{prefix}baseline:"
    queue = Queue(client, qprefix, units=units)
    try:
        for u in unit_codes:
            for i in range(agents):
                await queue.heartbeat(f"b-{u}-{i}", [u], "online", cap=10**6)
        loop = asyncio.get_running_loop()
        for i in range(n):  # 1. bare pub/sub: publish an event-sized message, wait for it
            conv = f"pc{i}"
            fut = recv.waiting[conv] = loop.create_future()
            event = {"type": "assigned", "unit": "police", "handoff": f"h{secrets.token_hex(8)}",
                     "conversation": conv, "agent": f"s{secrets.token_hex(8)}"}
            t0 = time.perf_counter()
            await client.publish(channel, json.dumps(event, ensure_ascii=False))
            out["pubsub"].append(await fut - t0)
        for i in range(n):  # 2. bare Queue.assign, and 3. the Redis-only request path
            unit = unit_codes[i % len(unit_codes)]
            conv = f"bc{i}"
            fut = recv.waiting[conv] = loop.create_future()
            t0 = time.perf_counter()
            await queue.enqueue(unit, conv, {"channel": CHANNEL, "user": conv})
            t1 = time.perf_counter()
            a = await queue.assign(unit)
            t2 = time.perf_counter()
            await client.publish(channel, json.dumps(
                {"type": "assigned", "unit": unit, "handoff": conv, "conversation": conv,
                 "agent": a.agent if a else None}, ensure_ascii=False))
            t3 = await fut
            out["assign"].append(t2 - t1)
            out["redis_path"].append(t3 - t0)
            if a is not None:
                await queue.release(a.agent, conv)
    finally:
        await recv.stop()
        keys = [k async for k in client.scan_iter(match=f"{qprefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i:i + 500])
        await client.aclose()
    return out


# -- the simulation ---------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.stats = Stats()
        self.by_conv: dict[str, Citizen] = {}
        self.citizens: list[Citizen] = []
        self.agents: dict[str, Any] = {}  # staff id -> StaffUser
        self.agent_unit: dict[str, str] = {}
        self.served: dict[str, Counter] = defaultdict(Counter)  # scenario -> agent -> closes
        self.holding: Counter = Counter()  # agent -> conversations held now (as notified)
        self.max_holding: Counter = Counter()  # agent -> most held at once
        self.serving: set[asyncio.Task] = set()
        self.scenario = "warmup"
        self.loop_lag: list[float] = []
        self.pool_used: list[int] = []  # SQL connections checked out, sampled with loop_lag
        self.idle_cpu = 0.0  # fraction of a core the process uses at rest

    # -- preparation -------------------------------------------------------------------------

    def pairs(self, bot: Any, codes: list[str]) -> dict[str, list[tuple[str, str]]]:
        """(question, phrase) pairs that lead to each unit, asked of the app's own bot."""
        from core.dialog.bot import Context
        from core.routing import detect_topic, route

        by_matter: dict[str, list[str]] = defaultdict(list)
        phrases: list[str] = []
        for line in DEVSET.read_text(encoding="utf-8").splitlines():
            expect, sep, q = line.partition("\t")
            if not sep or expect.startswith("#"):
                continue
            if expect == "human":
                phrases.append(q.strip())
            elif expect[:1] == "M" and expect[1:3].isdigit():
                by_matter[expect[:3]].append(q.strip())
        out: dict[str, list[tuple[str, str]]] = {}
        spec = {code: (matters, cue) for code, matters, cue in UNITS}
        for k, code in enumerate(codes):
            matters, cue = spec[code]
            found = []
            for j, q in enumerate(q for m in matters for q in by_matter[m]):
                for p in (phrases[(j + k) % len(phrases)],):
                    ctx = Context()
                    first = bot.respond(q + cue, ctx)
                    if first.handoff:
                        continue
                    second = bot.respond(p, ctx)
                    if not second.handoff:
                        continue
                    d = route(ctx.matter, district=None,
                              topic=detect_topic(ctx.last_question) or detect_topic(p))
                    if d.action == "queue" and d.unit == code:
                        found.append((q + cue, p))
            if not found:
                raise SystemExit(f"no dev-set question leads to {code}; pick other units")
            out[code] = found
        return out

    def make_citizens(self, scenario: str, n: int, pairs: dict[str, list[tuple[str, str]]],
                      arrivals: list[float]) -> list[Citizen]:
        codes = list(pairs)
        out = []
        for i in range(n):
            unit = self.rng.choice(codes)
            q, p = self.rng.choice(pairs[unit])
            out.append(Citizen(f"bench-{scenario}-{i}-{secrets.token_hex(3)}", scenario, unit, q,
                               p, arrivals[i], self.rng.uniform(0.2, 1.0)))
        return out

    # -- the app's side, observed ------------------------------------------------------------

    def observe(self, hub: Any) -> None:
        """Wrap three calls of the running app (instances only) to timestamp the request path."""
        service, queue, events = hub.handoff, hub.handoff.queue, hub.events
        orig_assign, orig_after, orig_publish = queue.assign, service.after, events.publish

        async def assign(unit: str, **kw: Any):
            a = await orig_assign(unit, **kw)
            if a is not None and (c := self.by_conv.get(a.conversation)) is not None:
                c.t_lua = time.perf_counter()
            return a

        async def after(conversation_id: str, replies: list[Any]) -> None:
            try:
                await orig_after(conversation_id, replies)
            finally:
                c = self.by_conv.get(conversation_id)
                if c is not None and c.immediate is None:
                    c.immediate = c.t_lua is not None

        async def publish(event: dict[str, Any]) -> None:
            if event.get("type") == "assigned" and (
                    c := self.by_conv.get(event.get("conversation", ""))) is not None:
                c.t_pub = time.perf_counter()
                mine = TRIPS.get()  # counted only when assigned by its own request
                if mine is not None and mine[0] == c.conv and c.trips_notified is None:
                    c.trips_notified = Counter(mine[1])
            await orig_publish(event)

        queue.assign, service.after, events.publish = assign, after, publish

    async def on_event(self, e: dict[str, Any]) -> None:
        """The workspace subscriber: 'assigned' = agent notified; the agent starts serving."""
        now = time.perf_counter()
        kind = e.get("type")
        self.stats.events[kind] += 1
        if kind != "assigned":
            return
        c = self.by_conv.get(e.get("conversation", ""))
        if c is None:
            return
        c.assigned_events += 1
        if c.t_notified is not None:
            self.stats.error("assigned twice", json.dumps(e))
            return
        c.t_notified, c.agent, c.handoff = now, e.get("agent"), e.get("handoff")
        c.cpu_notified = time.process_time()
        user = self.agents.get(c.agent or "")
        if user is None:
            self.stats.error("assigned to an unknown agent", json.dumps(e))
            return
        if self.agent_unit[user.id] != e.get("unit"):
            self.stats.error("agent of another unit", json.dumps(e))
        self.holding[user.id] += 1
        self.max_holding[user.id] = max(self.max_holding[user.id], self.holding[user.id])
        task = asyncio.create_task(self.serve(user, c))
        self.serving.add(task)
        task.add_done_callback(self.serving.discard)

    async def serve(self, user: Any, c: Citizen) -> None:
        desk = self.hub.desk
        think = self.rng.uniform(*self.args.think) if c.think_s is None else c.think_s
        service = self.rng.uniform(*self.args.service) if c.service_s is None else c.service_s
        try:
            await asyncio.sleep(think)
            await desk.send(user, c.handoff, f"您好，我是{user.display_name}，请问您具体想办理什么？")
            await asyncio.sleep(service)
            # counted free before the close: its release may assign the next one at once
            self.holding[user.id] -= 1
            await desk.close(user, c.handoff, "resolved")
            c.closed = True
            self.served[c.scenario][user.id] += 1
        except Exception as exc:  # noqa: BLE001 - counted and shown
            self.stats.error(f"agent: {type(exc).__name__}", repr(exc))

    async def heartbeats(self) -> None:
        desk = self.hub.desk
        agents = list(self.agents.values())
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S / len(agents))
            for user in agents:  # spread over the interval, as independent browsers would
                try:
                    await desk.heartbeat(user)
                except Exception as exc:  # noqa: BLE001
                    self.stats.error(f"heartbeat: {type(exc).__name__}", repr(exc))
                await asyncio.sleep(HEARTBEAT_EVERY_S / len(agents))

    async def lag_probe(self) -> None:
        """How late the event loop wakes a 10 ms sleep: CPU saturation of this process."""
        pool = self.hub.engine.pool
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.loop_lag.append(time.perf_counter() - t - 0.01)
            checked = getattr(pool, "checkedout", None)
            if checked is not None:
                self.pool_used.append(checked())

    # -- citizens ----------------------------------------------------------------------------

    async def citizen(self, c: Citizen, start: float) -> None:
        from core.dialog.models import Inbound

        dialog = self.hub.dialog
        await asyncio.sleep(max(0.0, start + c.arrival - time.perf_counter()))
        try:
            res = await dialog.handle(Inbound(channel=CHANNEL, channel_user=c.user,
                                              text=c.question, msg_id=f"{c.user}-1"))
            c.conv = res.conversation_id
            self.by_conv[c.conv] = c
            await asyncio.sleep(c.read_s)
            token = IN_REQUEST.set(True)
            trips = Counter() if self.args.steps else None
            token2 = TRIPS.set((c.conv, trips) if trips is not None else None)
            c.cpu_request, c.t_request = time.process_time(), time.perf_counter()
            try:
                res = await dialog.handle(Inbound(channel=CHANNEL, channel_user=c.user,
                                                  text=c.phrase, msg_id=f"{c.user}-2"))
            finally:
                c.t_handled = time.perf_counter()
                IN_REQUEST.reset(token)
                TRIPS.reset(token2)
                c.trips_total = trips
        except Exception as exc:  # noqa: BLE001
            self.stats.error(f"citizen: {type(exc).__name__}", repr(exc))
            return
        status = next((o.queue for o in reversed(res.replies) if o.queue is not None), None)
        if status is None:
            self.stats.error("request not queued", " / ".join(o.text[:60] for o in res.replies))
            return
        c.unit_landed, c.position = status.unit, status.position
        if status.unit != c.unit:
            self.stats.error("request landed on another unit", f"{c.unit} -> {status.unit}")

    async def run_scenario(self, name: str, people: list[Citizen], timeout: float) -> float:
        self.scenario = name
        for c in people:
            self.citizens.append(c)
        start = time.perf_counter()
        await asyncio.gather(*(self.citizen(c, start) for c in people))
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if all(c.closed for c in people if c.unit_landed) and not any(
                    c.t_notified and not c.closed for c in people):
                break
            await asyncio.sleep(0.2)
        if self.serving:
            await asyncio.wait(list(self.serving), timeout=max(0.0, deadline - time.perf_counter()))
        return time.perf_counter() - start


# -- report -----------------------------------------------------------------------------------


def report(bench: Bench, name: str, people: list[Citizen], wall: float, cpu: float,
           redis_cpu_s: float, lag: list[float], pool: list[int],
           load: tuple[float, float]) -> bool:
    immediate = [c for c in people if c.immediate and c.t_notified]
    waited = [c for c in people if c.immediate is False and c.t_notified]
    closed = sum(c.closed for c in people)
    print(f"\n== {name}: {len(people)} citizens in {wall:.1f} s "
          f"(load average {load[0]:.2f} → {load[1]:.2f}; this process {cpu:.1f} s CPU = "
          f"{100 * cpu / wall:.0f} % of a core"
          + (f", redis-server {redis_cpu_s:.1f} s" if redis_cpu_s == redis_cpu_s else "")
          + f"; event-loop lag p50 {ms(pct(lag, 50))} / p99 {ms(pct(lag, 99))} ms)")
    net = (cpu - bench.idle_cpu * wall) / len(people)
    print(f"  CPU per citizen, net of rest: {1000 * net:.1f} ms")
    sql_pool = bench.hub.engine.pool
    limit = (sql_pool.size() + max(getattr(sql_pool, "_max_overflow", 0), 0)
             if hasattr(sql_pool, "size") else "?")
    if pool:
        print(f"  SQL connections checked out (sampled every ~10 ms): p50 {pct(pool, 50)}, "
              f"p99 {pct(pool, 99)}, max {max(pool)} of {limit}")
    print(f"  assigned at once (agent free): {len(immediate)}; waited in line: {len(waited)}")
    print("  request → agent notified, assigned at once:")
    print("    " + summary_ms([c.t_notified - c.t_request for c in immediate]))
    if immediate:
        parts = [("request → Redis assignment", [c.t_lua - c.t_request for c in immediate
                                                  if c.t_lua]),
                 ("assignment → event published", [c.t_pub - c.t_lua for c in immediate
                                                    if c.t_pub and c.t_lua]),
                 ("published → received", [c.t_notified - c.t_pub for c in immediate
                                            if c.t_pub])]
        for label, xs in parts:
            print(f"    {label:<30} p50 {ms(pct(xs, 50)):>8}  p99 {ms(pct(xs, 99)):>8} ms")
        xs = [c.t_handled - c.t_request for c in immediate]
        print(f"    {'handle() returned':<30} p50 {ms(pct(xs, 50)):>8}  p99 {ms(pct(xs, 99)):>8} ms")
    print("  queue wait (request → agent notified), those who waited:")
    print("    " + summary_ms([c.t_notified - c.t_request for c in waited]))
    print(f"  served and closed: {closed} / {len(people)}"
          + ("  — everyone served" if closed == len(people) else "  — NOT everyone served"))
    # fairness within each unit
    served = bench.served[name]
    print("  fairness (conversations closed per agent, within each unit):")
    print(f"    {'unit':<16} {'citizens':>8} {'agents':>6} {'min':>4} {'max':>4} {'stddev':>7} "
          f"{'Jain':>6}")
    jains = []
    for unit in sorted({c.unit for c in people}):
        agents = [a for a, u in bench.agent_unit.items() if u == unit]
        xs = [served.get(a, 0) for a in agents]
        j = jain(xs)
        jains.append(j)
        print(f"    {unit:<16} {sum(c.unit == unit for c in people):>8} {len(agents):>6} "
              f"{min(xs):>4} {max(xs):>4} {statistics.pstdev(xs):>7.2f} {j:>6.3f}")
    if jains:
        print(f"    Jain's index: mean {statistics.mean(jains):.3f}, lowest {min(jains):.3f}")
    return closed == len(people)


def print_steps(name: str, table: dict[str, list[float]], people: list[Citizen]) -> None:
    print(f"\n{name}: where a request's time goes (--steps; wall time inside the measured "
          f"handle() calls)")
    calls = table.get("handle(), total", [1, 0])[0] or 1
    for label, (n, total) in sorted(table.items(), key=lambda kv: -kv[1][1]):
        print(f"  {label:<45} {int(n):>6} calls  {1000 * total / max(n, 1):8.2f} ms/call  "
              f"{1000 * total / calls:8.2f} ms/request")
    kinds = ("SQL pool checkouts", "SQL transactions", "SQL statements", "Redis commands")
    for label, attr in (("up to the 'assigned' event (assigned at once)", "trips_notified"),
                        ("whole handle() of the request", "trips_total")):
        rows = [getattr(c, attr) for c in people
                if getattr(c, attr) is not None and (attr == "trips_total" or c.immediate)]
        if rows:
            print(f"  round trips per request, {label}, mean of {len(rows)}: " + ", ".join(
                f"{k} {statistics.mean(r[k] for r in rows):.1f}" for k in kinds))


# -- main -------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    from aiohttp import web
    from argon2 import PasswordHasher
    from sqlalchemy.engine import make_url

    from core.app import create_app
    from core.appkeys import HUB
    from core.bus import Events
    from core.config import load_settings
    from core.redisconn import EmbeddedRedis, async_client
    from core.staff import StaffStore

    tmp = Path(tempfile.mkdtemp(prefix="bangban-bench-handoff-"))
    bench = Bench(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().addHandler(WarningCounter(bench.stats))
    embedded = None
    drop_db: str | None = None
    prefix = f"bbbench{secrets.token_hex(3)}:"
    runner = None
    watcher = None
    redis_pid = None
    ok = True
    try:
        # storage
        if args.redis_url:
            redis_url = args.redis_url
            where_redis = f"external Redis {redis_url} (key prefix {prefix})"
        else:
            embedded = EmbeddedRedis(tmp / "data", appendonly=True)
            redis_url = await asyncio.to_thread(embedded.start)
            redis_pid = embedded.process.pid if embedded.process else None
            where_redis = "embedded redis-server (append-only, unix socket)"
        if args.database_url and make_url(args.database_url).get_backend_name() == "postgresql":
            name = f"bangban_bench_{secrets.token_hex(4)}"
            await pg_admin(args.database_url, f'CREATE DATABASE "{name}"')
            drop_db = name
            database_url = make_url(args.database_url).set(database=name).render_as_string(
                hide_password=False)
            where_db = f"PostgreSQL, fresh database {name} (dropped afterwards)"
        elif args.database_url:
            database_url, where_db = args.database_url, args.database_url
        else:
            database_url = f"sqlite+aiosqlite:///{tmp / 'data' / 'bangban.db'}"
            where_db = "SQLite file in a temporary directory"
        print(f"storage: {where_db}; {where_redis}")
        settings = load_settings(environ={}, overrides={
            "data_dir": str(tmp / "data"), "database.url": database_url, "redis.url": redis_url,
            "redis.prefix": prefix, "handoff.units_file": str(units_file(tmp, args.cap)),
            "logging.level": "WARNING", "kb.load_seed_on_start": True})
        if args.steps:
            install_step_timers()
        t0 = time.perf_counter()
        app = create_app(settings)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()  # every resource starts; no HTTP listener
        hub = bench.hub = app[HUB]
        print(f"app started in {time.perf_counter() - t0:.1f} s (migrations, seed KB, sweep every "
              f"{settings.handoff.sweep_interval_s:g} s)")

        # units, questions, agents
        codes = [code for code, _, _ in UNITS][:args.units]
        t0 = time.perf_counter()
        pairs = bench.pairs(hub.dialog.bot, codes)
        print(f"units: {', '.join(codes)}; (question, phrase) pairs per unit "
              f"{min(map(len, pairs.values()))}–{max(map(len, pairs.values()))}, chosen with the "
              f"app's bot in {time.perf_counter() - t0:.1f} s")
        staff = StaffStore(hub.engine, hasher=PasswordHasher(time_cost=1, memory_cost=8,
                                                             parallelism=1))
        for unit in codes:
            for i in range(args.agents_per_unit):
                user = await staff.add_user(f"bench-{unit}-{i}", PASSWORD, roles=["agent"],
                                            units=[unit], display_name=f"{unit}坐席{i + 1}")
                bench.agents[user.id] = user
                bench.agent_unit[user.id] = unit
        bench.observe(hub)
        if args.steps:
            count_round_trips(hub)
        watcher_client = async_client(redis_url)
        watcher = Events(watcher_client, prefix)
        watcher.subscribe(bench.on_event)
        await watcher.start()
        for user in bench.agents.values():
            await hub.desk.heartbeat(user)
        background = [asyncio.create_task(bench.heartbeats()),
                      asyncio.create_task(bench.lag_probe())]
        print(f"{len(bench.agents)} agents online ({args.agents_per_unit} per unit, cap "
              f"{args.cap}: {len(bench.agents) * args.cap} places); think "
              f"{args.think[0]:g}–{args.think[1]:g} s, service {args.service[0]:g}–"
              f"{args.service[1]:g} s after the reply")

        # baselines, same Redis, before any load
        base = await baselines(redis_url, prefix, hub.handoff.units, codes, args.agents_per_unit,
                               args.baseline)
        # warm-up: one citizen per unit, not counted
        warm = bench.make_citizens("warmup", len(codes), pairs, [0.05 * i for i in range(len(codes))])
        await bench.run_scenario("warmup", warm, 60)
        steps: dict[str, dict[str, list[float]]] = {}
        # ours with no concurrency: one citizen at a time, the agent answering and closing at
        # once; the next citizen starts when the previous one is closed
        # what the process burns with nobody asking: sweep, heartbeats, the lag probe
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(args.idle)
        idle_cpu = bench.idle_cpu = (time.process_time() - cpu0) / (time.perf_counter() - t0)
        STEP_STATS.clear()
        ALL_TRIPS.clear()
        solo = bench.make_citizens("solo", args.solo, pairs, [0.0] * args.solo)
        bench.scenario = "solo"
        print(f"\nrunning solo: {len(solo)} citizens one at a time …", flush=True)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for c in solo:
            c.think_s = c.service_s = 0.0
            c.read_s = 0.05
            bench.citizens.append(c)
            await bench.citizen(c, time.perf_counter())
            deadline = time.perf_counter() + 10
            while not c.closed and time.perf_counter() < deadline and c.unit_landed:
                await asyncio.sleep(0.005)
        steps["solo"] = dict(STEP_STATS)
        all_trips = {"solo": Counter(ALL_TRIPS)}
        solo_wall = time.perf_counter() - t0
        solo_cpu = (time.process_time() - cpu0 - idle_cpu * solo_wall) / max(len(solo), 1)

        rates = {"poisson": args.rate, "burst": args.burst / max(args.burst_window, 1e-9)}
        t, arrivals = 0.0, []
        for _ in range(args.citizens):
            t += bench.rng.expovariate(args.rate)
            arrivals.append(t)
        scenarios = [("poisson", bench.make_citizens("poisson", args.citizens, pairs, arrivals))]
        if args.burst:
            scenarios.append(("burst", bench.make_citizens(
                "burst", args.burst, pairs,
                sorted(bench.rng.uniform(0, args.burst_window) for _ in range(args.burst)))))
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
        results = []
        for name, people in scenarios:
            print(f"\nrunning {name}: {len(people)} citizens at {rates[name]:,.1f}/s "
                  f"(expected arrival span {people[-1].arrival:.1f} s) …", flush=True)
            load0, cpu0, rcpu0 = os.getloadavg()[0], time.process_time(), redis_cpu(redis_pid)
            bench.loop_lag.clear()
            bench.pool_used.clear()
            STEP_STATS.clear()
            ALL_TRIPS.clear()
            if profiler:
                profiler.enable()
            wall = await bench.run_scenario(name, people, args.timeout)
            if profiler:
                profiler.disable()
            steps[name] = dict(STEP_STATS)
            all_trips[name] = Counter(ALL_TRIPS)
            results.append((name, people, wall, time.process_time() - cpu0,
                            redis_cpu(redis_pid) - rcpu0, list(bench.loop_lag),
                            list(bench.pool_used),
                            (load0, os.getloadavg()[0])))
        for task in background:
            task.cancel()

        # the table
        print("\n" + "=" * 100)
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; {where_db}; "
              f"{where_redis}")
        print(f"{len(codes)} units × {args.agents_per_unit} agents, cap {args.cap}; seed "
              f"{args.seed}")
        print(f"\nbaselines (sequential, idle, same Redis; {args.baseline} each):")
        print(f"  {'Redis pub/sub round trip':<46}" + summary_ms(base["pubsub"]))
        print(f"  {'Queue.assign (the Lua script, no SQL)':<46}" + summary_ms(base["assign"]))
        print(f"  {'enqueue → assign → publish → received':<46}" + summary_ms(base["redis_path"]))
        solo_lat = [c.t_notified - c.t_request for c in solo if c.t_notified and c.immediate]
        print(f"  {'ours, one citizen at a time (request → notified)':<46}" + summary_ms(solo_lat))
        solo_cpu_req = [c.cpu_notified - c.cpu_request for c in solo
                        if c.t_notified and c.immediate]
        print(f"  {'  … CPU of this process in that time':<46}" + summary_ms(solo_cpu_req))
        print(f"  this process at rest (sweep, heartbeats, probe): {100 * idle_cpu:.1f} % of a core; "
              f"one citizen's whole life (question, request, agent reply, close) costs "
              f"{1000 * solo_cpu:.1f} ms CPU here (solo, net of rest)")
        for r in results:
            ok = report(bench, *r) and ok
        head = results[0][1]
        imm = [c.t_notified - c.t_request for c in head if c.immediate and c.t_notified]
        if imm:
            p99 = pct(imm, 99)
            print(f"\nTARGET p99 request → agent notified < 100 ms ({results[0][0]}, assigned at "
                  f"once): {1000 * p99:,.1f} ms — {'met' if p99 < 0.1 else 'NOT met'}")
            rp = pct(base["redis_path"], 50)
            print(f"ours / Redis-only path: p50 {pct(imm, 50) / rp:,.1f}×, p99 "
                  f"{p99 / pct(base['redis_path'], 99):,.1f}×  (Redis-only p50 {ms(rp)} ms)")
        everyone = [c for c in bench.citizens if c.scenario != "warmup"]
        unserved = [c for c in everyone if not c.closed]
        print(f"\neveryone served: {'yes' if not unserved else 'NO'} "
              f"({len(everyone) - len(unserved)} / {len(everyone)} closed)")
        most = max(bench.max_holding.values(), default=0)
        print(f"most conversations one agent held at once: {most} (cap {args.cap})")
        if most > args.cap:
            bench.stats.error("an agent held more than its cap", f"{most} > {args.cap}")
        missed = sum(1 for c in everyone if c.unit_landed and c.t_notified is None)
        if missed:
            bench.stats.error("queued but never notified", f"{missed} citizens")
        print(f"errors: {sum(bench.stats.errors.values())}")
        for kind, n in bench.stats.errors.most_common():
            print(f"  {n:>5} × {kind}: {bench.stats.error_samples.get(kind, '')}")
        print(f"workspace events seen: {dict(bench.stats.events)}")
        if bench.stats.warnings:
            print("log warnings:")
            for key, n in bench.stats.warnings.most_common(10):
                print(f"  {n:>5} × {key}")
        if args.steps:
            for name, table in steps.items():
                people = [c for c in bench.citizens if c.scenario == name]
                print_steps(name, table, people)
                n = max(len(people), 1)
                print("  round trips of the whole process per citizen (question, request, "
                      "agent reply, close, sweep, heartbeats): " + ", ".join(
                          f"{k} {v / n:.1f}" for k, v in sorted(all_trips[name].items())))
        if profiler:
            import pstats

            profiler.dump_stats(args.profile)
            print(f"\ncProfile written to {args.profile}; top 30 by own time:")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        ok = ok and not unserved
    finally:
        # bounded, so a stop that hangs cannot keep the temporary Redis and database alive
        for what, stop in (("workspace subscriber", watcher and watcher.stop),
                           ("app", runner and runner.cleanup)):
            if stop:
                try:
                    await asyncio.wait_for(stop(), 60)
                except (TimeoutError, asyncio.TimeoutError):
                    print(f"WARNING: stopping the {what} took over 60 s; going on")
        if watcher is not None:
            await watcher.redis.aclose()
        if args.redis_url:
            from core.redisconn import async_client as _client

            client = _client(args.redis_url)
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i:i + 500])
            await client.aclose()
            print(f"deleted {len(keys)} keys under {prefix} from {args.redis_url}")
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        if drop_db:
            await pg_admin(args.database_url, f'DROP DATABASE IF EXISTS "{drop_db}" WITH (FORCE)')
            print(f"dropped database {drop_db}")
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


def span(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    return float(lo), float(hi or lo)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--citizens", type=int, default=1000, help="citizens of the Poisson scenario")
    p.add_argument("--rate", type=float, default=7.0, help="Poisson arrivals per second")
    p.add_argument("--burst", type=int, default=300, help="citizens of the burst (0: none)")
    p.add_argument("--burst-window", type=float, default=1.0,
                   help="seconds over which the burst arrives")
    p.add_argument("--units", type=int, default=10, choices=range(1, len(UNITS) + 1),
                   metavar="N", help=f"units served (1–{len(UNITS)})")
    p.add_argument("--agents-per-unit", type=int, default=5)
    p.add_argument("--cap", type=int, default=5, help="conversations per agent at once")
    p.add_argument("--think", type=span, default=(0.5, 2.0),
                   help="seconds before the agent's reply, uniform in LO,HI")
    p.add_argument("--service", type=span, default=(2.0, 8.0),
                   help="seconds from the reply to the close, uniform in LO,HI")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--baseline", type=int, default=500, help="round trips per baseline")
    p.add_argument("--idle", type=float, default=5.0,
                   help="seconds of rest to measure the background CPU")
    p.add_argument("--solo", type=int, default=100,
                   help="citizens served one at a time before the scenarios (ours, unloaded)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds a scenario may take to serve everyone")
    p.add_argument("--database-url", help="e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test "
                   "(a fresh database is created on that server and dropped afterwards)")
    p.add_argument("--redis-url", help="e.g. redis://127.0.0.1:6379/0 (a unique key prefix, "
                   "deleted afterwards)")
    p.add_argument("--steps", action="store_true",
                   help="time the steps of the measured requests (adds a little overhead)")
    p.add_argument("--profile", metavar="FILE", help="cProfile the scenarios into FILE")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
