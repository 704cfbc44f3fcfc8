"""Working hours and service settings of the units that give online human help (config/units.yaml).

Hours follow the Chinese working-day calendar (core.workdays, backed by ``chinesecalendar``): a
``workdays`` unit is closed on public holidays and open on 调休 make-up Saturdays and Sundays, which
a plain Monday–Friday rule gets wrong several times a year. Every instant must be time-zone aware:
a naive datetime is refused rather than guessed at, because the server clock (often UTC) and the
citizen's clock (Beijing) differ by eight hours and a wrong guess silently opens or closes a desk.

The file is validated completely at load; an error names the file and the field, so operators fix
it from the message alone (the same style as core.config and core.reference).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .paths import config_dir
from .reference import load_codes, load_matters
from .routing import serving_units
from .workdays import is_workday

SHANGHAI = "Asia/Shanghai"
#: overflow_to value meaning "the municipal department that leads the conversation's matter"
LEAD_DEPARTMENT = "lead-department"
HOTLINE = "hotline-12345"
PLACEHOLDERS = frozenset({"unit", "hours", "next_opening"})
DEFAULT_CLOSED_MESSAGE = ("{unit}线上人工帮办的服务时间为{hours}，现在不在服务时间。"
                          "您可以留言，工作人员将于{next_opening}起通过本渠道答复您。")
_PERIOD = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_WEEKDAYS = "一二三四五六日"
#: the longest Chinese holiday run is about 9 days; a year bounds the search even for odd configs
_SEARCH_DAYS = 400


def _hhmm(minutes: int) -> str:
    # "9:00", not "09:00": the usual way Chinese service notices write opening hours
    return f"{minutes // 60}:{minutes % 60:02d}"


class Period(BaseModel):
    """One opening period of a day, in minutes after local midnight; ``end`` is exclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int = Field(ge=0, le=24 * 60 - 1)
    end: int = Field(ge=1, le=24 * 60)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if isinstance(v, int):
            # YAML 1.1 reads unquoted 13:00 as the base-60 number 780
            raise ValueError('write the period as a quoted string like "09:00-17:00"')
        if not isinstance(v, str):
            return v
        m = _PERIOD.match(v)
        if not m:
            raise ValueError(f'{v!r} is not "HH:MM-HH:MM"')
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if m1 > 59 or m2 > 59 or h1 > 23 or h2 > 24 or (h2 == 24 and m2):
            raise ValueError(f"{v!r} is not a time of day (00:00 to 24:00)")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise ValueError(f"{v!r}: end {_hhmm(end)} is not after start {_hhmm(start)}")
        return {"start": start, "end": end}

    def text(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


class UnitHours(BaseModel):
    """A weekly timetable: which days (working days or every day) and which periods of each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: workdays = the Chinese working-day calendar; daily = every day including holidays
    days: Literal["workdays", "daily"]
    periods: tuple[Period, ...] = Field(min_length=1)
    timezone: str = SHANGHAI

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
        return v

    @model_validator(mode="after")
    def _ordered(self) -> UnitHours:
        # in order and apart, so describe() reads naturally and next_opening() can scan once
        for before, after in zip(self.periods, self.periods[1:]):
            if after.start < before.end:
                raise ValueError(f"periods: {after.text()} overlaps or precedes {before.text()}; "
                                 "list periods in order without overlap")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches instances itself

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"{at!r} has no time zone; pass an aware datetime "
                             "(e.g. datetime.now(ZoneInfo('Asia/Shanghai')))")
        return at.astimezone(self.zone)

    def _open_day(self, day: date) -> bool:
        return self.days == "daily" or is_workday(day)

    def is_always_open(self) -> bool:
        seamless = all(a.end == b.start for a, b in zip(self.periods, self.periods[1:]))
        return (self.days == "daily" and seamless
                and self.periods[0].start == 0 and self.periods[-1].end == 24 * 60)

    def is_open(self, at: datetime) -> bool:
        local = self._local(at)
        if not self._open_day(local.date()):
            return False
        t = local.time()
        seconds = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
        return any(p.start * 60 <= seconds < p.end * 60 for p in self.periods)

    def next_opening(self, at: datetime) -> datetime:
        """The first instant at or after ``at`` when the unit is open (``at`` itself if open now),
        in the unit's time zone."""
        local = self._local(at)
        midnight = datetime.combine(local.date(), time(), tzinfo=self.zone)
        for offset in range(_SEARCH_DAYS):
            day = midnight + timedelta(days=offset)
            if not self._open_day(day.date()):
                continue
            for p in self.periods:
                start, end = day + timedelta(minutes=p.start), day + timedelta(minutes=p.end)
                if start <= local < end:
                    return local
                if start > local:
                    return start
        raise ValueError(f"no opening within {_SEARCH_DAYS} days of {local.isoformat()}")

    def describe(self) -> str:
        """The hours as citizens read them, e.g. 工作日 9:00-11:30、13:00-17:00（法定节假日除外）."""
        if self.is_always_open():
            return "7×24小时"
        periods = "、".join(p.text() for p in self.periods)
        if self.days == "workdays":
            return f"工作日 {periods}（法定节假日除外）"
        return f"每天 {periods}（含节假日）"


def format_opening(opening: datetime, now: datetime) -> str:
    """The opening as a citizen reads it: 今天13:00, 明天9:00 or 10月8日（周四）9:00."""
    opening = opening.astimezone(now.tzinfo) if now.tzinfo else opening
    days = (opening.date() - now.date()).days
    clock = _hhmm(opening.hour * 60 + opening.minute)
    if days == 0:
        return f"今天{clock}"
    if days == 1:
        return f"明天{clock}"
    return f"{opening.month}月{opening.day}日（周{_WEEKDAYS[opening.weekday()]}）{clock}"


def _placeholders_known(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(v) if field is not None}
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc})") from None
    unknown = names - PLACEHOLDERS
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use {sorted(PLACEHOLDERS)}")
    return v


class UnitDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_cap: int = Field(5, ge=1, le=100)
    first_response_sla_s: int = Field(60, ge=1)
    overflow_after_s: int = Field(180, ge=1)
    overflow_to: str | None = HOTLINE
    closed_message: str = DEFAULT_CLOSED_MESSAGE

    _templates = field_validator("closed_message")(_placeholders_known)


class UnitEntry(BaseModel):
    """One unit as written in the file; unset fields take ``defaults``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    #: name of a timetable in ``schedules``
    hours: str
    agent_cap: int | None = Field(None, ge=1, le=100)
    first_response_sla_s: int | None = Field(None, ge=1)
    overflow_after_s: int | None = Field(None, ge=1)
    overflow_to: str | None = None
    closed_message: str | None = None

    _templates = field_validator("closed_message")(_placeholders_known)


class UnitsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: UnitDefaults = UnitDefaults()
    schedules: dict[str, UnitHours] = Field(min_length=1)
    units: dict[str, UnitEntry] = Field(min_length=1)


class Unit(BaseModel):
    """A unit with its defaults applied: what the queue, the SLA clock and the citizen see."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    hours: UnitHours
    agent_cap: int
    first_response_sla_s: int
    overflow_after_s: int
    #: a unit code, LEAD_DEPARTMENT, or None (never overflows)
    overflow_to: str | None
    closed_message_template: str

    def is_open(self, at: datetime) -> bool:
        return self.hours.is_open(at)

    def opens_text(self, at: datetime) -> str:
        """When the unit next opens after ``at``, as a citizen is told it (明天9:00)."""
        return format_opening(self.hours.next_opening(at), at.astimezone(self.hours.zone))

    def closed_message(self, at: datetime) -> str:
        return self.closed_message_template.format(
            unit=self.name, hours=self.hours.describe(), next_opening=self.opens_text(at))


class Units(Mapping[str, Unit]):
    """The validated units, by code (read-only)."""

    def __init__(self, units: dict[str, Unit]) -> None:
        self._units = dict(units)

    def __getitem__(self, code: str) -> Unit:
        return self._units[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._units)

    def __len__(self) -> int:
        return len(self._units)

    def overflow_target(self, code: str, lead_department: str | None) -> str | None:
        """Where a conversation waiting too long on ``code`` goes next, for a conversation whose
        matter is led by ``lead_department`` (None when the matter is unknown)."""
        target = self._units[code].overflow_to
        if target == LEAD_DEPARTMENT:
            if lead_department and lead_department in self._units and lead_department != code:
                return lead_department
            return HOTLINE if code != HOTLINE else None
        return target


