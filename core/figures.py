"""The help desk's figures (运行指标), from SQL only, the same on SQLite and PostgreSQL.

For a range of Beijing days, overall and grouped by day, unit, matter or channel:

* **bot resolution rate** — bot-segment ratings 已解决 / (已解决 + 未解决) (好差评);
* **human resolution rate**, two ways: agent-segment ratings 已解决 / (已解决 + 未解决) — the 好差评
  figure the seed's 90 % target is about — and the share of closed service segments the agent
  closed as resolved (a view that does not depend on citizens bothering to rate);
* **first-response time** p50 / p90 and the share within 60 s: ``first_response_at −
  requested_at`` of segments served live. 留言 (a message left outside working hours) is
  answered the next working day and would swamp the live figure, so it is left out and counted;
* **dispatch rate** — conversations with a 12345 ticket / conversations that had human help;
* counts of conversations, segments, tickets and ratings.

Ratings and segments carry a ``day`` column (Beijing date as text) and are grouped on it;
conversations only have timestamps, so their day is computed with a CASE over the range's UTC
day boundaries (portable SQL, no time-zone functions). Percentiles are computed in Python from
the fetched durations (nearest rank), so both databases give the same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import and_, case, distinct, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db.schema import conversations, handoffs, ratings, tickets
from .figures_models import (BOT_TARGET, BY, DISPATCH_TARGET, FIRST_DAY, FIRST_RESPONSE_TARGET_S,
                             HUMAN_TARGET, LAST_DAY, MAX_DAYS, NOTES, OPEN_STATES, SHANGHAI, By,
                             Counts, Figures, FiguresQuery, FirstResponse, Group, Rate, Targets,
                             default_range)

__all__ = ["BOT_TARGET", "BY", "DISPATCH_TARGET", "FIRST_DAY", "FIRST_RESPONSE_TARGET_S",
           "HUMAN_TARGET", "LAST_DAY", "MAX_DAYS", "NOTES", "OPEN_STATES", "SHANGHAI", "By",
           "Counts", "Figures", "FiguresQuery", "FirstResponse", "Group", "Rate", "Targets",
           "compute", "default_range", "day_start", "left_message", "percentile", "rating_rates"]


# -- the SQL ----------------------------------------------------------------------------------


def day_start(d: date) -> datetime:
    """The UTC instant a Beijing day begins."""
    return datetime.combine(d, time(), SHANGHAI).astimezone(UTC)


def _beijing_day(column: Any, days: list[date]) -> Any:
    """'YYYY-MM-DD' of a UTC timestamp column, for rows already limited to ``days``."""
    return case(*[(column < day_start(d + timedelta(1)), d.isoformat()) for d in days],
                else_=None)


def _filtered(q: Any, unit_col: Any, channel_col: Any, fq: FiguresQuery) -> Any:
    if fq.units is not None:
        q = q.where(unit_col.in_(fq.units))
    if fq.channels is not None:
        q = q.where(channel_col.in_(fq.channels))
    return q


def _rating_key(by: str) -> Any:
    # a rating has no matter: an agent's takes its segment's, the bot's its conversation's
    return {"day": ratings.c.day, "unit": ratings.c.unit, "channel": ratings.c.channel,
            "matter": func.coalesce(handoffs.c.matter, conversations.c.matter)}[by]


async def _rating_rows(conn: AsyncConnection, segment: str, by: str, since: date | None,
                       until: date | None, units: list[str] | None,
                       channels: list[str] | None) -> list[dict[str, Any]]:
    key = _rating_key(by)
    yes = func.sum(case((ratings.c.resolved == True, 1), else_=0))  # noqa: E712 - SQL
    no = func.sum(case((ratings.c.resolved == False, 1), else_=0))  # noqa: E712
    source = ratings
    if by == "matter":
        source = ratings.outerjoin(handoffs, and_(ratings.c.segment == "agent",
                                                  handoffs.c.id == ratings.c.target)) \
            .outerjoin(conversations, conversations.c.id == ratings.c.conversation_id)
    q = (select(key.label("key"), yes.label("yes"), no.label("no"), func.count().label("rated"),
                func.sum(ratings.c.level).label("level_sum"),
                func.count(ratings.c.level).label("level_n"))
         .select_from(source).where(ratings.c.segment == segment).group_by(key).order_by(key))
    if since is not None:
        q = q.where(ratings.c.day >= since.isoformat())
    if until is not None:
        q = q.where(ratings.c.day <= until.isoformat())
    if units is not None:
        q = q.where(ratings.c.unit.in_(units))
    if channels is not None:
        q = q.where(ratings.c.channel.in_(channels))
    return [{"key": r.key, "yes": int(r.yes or 0), "no": int(r.no or 0), "rated": int(r.rated),
             "level_sum": int(r.level_sum or 0), "level_n": int(r.level_n)}
            for r in (await conn.execute(q)).all()]


async def rating_rates(engine: AsyncEngine, *, segment: Literal["bot", "agent"], by: str = "day",
                       since: date | None = None, until: date | None = None,
                       units: list[str] | None = None,
                       channels: list[str] | None = None) -> list[dict[str, Any]]:
    """Resolution rate = resolved yes / (yes + no) over ``segment``'s ratings, grouped ``by``
    (day, unit, matter or channel). Each row: key, yes, no, rated (every rating of the group,
    those without 已解决/未解决 included), rate (None when yes + no is 0) and avg_level (None
    without levels). This is the computation behind core.ratings.resolution_rates.
    """
    if by not in BY:
        raise ValueError(f"cannot group by {by!r}; one of {', '.join(BY)}")
    async with engine.connect() as conn:
        rows = await _rating_rows(conn, segment, by, since, until, units, channels)
    return [{"key": r["key"], "yes": r["yes"], "no": r["no"], "rated": r["rated"],
             "rate": round(r["yes"] / (r["yes"] + r["no"]), 4) if r["yes"] + r["no"] else None,
             "avg_level": round(r["level_sum"] / r["level_n"], 2) if r["level_n"] else None}
            for r in rows]


def _handoff_key(by: str) -> Any:
    return {"day": handoffs.c.day, "unit": handoffs.c.unit, "matter": handoffs.c.matter,
            "channel": handoffs.c.channel}[by]


def _handoffs_in(q: Any, fq: FiguresQuery) -> Any:
    q = q.where(handoffs.c.day >= fq.since.isoformat(), handoffs.c.day <= fq.until.isoformat())
    return _filtered(q, handoffs.c.unit, handoffs.c.channel, fq)


async def _segments(conn: AsyncConnection, fq: FiguresQuery) -> dict[Any, dict[str, int]]:
    key = _handoff_key(fq.by)
    closed = handoffs.c.state == "closed"
    q = _handoffs_in(select(
        key.label("key"), func.count().label("handoffs"),
        func.sum(case((closed, 1), else_=0)).label("closed"),
        func.sum(case((and_(closed, handoffs.c.resolution == "resolved"), 1), else_=0)
                 ).label("resolved")).group_by(key), fq)
    return {r.key: {"handoffs": int(r.handoffs), "closed": int(r.closed or 0),
                    "resolved": int(r.resolved or 0)} for r in (await conn.execute(q)).all()}


def left_message(state: str, meta: dict[str, Any] | None) -> bool:
    """Whether a segment was a 留言 (left outside working hours) rather than served live.

    A 留言 is opened in state 'message'; once an agent takes it, ``meta["left_message"]`` keeps
    the fact (core.handoff sets it), since the state moves on to 'assigned' and 'closed'.
    """
    return state == "message" or bool((meta or {}).get("left_message"))


async def _response_times(conn: AsyncConnection, fq: FiguresQuery
                          ) -> dict[Any, dict[str, Any]]:
    """Per key: live first-response durations (s), never-answered and 留言 counts."""
    key = _handoff_key(fq.by)
    q = _handoffs_in(select(key.label("key"), handoffs.c.state, handoffs.c.meta,
                            handoffs.c.requested_at, handoffs.c.first_response_at)
                     .where(handoffs.c.assigned_at.is_not(None)
                            | (handoffs.c.state == "message")), fq)
    out: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {"durations": [], "not_answered": 0, "messages": 0})
    for r in (await conn.execute(q)).all():
        group = out[r.key]
        if left_message(r.state, r.meta):
            group["messages"] += 1
        elif r.first_response_at is not None:
            waited = r.first_response_at - r.requested_at
            group["durations"].append(max(waited.total_seconds(), 0.0))
        elif r.state not in OPEN_STATES:
            group["not_answered"] += 1
    return out


async def _dispatch(conn: AsyncConnection, fq: FiguresQuery, grouped: bool
                    ) -> dict[Any, dict[str, int]]:
    """Per key (or overall, under key None): conversations helped, dispatched, tickets."""
    key = _handoff_key(fq.by) if grouped else None
    has_ticket = exists().where(tickets.c.conversation_id == handoffs.c.conversation_id)
    cols = [func.count(distinct(handoffs.c.conversation_id)).label("helped"),
            func.count(distinct(case((has_ticket, handoffs.c.conversation_id), else_=None))
                       ).label("dispatched")]
    q = _handoffs_in(select(*([key.label("key")] if grouped else []), *cols), fq)
    t = _handoffs_in(select(*([key.label("key")] if grouped else []),
                            func.count(distinct(tickets.c.id)).label("tickets"))
                     .select_from(handoffs.join(
                         tickets, tickets.c.conversation_id == handoffs.c.conversation_id)), fq)
    if grouped:
        q, t = q.group_by(key), t.group_by(key)
    out: dict[Any, dict[str, int]] = {}
    for r in (await conn.execute(q)).all():
        out[r.key if grouped else None] = {"helped": int(r.helped),
                                           "dispatched": int(r.dispatched), "tickets": 0}
    for r in (await conn.execute(t)).all():
        k = r.key if grouped else None
        out.setdefault(k, {"helped": 0, "dispatched": 0, "tickets": 0})["tickets"] = \
            int(r.tickets)
    return out


async def _conversations(conn: AsyncConnection, fq: FiguresQuery) -> dict[Any, int]:
    key = {"day": _beijing_day(conversations.c.started_at, fq.days()),
           "unit": conversations.c.unit, "matter": conversations.c.matter,
           "channel": conversations.c.channel}[fq.by]
    q = _filtered(select(key.label("key"), func.count().label("n")).where(
        conversations.c.started_at >= day_start(fq.since),
        conversations.c.started_at < day_start(fq.until + timedelta(1))).group_by(key),
        conversations.c.unit, conversations.c.channel, fq)
    return {r.key: int(r.n) for r in (await conn.execute(q)).all()}


# -- putting it together ----------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p % of values at or below it."""
    if not sorted_values:
        return None
    rank = max(math.ceil(p / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def _first_response(durations: list[float], not_answered: int, messages: int) -> FirstResponse:
    xs = sorted(durations)
    within = sum(1 for x in xs if x <= FIRST_RESPONSE_TARGET_S)
    p50, p90 = percentile(xs, 50), percentile(xs, 90)
    return FirstResponse(
        answered=len(xs), p50_s=None if p50 is None else round(p50, 1),
        p90_s=None if p90 is None else round(p90, 1),
        within_target=Rate.of(within, len(xs), 1.0, "min"), not_answered=not_answered,
        messages_excluded=messages)


def _group(key: Any, bot: dict, agent: dict, seg: dict, times: dict, disp: dict,
           convs: int) -> Group:
    return Group(
        key=key,
        bot_resolution=Rate.of(bot.get("yes", 0), bot.get("yes", 0) + bot.get("no", 0),
                               BOT_TARGET, "min"),
        human_resolution=Rate.of(agent.get("yes", 0), agent.get("yes", 0) + agent.get("no", 0),
                                 HUMAN_TARGET, "min"),
        human_closed_resolved=Rate.of(seg.get("resolved", 0), seg.get("closed", 0),
                                      HUMAN_TARGET, "min"),
        first_response=_first_response(times.get("durations", []), times.get("not_answered", 0),
                                       times.get("messages", 0)),
        dispatch=Rate.of(disp.get("dispatched", 0), disp.get("helped", 0), DISPATCH_TARGET,
                         "max"),
        counts=Counts(conversations=convs, conversations_with_help=disp.get("helped", 0),
                      handoffs=seg.get("handoffs", 0), handoffs_closed=seg.get("closed", 0),
                      tickets=disp.get("tickets", 0), ratings_bot=bot.get("rated", 0),
                      ratings_agent=agent.get("rated", 0)))


def _summed(groups: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for g in groups:
        for k, v in g.items():
            total[k] = total.get(k, [] if isinstance(v, list) else 0) + v
    return total


def _order(keys: set[Any]) -> list[Any]:
    return sorted(keys, key=lambda k: (k is None, k or ""))


async def compute(engine: AsyncEngine, fq: FiguresQuery, *, now: datetime | None = None
                  ) -> Figures:
    """Every figure for ``fq``, overall and per group (every day of the range when by day)."""
    async with engine.connect() as conn:
        rated = {}
        for segment in ("bot", "agent"):
            rows = await _rating_rows(conn, segment, fq.by, fq.since, fq.until, fq.units,
                                      fq.channels)
            rated[segment] = {r.pop("key"): r for r in rows}
        seg = await _segments(conn, fq)
        times = await _response_times(conn, fq)
        disp = await _dispatch(conn, fq, grouped=True)
        overall_disp = (await _dispatch(conn, fq, grouped=False)).get(None, {})
        convs = await _conversations(conn, fq)
    keys = set(rated["bot"]) | set(rated["agent"]) | set(seg) | set(times) | set(disp) | set(convs)
    if fq.by == "day":
        keys = {d.isoformat() for d in fq.days()}  # every day, so charts have no gaps
    groups = [_group(k, rated["bot"].get(k, {}), rated["agent"].get(k, {}), seg.get(k, {}),
                     times.get(k, {}), disp.get(k, {}), convs.get(k, 0)) for k in _order(keys)]
    overall = _group(None, _summed(rated["bot"].values()), _summed(rated["agent"].values()),
                     _summed(seg.values()), _summed(times.values()), overall_disp,
                     sum(convs.values()))
    return Figures(date_from=fq.since, date_to=fq.until, by=fq.by, units=fq.units,
                   channels=fq.channels, generated_at=now or datetime.now(UTC),
                   overall=overall, groups=groups)
