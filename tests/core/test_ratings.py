"""Ratings (好差评), their follow-ups (差评整改) and resolution figures, on the real database."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from core.db.schema import rating_followups, ratings
from core.ratings import (
    RatingStore,
    followup_due,
    parse_text_rating,
    parse_text_resolved,
    resolution_rates,
)

# a Monday, 10:00 Beijing time; 2025-10-01..08 is the National Day holiday
MONDAY = datetime(2025, 9, 22, 2, 0, tzinfo=UTC)


def bot(conv: str, msg: str, **kw):
    return {"conversation_id": conv, "segment": "bot", "target": msg, "channel": "web", **kw}


def agent(conv: str, service: str, unit: str = "rsj", **kw):
    return {"conversation_id": conv, "segment": "agent", "target": service, "unit": unit,
            "agent": "u1", "channel": "web", **kw}


async def count(engine, table) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar()


async def test_a_rating_is_recorded_once_and_a_second_one_updates_it(engine):
    store = RatingStore(engine)
    first = await store.record(bot("c1", "m1", resolved=True), now=MONDAY)
    assert first["resolved"] is True and first["level"] is None
    assert first["day"] == "2025-09-22" and first["followup_id"] is None

    # a text channel: 已解决 tapped, then "5" typed — one rating with both
    second = await store.record(bot("c1", "m1", level=5, comment="  很清楚 "))
    assert second["id"] == first["id"]
    assert (second["resolved"], second["level"], second["comment"]) == (True, 5, "很清楚")
    assert second["created_at"] == MONDAY and second["updated_at"] > MONDAY
    assert await count(engine, ratings) == 1

    # another answer in the same conversation is another segment
    await store.record(bot("c1", "m2", resolved=False))
    assert await count(engine, ratings) == 2
    assert (await store.get("c1", "bot", "m1"))["level"] == 5


@pytest.mark.parametrize("bad", [
    bot("c1", "m1"),                                   # nothing rated
    bot("c1", "m1", level=0), bot("c1", "m1", level=6),
    bot("c1", "m1", level=3, comment="很" * 501),
    {**bot("c1", "m1", level=3), "segment": "robot"},
    agent("c1", "s1", unit=None, level=3),             # agent service without its unit
    {**bot("c1", "m1", level=3), "stars": 5},
    bot("", "m1", level=3),
])
async def test_invalid_ratings_are_refused(engine, bad):
    with pytest.raises(ValidationError):
        await RatingStore(engine).record(bad)
    assert await count(engine, ratings) == 0


async def test_comment_of_500_characters_is_kept_and_control_characters_dropped(engine):
    row = await RatingStore(engine).record(bot("c1", "m1", level=4, comment="好" * 498 + "\x07!"))
    assert row["comment"] == "好" * 498 + "!"


async def test_low_ratings_open_one_followup_with_a_working_day_deadline(engine):
    store = RatingStore(engine)
    good = await store.record(agent("c1", "s1", level=4, resolved=True), now=MONDAY)
    assert good["followup_id"] is None

    low = await store.record(agent("c2", "s2", level=2, comment="态度差"), now=MONDAY)
    unresolved = await store.record(agent("c3", "s3", unit="gaj", resolved=False), now=MONDAY)
    bot_low = await store.record(bot("c4", "m4", level=1), now=MONDAY)
    bot_unresolved = await store.record(bot("c5", "m5", resolved=False), now=MONDAY)
    assert low["followup_id"] and unresolved["followup_id"] and bot_low["followup_id"]
    assert bot_unresolved["followup_id"] is None  # the bot's 未解决 goes to the KB gap list

    # rated again (even lower): still one follow-up
    again = await store.record(agent("c2", "s2", level=1), now=MONDAY)
    assert again["followup_id"] == low["followup_id"]
    assert await count(engine, rating_followups) == 3

    mine = await store.followups(units=["rsj"])
    assert [f["rating_id"] for f in mine] == [low["id"]]
    f = mine[0]
    assert (f["unit"], f["status"], f["level"], f["comment"]) == ("rsj", "open", 1, "态度差")
    # Monday 22 Sep + 5 working days (Sunday 28 Sep is a 调休 working day) = Sunday 28 Sep,
    # end of the day in Beijing
    assert f["due_at"] == datetime(2025, 9, 28, 15, 59, 59, tzinfo=UTC)

    closed = await store.close_followup(f["id"], by="supervisor1", note="已回访")
    assert closed["changed"] and closed["status"] == "closed" and closed["note"] == "已回访"
    assert (await store.close_followup(f["id"], by="x"))["changed"] is False
    assert await store.followups(units=["rsj"]) == []
    assert len(await store.followups(units=["rsj"], status=None)) == 1


def test_followup_deadline_skips_public_holidays():
    # Friday 26 Sep 2025: Sun 28 Sep is a 调休 working day, 1–8 Oct the holiday
    friday = datetime(2025, 9, 26, 2, 0, tzinfo=UTC)
    assert followup_due(friday).astimezone(UTC).date() == date(2025, 10, 10)


@pytest.mark.parametrize("text, level", [
    ("5", 5), ("５", 5), (" 1 ", 1), ("1分", 1), ("3分。", 3), ("五星", 5), ("四颗星", 4),
    ("评分4", 4), ("非常满意", 5), ("满意", 4), ("基本满意", 3), ("不满意", 2),
    ("非常不满意！", 1), ("5 非常满意", 5), ("1-非常不满意", 1),
    ("0", None), ("6", None), ("15", None), ("", None), (None, None), ("5号窗口", None),
    ("5 不满意", None), ("我不满意这个回答，怎么办", None), ("社保卡怎么办", None),
])
def test_parse_text_rating(text, level):
    assert parse_text_rating(text) == level


def test_parse_text_resolved():
    assert parse_text_resolved("已解决") is True
    assert parse_text_resolved("未解决。") is False
    assert parse_text_resolved("怎么解决") is None


async def test_resolution_rates_by_day_unit_and_channel(engine):
    store = RatingStore(engine)
    tuesday = datetime(2025, 9, 23, 2, 0, tzinfo=UTC)
    late_monday = datetime(2025, 9, 22, 16, 30, tzinfo=UTC)  # already Tuesday in Beijing
    await store.record(bot("c1", "m1", resolved=True), now=MONDAY)
    await store.record(bot("c2", "m2", resolved=False), now=MONDAY)
    await store.record(bot("c3", "m3", resolved=True, channel="wechat"), now=late_monday)
    await store.record(bot("c4", "m4", level=4), now=tuesday)       # no yes/no: not in the rate
    await store.record(agent("c5", "s5", resolved=True, level=5), now=MONDAY)
    await store.record(agent("c6", "s6", resolved=True, level=4), now=tuesday)
    await store.record(agent("c7", "s7", unit="gaj", resolved=False, level=2), now=tuesday)

    by_day = await resolution_rates(engine, segment="bot", by="day")
    assert by_day == [
        {"key": "2025-09-22", "yes": 1, "no": 1, "rated": 2, "rate": 0.5, "avg_level": None},
        {"key": "2025-09-23", "yes": 1, "no": 0, "rated": 2, "rate": 1.0, "avg_level": 4.0},
    ]
    by_channel = await resolution_rates(engine, segment="bot", by="channel")
    assert [(r["key"], r["yes"], r["no"]) for r in by_channel] == [("web", 1, 1),
                                                                    ("wechat", 1, 0)]
    human = await resolution_rates(engine, segment="agent", by="unit")
    assert [(r["key"], r["yes"], r["no"], r["rate"], r["avg_level"]) for r in human] == [
        ("gaj", 0, 1, 0.0, 2.0), ("rsj", 2, 0, 1.0, 4.5)]
    since = await resolution_rates(engine, segment="agent", by="day",
                                   since=date(2025, 9, 23), units=["rsj"])
    assert [(r["key"], r["yes"]) for r in since] == [("2025-09-23", 1)]
    assert await resolution_rates(engine, segment="agent", until=date(2025, 9, 1)) == []
    with pytest.raises(ValueError):
        await resolution_rates(engine, segment="bot", by="matter")