def _resolve(raw: UnitsFile, departments: Mapping[str, str], required: set[str],
             lead_departments: set[str]) -> tuple[Units, list[str]]:
    """Apply defaults and check what one entry alone cannot: codes, references, coverage, cycles."""
    problems: list[str] = []
    d, units = raw.defaults, {}
    for code, e in raw.units.items():
        where = f"units.{code}"
        if code not in departments:
            problems.append(f"{where}: {code!r} is not a department code in config/codes.yaml")
        if e.hours not in raw.schedules:
            problems.append(f"{where}.hours: unknown schedule {e.hours!r} "
                            f"(schedules: {', '.join(raw.schedules)})")
            continue
        overflow = e.overflow_to if "overflow_to" in e.model_fields_set else d.overflow_to
        unit = Unit(
            code=code, name=e.name, hours=raw.schedules[e.hours],
            agent_cap=e.agent_cap or d.agent_cap,
            first_response_sla_s=e.first_response_sla_s or d.first_response_sla_s,
            overflow_after_s=e.overflow_after_s or d.overflow_after_s,
            overflow_to=overflow, closed_message_template=e.closed_message or d.closed_message)
        if unit.overflow_after_s < unit.first_response_sla_s:
            # overflowing before the first-response SLA has even run out is almost always
            # two values swapped; refuse rather than move every conversation away at once
            problems.append(f"{where}.overflow_after_s: {unit.overflow_after_s} is shorter than "
                            f"first_response_sla_s {unit.first_response_sla_s}")
        units[code] = unit
    for code, unit in units.items():
        target = unit.overflow_to
        field = f"units.{code}.overflow_to"
        if target == code:
            problems.append(f"{field}: a unit cannot overflow to itself (use null)")
        elif target == LEAD_DEPARTMENT and code in lead_departments:
            problems.append(f"{field}: {code} leads matters itself, so {LEAD_DEPARTMENT} "
                            "would point back at it; name a unit or null")
        elif target not in (None, LEAD_DEPARTMENT) and target not in raw.units:
            problems.append(f"{field}: {target!r} is not a unit in this file")
    for code in sorted(required - set(raw.units)):
        problems.append(f"units: no entry for {code!r}, a unit routing can send citizens to")
    if not problems:
        problems += _cycles(units, lead_departments)
    return Units(units), problems


def _cycles(units: dict[str, Unit], lead_departments: set[str]) -> list[str]:
    # follow every overflow chain; a loop would bounce a waiting citizen between desks forever
    def targets(code: str) -> list[str]:
        t = units[code].overflow_to
        if t == LEAD_DEPARTMENT:
            return sorted(lead_departments & set(units)) or [HOTLINE]
        return [t] if t else []

    for start in units:
        stack, seen = [(start, (start,))], set()
        while stack:
            code, path = stack.pop()
            for nxt in targets(code):
                if nxt == start:
                    return [f"units.{start}.overflow_to: overflow loops back "
                            f"({' -> '.join((*path, nxt))})"]
                if nxt not in seen and nxt in units:
                    seen.add(nxt)
                    stack.append((nxt, (*path, nxt)))
    return []


@cache
def load_units(path: Path | None = None) -> Units:
    """Read, validate and resolve config/units.yaml (or ``path``).

    A ConfigError names the file and the field to fix.
    """
    path = path or config_dir() / "units.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw = UnitsFile.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the units file ({exc})") from exc
    except ValidationError as exc:
        lines = [f"{path}: {'.'.join(str(p) for p in err['loc'])}: "
                 f"{err['msg'].removeprefix('Value error, ')}" for err in exc.errors()]
        raise ConfigError("; ".join(lines)) from None
    matters = load_matters()
    units, problems = _resolve(
        raw, load_codes().department, serving_units(matters),
        {m.department for m in matters.matters})
    if problems:
        raise ConfigError("; ".join(f"{path}: {p}" for p in problems))
    return units
