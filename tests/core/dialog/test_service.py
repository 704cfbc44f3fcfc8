"""DialogService on the real database and Redis: the record, live context, de-duplication,
the KB gap list with its working-day deadline, idle conversations and fan-out on the bus."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, date, datetime, time, timedelta

import chinese_calendar
import pytest

from core.bus import Bus
from core.config import BotSettings
from core.conversations import IDLE_TIMEOUT, SHANGHAI, UNANSWERED_WORKDAYS, ConversationStore
from core.dialog.bot import Bot, Context
from core.dialog.models import Attachment, Inbound, Outbound, utcnow
from core.dialog.service import DialogService
from core.redisconn import async_client
from core.workdays import add_workdays, is_workday
from tests.core.dialog.test_bot import AMBIGUOUS, seed_snapshot

CHANNEL = "web"
CONTEXT_TTL_S = 1800


@pytest.fixture(scope="module")
def bot() -> Bot:
    snap = seed_snapshot()
    return Bot(lambda: snap, BotSettings())


@pytest.fixture
def prefix() -> str:
    return f"bbtest{secrets.token_hex(3)}:"


@pytest.fixture
def service(engine, redis, bot, prefix) -> DialogService:
    return DialogService(ConversationStore(engine), bot, redis, Bus(redis, prefix),
                         prefix=prefix, context_ttl_s=CONTEXT_TTL_S)


@pytest.fixture
def user() -> str:
    return f"citizen-{secrets.token_hex(4)}"


def say(user: str, text: str = "", **fields) -> Inbound:
    return Inbound(channel=CHANNEL, channel_user=user, text=text, **fields)


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- the record -------------------------------------------------------------------------------


async def test_messages_are_stored_in_order_with_sequence_numbers(service, user):
    first = await service.handle(say(user, "个税清单怎么开"))
    second = await service.handle(say(user, "居住证签注提前多久可以办"))
    assert first.conversation_id == second.conversation_id
    assert (first.seq, second.seq) == (1, 3)
    assert [r.seq for r in first.replies] == [2] and [r.seq for r in second.replies] == [4]

    conv_id, history = await service.history(CHANNEL, user)
    assert conv_id == first.conversation_id
    assert [(m.seq, m.sender) for m in history] == [
        (1, "citizen"), (2, "bot"), (3, "citizen"), (4, "bot")]
    assert history[0].text == "个税清单怎么开" and history[2].text == "居住证签注提前多久可以办"
    # what was stored is what the citizen was shown
    assert history[1].text == first.replies[0].text
    assert history[1].meta.entry_id == first.replies[0].meta.entry_id == "M34-faq-01"
    assert history[3].meta.matters == ["M03"]
    assert [q.payload for q in history[1].quick_replies] == ["resolved:yes", "resolved:no"]
    # the answer asks to be rated, and the rating targets that very message
    assert history[1].rating is not None and history[1].rating.target == history[1].message_id
    # resuming after a sequence number gives only what came later
    _, later = await service.history(CHANNEL, user, after=2)
    assert [m.seq for m in later] == [3, 4]


async def test_another_citizen_has_another_conversation(service, user):
    mine = await service.handle(say(user, "个税清单怎么开"))
    theirs = await service.handle(say(user + "-other", "个税清单怎么开"))
    assert mine.conversation_id != theirs.conversation_id
    assert theirs.seq == 1


async def test_a_retried_message_id_is_recognised_and_not_answered_twice(service, user):
    first = await service.handle(say(user, "个税清单怎么开", msg_id="wx-1001"))
    again = await service.handle(say(user, "个税清单怎么开", msg_id="wx-1001"))
    assert not first.duplicate and first.replies
    assert again.duplicate and again.replies == []
    assert again.conversation_id == first.conversation_id
    assert await service.conversations.count_messages(first.conversation_id) == 2
    # a new message id is a new message
    third = await service.handle(say(user, "个税清单怎么开", msg_id="wx-1002"))
    assert not third.duplicate and third.seq == 3


# -- live context in Redis --------------------------------------------------------------------


async def test_context_lives_in_redis_with_a_ttl_and_carries_follow_ups(service, redis, prefix,
                                                                        user):
    first = await service.handle(say(user, "居住证签注怎么办"))
    key = f"{prefix}ctx:{first.conversation_id}"
    ttl = await redis.ttl(key)
    assert 0 < ttl <= CONTEXT_TTL_S
    ctx = Context.model_validate_json(await redis.get(key))
    assert ctx.matter == "M03"
    follow_up = await service.handle(say(user, "那要带什么材料？"))
    [reply] = follow_up.replies
    assert reply.action == "answer" and "M03" in reply.meta.matters, reply
    assert (await service.conversations.get(first.conversation_id)).matter == "M03"


async def test_offered_choices_are_remembered_in_redis_between_messages(service, redis, prefix,
                                                                       user):
    offer = await service.handle(say(user, AMBIGUOUS))
    [clarify] = offer.replies
    assert clarify.action == "clarify"
    second = clarify.quick_replies[1].payload.removeprefix("pick:")
    picked = await service.handle(say(user, "2"))
    assert picked.replies[0].action == "answer"
    assert picked.replies[0].meta.entry_id == second

    # the choices live in Redis: without the context the same "2" has nothing to pick
    await service.handle(say(user, AMBIGUOUS))
    await redis.delete(f"{prefix}ctx:{offer.conversation_id}")
    lost = await service.handle(say(user, "2"))
    assert lost.replies[0].action == "system" and lost.replies[0].meta.entry_id is None


# -- the KB gap list --------------------------------------------------------------------------


def assert_due_in_five_workdays(row: dict) -> None:
    created = aware(row["created_at"]).astimezone(SHANGHAI)
    due = aware(row["due_at"]).astimezone(SHANGHAI)
    assert due.date() == add_workdays(created.date(), UNANSWERED_WORKDAYS)
    assert due.time().replace(microsecond=0) == time(23, 59, 59)


async def test_an_unknown_question_is_put_on_the_gap_list(service, user):
    result = await service.handle(say(user, "护照怎么办理"))
    [reply] = result.replies
    assert reply.action == "fallback"
    assert "12345" in reply.text and "human" in [q.payload for q in reply.quick_replies]
    [row] = await service.conversations.open_unanswered()
    assert row["question"] == "护照怎么办理" and row["reason"] == "fallback"
    assert row["status"] == "open" and row["conversation_id"] == result.conversation_id
    _, history = await service.history(CHANNEL, user)
    assert row["message_id"] == history[0].message_id  # the citizen's own message
    assert_due_in_five_workdays(row)


async def test_not_resolved_puts_the_answered_question_on_the_gap_list(service, user):
    answered = await service.handle(say(user, "居住证签注提前多久可以办"))
    entry_id = answered.replies[0].meta.entry_id
    rated = await service.handle(say(user, "未解决", kind="quick_reply", payload="resolved:no"))
    [reply] = rated.replies
    assert "human" in [q.payload for q in reply.quick_replies]
    [row] = await service.conversations.open_unanswered()
    assert row["reason"] == "unresolved" and row["status"] == "open"
    assert row["question"] == "居住证签注提前多久可以办"
    assert row["entry_id"] == entry_id and row["matter"] == "M03"
    assert_due_in_five_workdays(row)


async def test_a_question_the_bot_was_unsure_of_is_on_the_gap_list_with_its_best_guess(
        service, user):
    result = await service.handle(say(user, "网上签注好了卡还要盖章吗"))
    [reply] = result.replies
    assert reply.action == "clarify", reply.text
    [row] = await service.conversations.open_unanswered()
    assert row["reason"] == "unsure" and row["question"] == "网上签注好了卡还要盖章吗"
    assert row["entry_id"] == reply.meta.entry_id and row["entry_id"].startswith("M03-")
    assert_due_in_five_workdays(row)


async def test_answered_and_resolved_questions_are_not_on_the_gap_list(service, user):
    await service.handle(say(user, "个税清单怎么开"))
    await service.handle(say(user, "已解决", kind="quick_reply", payload="resolved:yes"))
    assert await service.conversations.open_unanswered() == []


# -- working days (holidays and 调休) -----------------------------------------------------------


@pytest.mark.parametrize(("start", "days", "expected"), [
    # 国庆 2026: 10-01…10-07 off, Saturday 10-10 worked
    (date(2026, 9, 30), 5, date(2026, 10, 13)),
    (date(2026, 9, 30), 1, date(2026, 10, 8)),
    (date(2026, 10, 9), 1, date(2026, 10, 10)),
    # 春节 2026: 02-15…02-23 off, Saturdays 02-14 and 02-28 worked
    (date(2026, 2, 13), 1, date(2026, 2, 14)),
    (date(2026, 2, 14), 1, date(2026, 2, 24)),
    (date(2026, 2, 24), 4, date(2026, 2, 28)),
    # 劳动节 2026: 05-01…05-05 off
    (date(2026, 4, 30), 1, date(2026, 5, 6)),
    # an ordinary week: the weekend is skipped, the start day is not counted
    (date(2026, 3, 13), 1, date(2026, 3, 16)),
    (date(2026, 3, 9), 5, date(2026, 3, 16)),
    (date(2026, 3, 9), 0, date(2026, 3, 9)),
])
def test_add_workdays_follows_the_2026_holiday_calendar(start, days, expected):
    assert add_workdays(start, days) == expected


def test_add_workdays_accepts_a_datetime():
    moment = datetime(2026, 9, 30, 22, 30, tzinfo=SHANGHAI)
    assert add_workdays(moment, 5) == date(2026, 10, 13)


def test_known_2026_holidays_and_make_up_days():
    assert not is_workday(date(2026, 10, 1)) and not is_workday(date(2026, 2, 16))
    assert is_workday(date(2026, 10, 10)) and is_workday(date(2026, 9, 20))  # 调休 weekends


def test_a_year_without_holiday_data_falls_back_to_monday_to_friday():
    friday = date(2099, 1, 2)
    assert friday.weekday() == 4
    with pytest.raises(NotImplementedError):  # the premise: the calendar lacks 2099
        chinese_calendar.is_workday(friday)
    assert add_workdays(friday, 1) == date(2099, 1, 5)        # Monday
    assert add_workdays(friday, 5) == date(2099, 1, 9)        # the next Friday
    assert not is_workday(date(2099, 1, 3)) and is_workday(date(2099, 1, 1))  # no holidays known


# -- idle conversations -----------------------------------------------------------------------


async def test_a_conversation_idle_past_the_timeout_is_closed_and_a_new_one_starts(service, user):
    first = await service.handle(say(user, "居住证签注怎么办"))
    store = service.conversations
    almost = utcnow() + IDLE_TIMEOUT - timedelta(minutes=1)
    assert (await store.current(CHANNEL, user, now=almost)).id == first.conversation_id

    later = utcnow() + IDLE_TIMEOUT + timedelta(minutes=1)
    fresh = await store.current(CHANNEL, user, now=later)
    assert fresh.id != first.conversation_id and fresh.matter is None
    assert (await store.get(first.conversation_id)).status == "closed"

    # the next message goes to the new conversation, numbered from 1, without the old context
    nxt = await service.handle(say(user, "2"))
    assert nxt.conversation_id == fresh.id and nxt.seq == 1
    assert (await service.load_context(fresh.id)).matter is None
    _, history = await service.history(CHANNEL, user)
    assert [m.seq for m in history] == [1, 2]


# -- what the bot cannot read -----------------------------------------------------------------


async def test_an_image_only_message_gets_the_text_only_reply(service, user):
    picture = Attachment(kind="image", url="https://example.invalid/shot.png", mime="image/png",
                         size=2048)
    result = await service.handle(say(user, kind="image", attachments=[picture]))
    [reply] = result.replies
    assert "只能看懂文字" in reply.text
    assert "human" in [q.payload for q in reply.quick_replies]
    assert await service.conversations.open_unanswered() == []
    _, history = await service.history(CHANNEL, user)
    assert history[0].sender == "citizen" and len(history) == 2


# -- fan-out ----------------------------------------------------------------------------------


async def test_the_bus_delivers_outbounds_to_a_subscriber_in_another_process(
        service, redis_url, prefix, user):
    other_redis = async_client(redis_url)
    other = Bus(other_redis, prefix)  # another app process, its own connection
    received: asyncio.Queue[tuple[str, str, list[Outbound]]] = asyncio.Queue()

    async def deliver(channel: str, channel_user: str, outs: list[Outbound]) -> None:
        await received.put((channel, channel_user, outs))

    other.subscribe(deliver)
    await other.start()
    try:
        result = await service.handle(say(user, "个税清单怎么开"))
        channel, channel_user, outs = await asyncio.wait_for(received.get(), 10)
    finally:
        await other.stop()
        await other_redis.aclose()
    assert (channel, channel_user) == (CHANNEL, user)
    assert [(o.seq, o.sender) for o in outs] == [(1, "citizen"), (2, "bot")]
    assert outs[0].text == "个税清单怎么开"
    assert outs[1].message_id == result.replies[0].message_id
    assert outs[1].text == result.replies[0].text
    assert outs[1].meta.entry_id == "M34-faq-01"
    assert {o.conversation_id for o in outs} == {result.conversation_id}


# -- 好差评 of the bot segment ----------------------------------------------------------------


async def test_resolved_taps_rate_the_answer_once_and_a_second_tap_updates_it(
        engine, redis, bot, prefix, user):
    from sqlalchemy import select

    from core.db.schema import ratings
    from core.ratings import RatingStore

    service = DialogService(ConversationStore(engine), bot, redis, Bus(redis, prefix),
                            prefix=prefix, ratings=RatingStore(engine))
    answered = await service.handle(say(user, "个税清单怎么开"))
    answer = answered.replies[0]
    assert answer.action == "answer" and answer.rating is not None
    await service.handle(say(user, "未解决", kind="quick_reply", payload="resolved:no"))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(ratings))).mappings().all()
    assert [(r["segment"], r["target"], r["resolved"]) for r in rows] == [
        ("bot", answer.message_id, False)]

    # changing one's mind updates the same rating rather than adding a second
    await service.handle(say(user, "已解决", kind="quick_reply", payload="resolved:yes"))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(ratings))).mappings().all()
    assert len(rows) == 1 and rows[0]["resolved"] is True
    assert rows[0]["target"] == answer.message_id == answer.rating.target
