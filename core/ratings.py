"""Ratings (好差评) per service segment, their follow-ups (差评整改) and the resolution figures.

A segment is the bot's answer (``segment="bot"``, target = the answer's message id) or one agent
service (``segment="agent"``, target = the service id, with its unit and agent). Each segment is
rated once: rating it again updates the row (fields left out keep their value), so a citizen who
taps 已解决 and then sends "5" on a text channel gives one rating with both.

A level of 2 or less (不满意 / 非常不满意), or an agent service rated 未解决, opens one follow-up
for the unit's supervisors, due at the end of the fifth working day (Beijing time).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, time as dtime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db.schema import rating_followups, ratings
from .errors import NotFound
from .workdays import add_workdays

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: 差评整改 deadline, in working days after the rating
FOLLOWUP_WORKDAYS = 5
MAX_COMMENT = 500
#: a level at or below this opens a follow-up
LOW_LEVEL = 2
LEVELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
#: what text-only channels append to the rating request
TEXT_PROMPT = "请回复1-5评价本次服务：5 非常满意，4 满意，3 基本满意，2 不满意，1 非常不满意。"


def utcnow() -> datetime:
    return datetime.now(UTC)


class RatingInput(BaseModel):
    """One rating as a channel or the workspace hands it in."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    conversation_id: str = Field(min_length=1, max_length=32)
    segment: Literal["bot", "agent"]
    target: str = Field(min_length=1, max_length=64)
    channel: str = Field(min_length=1, max_length=32)
    unit: str | None = Field(default=None, max_length=32)
    agent: str | None = Field(default=None, max_length=32)
    resolved: bool | None = None
    level: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)

    @field_validator("comment", "unit", "agent")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None

    @field_validator("comment")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is None:
            return v
        return "".join(ch for ch in v if ch in "\n\t" or unicodedata.category(ch)[0] != "C")

    @model_validator(mode="after")
    def _something_rated(self) -> RatingInput:
        if self.resolved is None and self.level is None and self.comment is None:
            raise ValueError("a rating needs resolved, level or comment")
        if self.segment == "agent" and not self.unit:
            raise ValueError("an agent segment is rated with its unit")
        return self


def needs_followup(row: dict[str, Any]) -> bool:
    level = row.get("level")
    if level is not None and level <= LOW_LEVEL:
        return True
    return row.get("segment") == "agent" and row.get("resolved") is False


def followup_due(at: datetime, workdays: int = FOLLOWUP_WORKDAYS) -> datetime:
    """The end (23:59:59 Beijing time) of the ``workdays``-th working day after ``at``."""
    local_due = add_workdays(at.astimezone(SHANGHAI), workdays)
    return datetime.combine(local_due, dtime(23, 59, 59), SHANGHAI).astimezone(UTC)


class RatingStore:
    def __init__(self, engine: AsyncEngine, *, followup_workdays: int = FOLLOWUP_WORKDAYS) -> None:
        self.engine = engine
        self.followup_workdays = followup_workdays

    async def record(self, rating: RatingInput | dict[str, Any] | None = None, /,
                     now: datetime | None = None, **fields: Any) -> dict[str, Any]:
        """Store a rating (or update the segment's earlier one); returns the row, with
        ``followup_id`` set when the rating has an open follow-up.

        Raises pydantic's ValidationError on bad input.
        """
        if rating is None:
            rating = RatingInput.model_validate(fields)
        elif not isinstance(rating, RatingInput):
            rating = RatingInput.model_validate(rating)
        now = now or utcnow()
        try:
            return await self._record(rating, now)
        except IntegrityError:  # the same segment rated concurrently: now it exists, update it
            return await self._record(rating, now)

    async def _record(self, rating: RatingInput, now: datetime) -> dict[str, Any]:
        key = (ratings.c.conversation_id == rating.conversation_id) & \
              (ratings.c.segment == rating.segment) & (ratings.c.target == rating.target)
        given = {k: v for k, v in rating.model_dump().items()
                 if v is not None and k not in ("conversation_id", "segment", "target")}
        async with self.engine.begin() as conn:
            existing = (await conn.execute(select(ratings.c.id).where(key))).scalar()
            if existing is None:
                await conn.execute(insert(ratings).values(
                    **rating.model_dump(), day=now.astimezone(SHANGHAI).date().isoformat(),
                    created_at=now, updated_at=now))
            else:
                await conn.execute(update(ratings).where(ratings.c.id == existing)
                                   .values(**given, updated_at=now))
            row = dict((await conn.execute(select(ratings).where(key))).mappings().one())
            row["followup_id"] = await self._followup(conn, row, now)
        return _row(row)

    async def _followup(self, conn: AsyncConnection, row: dict[str, Any],
                        now: datetime) -> int | None:
        found = (await conn.execute(select(rating_followups.c.id).where(
            rating_followups.c.rating_id == row["id"]))).scalar()
        if found is not None or not needs_followup(row):
            return found
        result = await conn.execute(insert(rating_followups).values(
            rating_id=row["id"], unit=row["unit"], status="open",
            due_at=followup_due(now, self.followup_workdays), created_at=now))
        return result.inserted_primary_key[0]

    async def get(self, conversation_id: str, segment: str, target: str) -> dict[str, Any] | None:
        q = select(ratings).where(ratings.c.conversation_id == conversation_id,
                                  ratings.c.segment == segment, ratings.c.target == target)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).mappings().first()
        return _row(dict(row)) if row else None

    async def followups(self, *, units: list[str] | None = None, status: str | None = "open",
                        limit: int = 500) -> list[dict[str, Any]]:
        """Follow-ups with their rating, earliest deadline first (``units``: a supervisor's)."""
        q = (select(rating_followups, ratings.c.conversation_id, ratings.c.segment,
                    ratings.c.target, ratings.c.agent, ratings.c.channel, ratings.c.level,
                    ratings.c.resolved, ratings.c.comment)
             .join(ratings, ratings.c.id == rating_followups.c.rating_id)
             .order_by(rating_followups.c.due_at, rating_followups.c.id).limit(limit))
        if units is not None:
            q = q.where(rating_followups.c.unit.in_(units))
        if status is not None:
            q = q.where(rating_followups.c.status == status)
        async with self.engine.connect() as conn:
            return [_row(dict(r)) for r in (await conn.execute(q)).mappings().all()]

    async def close_followup(self, followup_id: int, *, by: str, note: str | None = None,
                             now: datetime | None = None) -> dict[str, Any]:
        """Close a follow-up with what was done; closing a closed one changes nothing."""
        now = now or utcnow()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(rating_followups)
                .where(rating_followups.c.id == followup_id, rating_followups.c.status == "open")
                .values(status="closed", closed_at=now, closed_by=by[:64],
                        note=(note or "")[:2000] or None))
            row = (await conn.execute(select(rating_followups).where(
                rating_followups.c.id == followup_id))).mappings().first()
        if row is None:
            raise NotFound(f"no follow-up {followup_id}")
        out = _row(dict(row))
        out["changed"] = result.rowcount == 1
        return out


