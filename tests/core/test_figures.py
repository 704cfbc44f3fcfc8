"""The figures, from real rows (conversations, service segments, ratings, tickets) on the test
database: the numbers a supervisor would read, overall and by day, unit, matter and channel."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from core.db.schema import citizens, conversations, handoffs, tickets
from core.figures import FiguresQuery, compute, default_range, percentile, rating_rates
from core.ratings import RatingStore, resolution_rates

SHANGHAI = ZoneInfo("Asia/Shanghai")
MON, TUE = date(2025, 9, 22), date(2025, 9, 23)


def bj(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    """A Beijing wall-clock time, as the UTC instant the database stores."""
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=SHANGHAI).astimezone(UTC)


async def conversation(conn, cid: str, channel: str, started: datetime, unit=None, matter=None):
    await conn.execute(citizens.insert().values(id=f"u-{cid}", created_at=started))
    await conn.execute(conversations.insert().values(
        id=cid, citizen_id=f"u-{cid}", channel=channel, channel_user=f"user-{cid}",
        status="closed", matter=matter, unit=unit, msg_count=0, started_at=started,
        last_at=started))


async def segment(conn, hid: str, cid: str, channel: str, unit: str, matter: str | None,
                  state: str, requested: datetime, *, resolution=None, assigned_s=None,
                  first_response_s=None, left_message=False) -> None:
    """A human-help segment; its ``day`` is the Beijing date of the request, as core.handoff
    writes it."""
    await conn.execute(handoffs.insert().values(
        id=hid, conversation_id=cid, channel=channel, channel_user=f"user-{cid}", unit=unit,
        matter=matter, reason="matter", state=state, agent="a1" if assigned_s is not None
        else None, agent_name=None, requested_at=requested,
        assigned_at=None if assigned_s is None else requested + timedelta(seconds=assigned_s),
        first_response_at=None if first_response_s is None
        else requested + timedelta(seconds=first_response_s),
        closed_at=requested + timedelta(minutes=10) if state not in ("waiting", "message",
                                                                      "assigned") else None,
        resolution=resolution, sla_breached=False, previous_id=None, note=None,
        day=requested.astimezone(SHANGHAI).date().isoformat(),
        meta={"left_message": True} if left_message else {}))


async def ticket(conn, tid: str, cid: str, unit: str) -> None:
    now = bj(MON, 12)
    await conn.execute(tickets.insert().values(
        id=tid, conversation_id=cid, unit=unit, summary="派单", transcript=[],
        status="sent", attempts=1, idempotency_key=f"k-{tid}", created_at=now, updated_at=now))


async def fill(engine) -> None:
    """Two Beijing days of a small help desk (Monday 2025-09-22 and Tuesday 2025-09-23), with
    rows just outside them that must not count."""
    async with engine.begin() as conn:
        await conversation(conn, "c1", "web", bj(MON, 10), "hrss", "M10")
        await conversation(conn, "c2", "web", bj(MON, 11), "hrss", "M10")
        await conversation(conn, "c3", "app", bj(MON, 23, 59), "hrss", "M03")  # transferred
        await conversation(conn, "c4", "app", bj(TUE, 0, 30), "police", "M03")  # after midnight
        await conversation(conn, "c5", "wechat", bj(TUE, 10))  # the bot only
        await conversation(conn, "c7", "web", bj(TUE, 20), "police", "M03")
        await conversation(conn, "c8", "web", bj(TUE, 10), "hrss", "M10")
        await conversation(conn, "c9", "web", bj(TUE, 11), "hrss", "M10")
        await conversation(conn, "c0", "web", bj(MON, 0) - timedelta(seconds=1), "hrss", "M10")
        await conversation(conn, "cw", "web", bj(TUE, 23, 59) + timedelta(minutes=2), "police")

        # Monday, live: answered after 20 s, 50 s, 90 s (police, then transferred) and 10 s
        await segment(conn, "h1", "c1", "web", "hrss", "M10", "closed", bj(MON, 10),
                      resolution="resolved", assigned_s=5, first_response_s=20)
        await segment(conn, "h2", "c2", "web", "hrss", "M10", "closed", bj(MON, 11),
                      resolution="dispatched", assigned_s=30, first_response_s=50)
        await segment(conn, "h3", "c3", "app", "police", "M03", "transferred", bj(MON, 23),
                      resolution="transferred", assigned_s=60, first_response_s=90)
        await segment(conn, "h3b", "c3", "app", "hrss", "M03", "closed", bj(MON, 23, 10),
                      resolution="resolved", assigned_s=2, first_response_s=10)
        # Tuesday: a 留言 answered the next morning, one still waiting for the morning, one an
        # agent took and never answered, one still in the queue
        await segment(conn, "h4", "c4", "app", "police", "M03", "closed", bj(TUE, 0, 30),
                      resolution="resolved", assigned_s=9 * 3600, first_response_s=9 * 3600 + 60,
                      left_message=True)
        await segment(conn, "h5", "c7", "web", "police", "M03", "message", bj(TUE, 20))
        await segment(conn, "h6", "c8", "web", "hrss", "M10", "closed", bj(TUE, 10),
                      resolution="no_reply", assigned_s=3)
        await segment(conn, "h7", "c9", "web", "hrss", "M10", "waiting", bj(TUE, 11))
        # outside the range
        await segment(conn, "h0", "c0", "web", "hrss", "M10", "closed",
                      bj(MON, 0) - timedelta(seconds=1), resolution="resolved", assigned_s=1,
                      first_response_s=1)
        await segment(conn, "hw", "cw", "web", "police", None, "closed",
                      bj(TUE, 23, 59) + timedelta(minutes=2), resolution="unresolved",
                      assigned_s=1, first_response_s=500)

        await ticket(conn, "t2", "c2", "hrss")
        await ticket(conn, "t0", "c0", "hrss")

    store = RatingStore(engine)
    for conv, target, resolved, level, channel, at in [
            ("c1", "m1", True, None, "web", bj(MON, 10, 5)),
            ("c2", "m2", False, None, "web", bj(MON, 11, 5)),
            ("c5", "m5", True, None, "wechat", bj(TUE, 10, 1)),
            ("c5", "m6", None, 4, "wechat", bj(TUE, 10, 2)),  # a level only: not in the rate
            ("c0", "m0", False, None, "web", bj(MON, 0) - timedelta(seconds=1))]:
        await store.record({"conversation_id": conv, "segment": "bot", "target": target,
                            "channel": channel, "resolved": resolved, "level": level}, now=at)
    for conv, target, unit, resolved, level, channel, at in [
            ("c1", "h1", "hrss", True, 5, "web", bj(MON, 10, 15)),
            ("c2", "h2", "hrss", False, 2, "web", bj(MON, 11, 15)),
            ("c3", "h3b", "hrss", True, 4, "app", bj(TUE, 8)),  # rated the next morning
            ("c4", "h4", "police", True, None, "app", bj(TUE, 9, 30))]:
        await store.record({"conversation_id": conv, "segment": "agent", "target": target,
                            "unit": unit, "agent": "a1", "channel": channel,
                            "resolved": resolved, "level": level}, now=at)


def rate(r) -> tuple:
    return (r.numerator, r.denominator, r.rate, r.meets_target)


def by_key(figures) -> dict:
    return {g.key: g for g in figures.groups}


async def test_overall_figures(engine):
    await fill(engine)
    f = await compute(engine, FiguresQuery(since=MON, until=TUE))
    o = f.overall
    assert rate(o.bot_resolution) == (2, 3, 0.6667, True)            # target ≥ 50 %
    assert rate(o.human_resolution) == (3, 4, 0.75, False)           # target ≥ 90 %
    assert rate(o.human_closed_resolved) == (3, 5, 0.6, False)       # h1, h3b, h4 of 5 closed
    assert rate(o.dispatch) == (1, 7, 0.1429, False)                 # target ≤ 10 %
    fr = o.first_response
    assert (fr.answered, fr.p50_s, fr.p90_s) == (4, 20.0, 90.0)      # 10, 20, 50, 90 s
    assert rate(fr.within_target) == (3, 4, 0.75, False)
    assert (fr.not_answered, fr.messages_excluded, fr.target_s) == (1, 2, 60)
    assert o.counts.model_dump() == {
        "conversations": 8, "conversations_with_help": 7, "handoffs": 8, "handoffs_closed": 5,
        "tickets": 1, "ratings_bot": 4, "ratings_agent": 4}
    assert (f.targets.bot_resolution_min, f.targets.human_resolution_min,
            f.targets.dispatch_max, f.targets.first_response_s) == (0.5, 0.9, 0.1, 60)
    assert "留言" in f.notes["first_response"] and "派单率" in f.notes["dispatch"]
    wire = f.model_dump(mode="json", by_alias=True)
    assert (wire["from"], wire["to"], wire["by"]) == ("2025-09-22", "2025-09-23", "day")


async def test_figures_by_day_cut_at_beijing_midnight(engine):
    await fill(engine)
    f = await compute(engine, FiguresQuery(since=MON, until=TUE, by="day"))
    assert [g.key for g in f.groups] == ["2025-09-22", "2025-09-23"]
    mon, tue = by_key(f)["2025-09-22"], by_key(f)["2025-09-23"]
    assert rate(mon.bot_resolution) == (1, 2, 0.5, True)
    assert rate(mon.human_resolution) == (1, 2, 0.5, False)
    assert (mon.first_response.answered, mon.first_response.p50_s,
            mon.first_response.p90_s) == (4, 20.0, 90.0)
    assert rate(mon.dispatch) == (1, 3, 0.3333, False)
    assert (mon.counts.conversations, mon.counts.handoffs) == (3, 4)  # c3 at 23:59 is Monday

    assert rate(tue.bot_resolution) == (1, 1, 1.0, True) and tue.counts.ratings_bot == 2
    assert rate(tue.human_resolution) == (2, 2, 1.0, True)  # h3b rated on Tuesday
    assert (tue.first_response.answered, tue.first_response.p50_s) == (0, None)
    assert rate(tue.first_response.within_target) == (0, 0, None, None)
    assert (tue.first_response.not_answered, tue.first_response.messages_excluded) == (1, 2)
    assert rate(tue.dispatch) == (0, 4, 0.0, True)
    assert (tue.counts.conversations, tue.counts.handoffs) == (5, 4)  # c4 at 00:30 is Tuesday

    # every day of the range is listed, those without anything too
    wide = await compute(engine, FiguresQuery(since=MON, until=MON + timedelta(days=5)))
    assert len(wide.groups) == 6 and wide.groups[-1].counts.handoffs == 0
    assert wide.groups[-1].dispatch.rate is None


async def test_figures_by_unit_and_for_a_supervisors_units(engine):
    await fill(engine)
    f = await compute(engine, FiguresQuery(since=MON, until=TUE, by="unit"))
    groups = by_key(f)
    assert set(groups) == {"hrss", "police", None}
    hrss, police, none = groups["hrss"], groups["police"], groups[None]
    assert rate(hrss.human_resolution) == (2, 3, 0.6667, False)
    assert rate(police.human_resolution) == (1, 1, 1.0, True)
    assert rate(none.bot_resolution) == (2, 3, 0.6667, True)  # the bot belongs to no unit
    assert rate(hrss.dispatch) == (1, 5, 0.2, False) and rate(police.dispatch) == (0, 3, 0.0,
                                                                                   True)
    # c3 was helped by both units, so the overall is not the sum of the groups
    assert rate(f.overall.dispatch) == (1, 7, 0.1429, False)
    assert (hrss.counts.handoffs, police.counts.handoffs) == (5, 3)
    assert (hrss.counts.conversations, police.counts.conversations,
            none.counts.conversations) == (5, 2, 1)
    assert (hrss.first_response.p50_s, hrss.first_response.p90_s) == (20.0, 50.0)  # 10, 20, 50
    assert police.first_response.answered == 1 and police.first_response.messages_excluded == 2
    assert f.groups[-1].key is None  # no unit last

    mine = await compute(engine, FiguresQuery(since=MON, until=TUE, by="unit",
                                              units=["hrss"]))
    assert [g.key for g in mine.groups] == ["hrss"]
    o = mine.overall
    assert rate(o.bot_resolution) == (0, 0, None, None)
    assert rate(o.human_resolution) == (2, 3, 0.6667, False)
    assert rate(o.dispatch) == (1, 5, 0.2, False) and o.counts.handoffs == 5


async def test_figures_by_matter_and_by_channel(engine):
    await fill(engine)
    f = await compute(engine, FiguresQuery(since=MON, until=TUE, by="matter"))
    groups = by_key(f)
    assert set(groups) == {"M10", "M03", None}
    assert rate(groups["M10"].bot_resolution) == (1, 2, 0.5, True)    # via the conversation
    assert rate(groups["M10"].human_resolution) == (1, 2, 0.5, False)  # via the segment
    assert rate(groups["M03"].human_resolution) == (2, 2, 1.0, True)
    assert rate(groups[None].bot_resolution) == (1, 1, 1.0, True)
    assert groups["M03"].counts.handoffs == 4 and groups["M10"].counts.handoffs == 4

    c = await compute(engine, FiguresQuery(since=MON, until=TUE, by="channel"))
    assert [g.key for g in c.groups] == ["app", "web", "wechat"]
    app = by_key(c)["app"]
    assert (app.counts.handoffs, app.counts.conversations) == (3, 2)
    assert (app.first_response.answered, app.first_response.p50_s) == (2, 10.0)
    only_app = await compute(engine, FiguresQuery(since=MON, until=TUE, channels=["app"]))
    assert only_app.overall.counts.handoffs == 3
    assert rate(only_app.overall.human_resolution) == (2, 2, 1.0, True)
    assert only_app.overall.counts.ratings_bot == 0


async def test_rating_rates_are_the_ratings_modules_figures(engine):
    """core.ratings.resolution_rates and core.figures.rating_rates are one computation."""
    await fill(engine)
    for segment in ("bot", "agent"):
        for by in ("day", "unit", "channel"):
            assert await rating_rates(engine, segment=segment, by=by) == \
                await resolution_rates(engine, segment=segment, by=by)
    assert await rating_rates(engine, segment="agent", by="unit", since=TUE, units=["hrss"]) \
        == await resolution_rates(engine, segment="agent", by="unit", since=TUE, units=["hrss"])
    matter = await rating_rates(engine, segment="agent", by="matter")
    assert {(r["key"], r["yes"], r["no"], r["avg_level"]) for r in matter} == {
        ("M03", 2, 0, 4.0), ("M10", 1, 1, 3.5)}
    with pytest.raises(ValueError):
        await rating_rates(engine, segment="bot", by="week")


def test_percentiles_are_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([7.0], 90) == 7.0
    xs = [float(x) for x in range(1, 11)]
    assert (percentile(xs, 50), percentile(xs, 90), percentile(xs, 100)) == (5.0, 9.0, 10.0)
    assert percentile([10.0, 20.0, 50.0, 90.0], 50) == 20.0


def test_queries_are_validated():
    with pytest.raises(ValidationError, match="开始日期晚于结束日期"):
        FiguresQuery(since=TUE, until=MON)
    with pytest.raises(ValidationError, match="366"):
        FiguresQuery(since=date(2024, 1, 1), until=date(2025, 1, 1))
    assert len(FiguresQuery(since=date(2024, 1, 1), until=date(2024, 12, 31)).days()) == 366
    with pytest.raises(ValidationError):
        FiguresQuery(since=MON, until=TUE, by="week")
    assert default_range(TUE) == (TUE - timedelta(days=6), TUE)
    # no range: the last 7 days; no start: the 7 days up to the end
    assert (FiguresQuery().since, FiguresQuery().until) == default_range()
    assert (FiguresQuery(until=TUE).since, FiguresQuery(until=TUE).until) == default_range(TUE)


@pytest.mark.parametrize("given", [
    {"until": date(9999, 12, 31)}, {"since": date(1, 1, 1), "until": date(1, 1, 2)},
    {"until": date(1, 1, 3)}, {"since": date(1999, 12, 31), "until": date(2000, 1, 1)},
    {"since": date(2100, 12, 31), "until": date(2101, 1, 1)},
])
def test_days_outside_2000_to_2100_are_refused_with_a_reason(given):
    # before, the edges of the calendar overflowed computing their UTC start (a 500, a traceback)
    with pytest.raises(ValidationError, match="日期须在 2000-01-01 至 2100-12-31 之间"):
        FiguresQuery(**given)
    assert FiguresQuery(since=date(2000, 1, 1), until=date(2000, 1, 1)).days() == [date(2000, 1, 1)]
    assert FiguresQuery(until=date(2100, 12, 31)).since == date(2100, 12, 25)


def test_bangban_figures_prints_the_table_and_the_json(engine, database_url, tmp_path):
    import asyncio
    import json
    import os
    import subprocess

    from tests.conftest import bangban_executable

    async def go():  # the fixture engine lives on this test's loop; fill on a fresh one
        from core.db import create_engine

        e = create_engine(database_url)
        try:
            await fill(e)
        finally:
            await e.dispose()

    asyncio.run(go())
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANGBAN_")}
    env["BANGBAN_DATABASE_URL"] = database_url

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([bangban_executable(), "figures", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    table = run("--from", "2025-09-22", "--to", "2025-09-23", "--by", "unit")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "2025-09-22 .. 2025-09-23, by unit"
    hrss = next(line for line in lines if line.startswith("hrss"))
    assert "66.7% !" in hrss and "20s" in hrss and "20.0% !" in hrss
    assert lines[-1].split()[:3] == ["total", "66.7%", "ok"]
    doc = json.loads(run("--from", "2025-09-22", "--to", "2025-09-23", "--json").stdout)
    assert doc["overall"]["dispatch"]["denominator"] == 7 and len(doc["groups"]) == 2
    bad = run("--from", "2025-09-23", "--to", "2025-09-22")
    assert bad.returncode == 1 and "开始日期晚于结束日期" in bad.stderr
    for edge in (("--to", "9999-12-31"), ("--from", "0001-01-01", "--to", "0001-01-02")):
        bad = run(*edge)  # a traceback before
        assert bad.returncode == 1 and "日期须在 2000-01-01 至 2100-12-31 之间" in bad.stderr
        assert "Traceback" not in bad.stderr
    # a mistyped unit or channel is named, not answered with a table of zeros
    for option, typo in (("--unit", "hrs"), ("--channel", "wechta")):
        bad = run("--from", "2025-09-22", "--to", "2025-09-23", option, typo)
        assert bad.returncode == 2 and typo in bad.stderr and "known:" in bad.stderr, bad.stderr
