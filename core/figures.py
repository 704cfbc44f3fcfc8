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
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import and_, case, distinct, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db.schema import conversations, handoffs, ratings, tickets

SHANGHAI = ZoneInfo("Asia/Shanghai")
By = Literal["day", "unit", "matter", "channel"]
BY: tuple[str, ...] = ("day", "unit", "matter", "channel")
#: the longest range one query may cover
MAX_DAYS = 366
#: segment states that are still someone's work (no outcome yet)
OPEN_STATES = ("waiting", "message", "assigned")

# The seed's targets (沪府办发〔2021〕26号): 小申 solves 50 %, 线上人工帮办 90 %, staff answer within
# one minute, and no more than 10 % goes on to 12345 (派单率原则上不高于10%).
BOT_TARGET = 0.5
HUMAN_TARGET = 0.9
DISPATCH_TARGET = 0.1
FIRST_RESPONSE_TARGET_S = 60

NOTES = {
    "dates": "日期均为北京时间；评价按首次评价的日期统计，人工服务按群众请求人工的日期统计。",
    "bot_resolution": "小申解决率 = 小申回答被评“已解决”的次数 ÷ 被评“已解决”或“未解决”的次数。目标不低于50%。",
    "human_resolution": "人工帮办解决率（好差评）= 人工服务被评“已解决”的次数 ÷ 被评“已解决”或“未解决”的次数。"
                        "目标不低于90%。",
    "human_closed_resolved": "结单解决率 = 坐席结单时标记“已解决”的服务 ÷ 已结单的服务（不含转办、取消、溢出），"
                             "仅供参考，不以群众评价为准。",
    "first_response": "首次响应时间 = 坐席首次回复时间 − 群众请求人工的时间，只统计在线实时接入的服务；"
                      "非工作时间的留言于下一个工作日答复，不计入（另行计数）。P50、P90为最近秩百分位。"
                      "目标为1分钟（60秒）内首次响应。",
    "dispatch": "派单率 = 有12345工单的会话 ÷ 获得人工帮办的会话。目标不高于10%。",
    "units": "按单位筛选时，小申的回答不属于任何单位，小申解决率不计入。",
}


class FiguresQuery(BaseModel):
    """What to compute: a range of Beijing days (both inclusive), a grouping, optional filters."""

    model_config = ConfigDict(extra="forbid")

    since: date
    until: date
    by: By = "day"
    #: None: every unit; a list (possibly a supervisor's own) restricts everything to those units
    units: list[str] | None = None
    channels: list[str] | None = None

    @model_validator(mode="after")
    def _range(self) -> FiguresQuery:
        if self.since > self.until:
            raise ValueError("开始日期晚于结束日期。")
        if (self.until - self.since).days + 1 > MAX_DAYS:
            raise ValueError(f"日期范围最长{MAX_DAYS}天。")
        return self

    def days(self) -> list[date]:
        return [self.since + timedelta(n) for n in range((self.until - self.since).days + 1)]


class Rate(BaseModel):
    numerator: int
    denominator: int
    #: numerator / denominator, 4 decimals; None when there is nothing to divide by
    rate: float | None
    target: float | None = None
    #: "min": the rate should be at least the target; "max": at most
    target_kind: Literal["min", "max"] | None = None
    meets_target: bool | None = None

    @classmethod
    def of(cls, num: int, den: int, target: float | None = None,
           kind: Literal["min", "max"] | None = None) -> Rate:
        rate = round(num / den, 4) if den else None
        meets = None
        if rate is not None and target is not None:
            meets = rate >= target if kind == "min" else rate <= target
        return cls(numerator=num, denominator=den, rate=rate, target=target, target_kind=kind,
                   meets_target=meets)


class FirstResponse(BaseModel):
    #: live segments with a first response (the population of the percentiles)
    answered: int
    p50_s: float | None
    p90_s: float | None
    #: answered within FIRST_RESPONSE_TARGET_S / answered; the seed wants every one within it
    within_target: Rate
    target_s: int = FIRST_RESPONSE_TARGET_S
    #: live segments an agent took but closed without ever answering
    not_answered: int
    #: 留言 segments, answered the next working day, left out of the figures above
    messages_excluded: int


class Counts(BaseModel):
    #: conversations started in the range (whatever happened in them)
    conversations: int
    #: conversations with a human-help segment requested in the range (the dispatch denominator)
    conversations_with_help: int
    handoffs: int
    handoffs_closed: int
    #: 12345 tickets of those conversations (any delivery status)
    tickets: int
    ratings_bot: int
    ratings_agent: int


class Group(BaseModel):
    #: the day / unit / matter / channel; None: no unit or matter (e.g. the bot's conversations)
    key: str | None
    label: str | None = None
    bot_resolution: Rate
    human_resolution: Rate
    human_closed_resolved: Rate
    first_response: FirstResponse
    dispatch: Rate
    counts: Counts


class Targets(BaseModel):
    bot_resolution_min: float = BOT_TARGET
    human_resolution_min: float = HUMAN_TARGET
    dispatch_max: float = DISPATCH_TARGET
    first_response_s: int = FIRST_RESPONSE_TARGET_S


class Figures(BaseModel):
    #: "from" and "to" on the wire, like the query parameters (dump with by_alias=True)
    model_config = ConfigDict(populate_by_name=True)

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    by: By
    units: list[str] | None
    channels: list[str] | None
    generated_at: datetime
    targets: Targets = Targets()
    notes: dict[str, str] = NOTES
    overall: Group
    groups: list[Group]


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


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


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
            waited = _aware(r.first_response_at) - _aware(r.requested_at)
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


def default_range(today: date | None = None, days: int = 7) -> tuple[date, date]:
    """The last ``days`` Beijing days, today included."""
    today = today or datetime.now(SHANGHAI).date()
    return today - timedelta(days - 1), today


__all__ = ["FiguresQuery", "Figures", "Group", "Rate", "FirstResponse", "Counts", "Targets",
           "compute", "rating_rates", "default_range", "percentile", "left_message", "BY",
           "MAX_DAYS", "NOTES"]