def _row(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("resolved") is not None:
        row["resolved"] = bool(row["resolved"])
    return row


# -- text-only channels: "回复1-5" ---------------------------------------------------------------

_NAMES = {"非常满意": 5, "很满意": 5, "满意": 4, "基本满意": 3, "一般": 3, "不满意": 2,
          "不太满意": 2, "非常不满意": 1, "很不满意": 1}
_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_LEVEL = re.compile(r"^(?:评价|评分|打分|评)?([1-5一二两三四五])(?:分|星|颗星)?(?:[:：\-—\s]*(.*))?$")
_STRIP = " \t\r\n。.!！~～,，、'\"“”‘’"


def parse_text_rating(text: str | None) -> int | None:
    """The level (1–5) in a text reply to "回复1-5", or None when it is not a rating.

    "5", "５", "5分", "五星", "评分4", "非常满意", "1 非常不满意" are ratings; "15", "6", "0",
    "我不满意这个回答，怎么办" are not (a longer message is a new question, not a rating).
    """
    if not text:
        return None
    t = unicodedata.normalize("NFKC", text).strip(_STRIP)
    if not t or len(t) > 12:
        return None
    if t in _NAMES:
        return _NAMES[t]
    m = _LEVEL.match(t)
    if not m:
        return None
    level = int(m.group(1)) if m.group(1).isdigit() else _NUMERALS[m.group(1)]
    rest = (m.group(2) or "").strip(_STRIP)
    if rest and _NAMES.get(rest) != level:  # "5 非常满意" yes; "5 不满意" or "5号窗口" no
        return None
    return level


def parse_text_resolved(text: str | None) -> bool | None:
    """已解决 / 未解决 typed on a text channel (the bot's quick replies, without buttons)."""
    if not text:
        return None
    t = unicodedata.normalize("NFKC", text).strip(_STRIP)
    if t in ("已解决", "解决了", "解决"):
        return True
    if t in ("未解决", "没解决", "没有解决", "没用"):
        return False
    return None


# -- figures ----------------------------------------------------------------------------------

GROUPS = {"day": ratings.c.day, "unit": ratings.c.unit, "channel": ratings.c.channel}


async def resolution_rates(engine: AsyncEngine, *, segment: Literal["bot", "agent"],
                           by: Literal["day", "unit", "channel"] = "day",
                           since: date | None = None, until: date | None = None,
                           units: list[str] | None = None) -> list[dict[str, Any]]:
    """Resolution rate = resolved yes / (yes + no) over ``segment``'s ratings, grouped ``by``.

    ``segment="bot"`` is the bot resolution rate, ``"agent"`` the human one. Days are Beijing
    dates, ``since`` and ``until`` inclusive. Each row: key, yes, no, rated (all ratings of the
    group, including those without an answer to 已解决/未解决), rate (None when yes + no is 0)
    and avg_level (None without levels).
    """
    if by not in GROUPS:
        raise ValueError(f"cannot group by {by!r}; one of {', '.join(GROUPS)}")
    from .figures import rating_rates  # one computation for the figures API and this

    return await rating_rates(engine, segment=segment, by=by, since=since, until=until,
                              units=units)


__all__ = ["RatingInput", "RatingStore", "parse_text_rating", "parse_text_resolved",
           "resolution_rates", "needs_followup", "followup_due", "LEVELS", "TEXT_PROMPT"]
