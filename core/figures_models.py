"""The figures' vocabulary: the query, the document it answers with, the seed's targets.

Split from :mod:`core.figures` (the SQL that computes them), which re-exports every name here,
so ``from core.figures import Figures`` keeps working.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SHANGHAI = ZoneInfo("Asia/Shanghai")
By = Literal["day", "unit", "matter", "channel"]
BY: tuple[str, ...] = ("day", "unit", "matter", "channel")
#: the longest range one query may cover
MAX_DAYS = 366
#: the days a query may name: the help desk has no data outside them, and a day at the edge of
#: Python's calendar (0001-01-01, 9999-12-31) has no UTC start or end to compute with
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)
#: the range when none is given: the last 7 Beijing days
DEFAULT_DAYS = 7
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


def default_range(today: date | None = None, days: int = DEFAULT_DAYS) -> tuple[date, date]:
    """The last ``days`` Beijing days, today included."""
    today = today or datetime.now(SHANGHAI).date()
    return today - timedelta(days - 1), today


class FiguresQuery(BaseModel):
    """What to compute: a range of Beijing days (both inclusive), a grouping, optional filters.

    ``until`` defaults to today and ``since`` to the 7 days up to ``until``, here rather than in
    the API and the CLI, so both bound the days the same way before any date arithmetic."""

    model_config = ConfigDict(extra="forbid")

    since: date
    until: date
    by: By = "day"
    #: None: every unit; a list (possibly a supervisor's own) restricts everything to those units
    units: list[str] | None = None
    channels: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_range(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("until") is None:
            data["until"] = default_range()[1]
        until = data["until"]
        if data.get("since") is None and isinstance(until, date):
            # a day before FIRST_DAY is refused below; subtracting from it could overflow
            data["since"] = default_range(until)[0] if until >= FIRST_DAY else until
        return data

    @field_validator("since", "until")
    @classmethod
    def _in_bounds(cls, v: date) -> date:
        if not FIRST_DAY <= v <= LAST_DAY:
            raise ValueError(f"日期须在 {FIRST_DAY} 至 {LAST_DAY} 之间。")
        return v

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
