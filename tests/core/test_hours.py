"""Unit working hours (config/units.yaml, core/hours.py) on the Chinese working-day calendar.

Instants are built in Beijing time; dates are checked against chinesecalendar in the test itself
where a wrong assumption about the calendar (rather than about our code) could make a test pass.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
import yaml

from core.errors import ConfigError
from core.hours import UnitHours, load_units
from core.paths import config_dir

SH = ZoneInfo("Asia/Shanghai")
DISTRICT = "district-310104"  # 徐汇区: lunch break
MUNICIPAL = "edu"             # no lunch break online
WEDNESDAY = date(2026, 3, 11)
FRIDAY = date(2026, 3, 13)


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=SH)


@pytest.fixture(scope="module")
def units():
    return load_units()


def test_the_dates_used_here_are_what_the_calendar_says():
    assert WEDNESDAY.weekday() == 2 and chinese_calendar.is_workday(WEDNESDAY)
    assert FRIDAY.weekday() == 4 and chinese_calendar.is_workday(FRIDAY)
    assert chinese_calendar.is_holiday(date(2026, 10, 1))


def test_a_normal_wednesday(units):
    district, municipal = units[DISTRICT], units[MUNICIPAL]
    assert district.is_open(at(WEDNESDAY, 10)) and municipal.is_open(at(WEDNESDAY, 10))
    assert not district.is_open(at(WEDNESDAY, 12))  # lunch break
    assert municipal.is_open(at(WEDNESDAY, 12))
    assert not district.is_open(at(WEDNESDAY, 18)) and not municipal.is_open(at(WEDNESDAY, 18))
    # boundaries: open at the start, closed at the (exclusive) end
    assert district.is_open(at(WEDNESDAY, 9)) and not district.is_open(at(WEDNESDAY, 8, 59, 59))
    assert district.is_open(at(WEDNESDAY, 11, 29, 59))
    assert not district.is_open(at(WEDNESDAY, 11, 30))
    assert district.is_open(at(WEDNESDAY, 13)) and not district.is_open(at(WEDNESDAY, 17))


def test_bigdata_keeps_evening_hours_on_working_days(units):
    bigdata = units["bigdata"]
    assert bigdata.is_open(at(WEDNESDAY, 18)) and bigdata.is_open(at(WEDNESDAY, 20, 59))
    assert not bigdata.is_open(at(WEDNESDAY, 21))
    assert not bigdata.is_open(at(date(2026, 3, 14), 10))  # an ordinary Saturday


def test_national_day_is_closed(units):
    national_day = at(date(2026, 10, 1), 10)
    for code in (DISTRICT, MUNICIPAL, "bigdata", "lingang", "civil-community"):
        assert not units[code].is_open(national_day), code
    assert units["hotline-12345"].is_open(national_day)


def test_make_up_working_weekend_days_are_open(units):
    # the real 2026 arrangement, as the maintained calendar has it
    makeup = [d for d in chinese_calendar.get_workdays(date(2026, 1, 1), date(2026, 12, 31))
              if d.weekday() >= 5]
    assert date(2026, 10, 10) in makeup  # Saturday after 国庆, a working day
    for day in makeup:
        assert units[DISTRICT].is_open(at(day, 10)), day
        assert not units[DISTRICT].is_open(at(day, 12)), day
        assert units["bigdata"].is_open(at(day, 20)), day
    assert not units[DISTRICT].is_open(at(date(2026, 10, 11), 10))  # the Sunday after is not


def test_12345_is_always_open(units):
    hotline = units["hotline-12345"]
    start = at(date(2026, 9, 30), 0)
    for hours in range(0, 24 * 9, 5):  # across 国庆 and nights, every five hours
        assert hotline.is_open(start + timedelta(hours=hours))
    assert hotline.is_open(at(date(2026, 2, 17), 23, 59, 59))  # 春节
    assert hotline.hours.next_opening(start) == start


def test_next_opening(units):
    district = units[DISTRICT]
    # Friday evening: the next working day, a Monday
    assert district.hours.next_opening(at(FRIDAY, 18)) == at(date(2026, 3, 16), 9)
    # Friday evening before a 调休 Sunday: that Sunday
    assert chinese_calendar.is_workday(date(2026, 9, 20))
    assert district.hours.next_opening(at(date(2026, 9, 18), 18)) == at(date(2026, 9, 20), 9)
    # the eve of 国庆: after the holiday week
    assert district.hours.next_opening(at(date(2026, 9, 30), 18)) == at(date(2026, 10, 8), 9)
    # lunch break: the afternoon; already open: now
    assert district.hours.next_opening(at(WEDNESDAY, 12)) == at(WEDNESDAY, 13)
    assert district.hours.next_opening(at(WEDNESDAY, 10, 15)) == at(WEDNESDAY, 10, 15)
    # early morning: the same day
    assert district.hours.next_opening(at(WEDNESDAY, 6)) == at(WEDNESDAY, 9)


def test_instants_in_other_zones_are_converted_and_naive_ones_refused(units):
    district = units[DISTRICT]
    assert district.is_open(datetime(2026, 3, 11, 2, 0, tzinfo=timezone.utc))       # 10:00 Beijing
    assert not district.is_open(datetime(2026, 3, 11, 10, 0, tzinfo=timezone.utc))  # 18:00 Beijing
    opening = district.hours.next_opening(datetime(2026, 3, 13, 10, tzinfo=timezone.utc))
    assert opening == at(date(2026, 3, 16), 9) and opening.tzinfo is not None
    with pytest.raises(ValueError, match="time zone"):
        district.is_open(datetime(2026, 3, 11, 10))
    with pytest.raises(ValueError, match="time zone"):
        district.hours.next_opening(datetime(2026, 3, 11, 10))


def test_a_year_the_calendar_does_not_cover_falls_back_to_monday_to_friday(units):
    assert units[DISTRICT].is_open(at(date(2030, 3, 13), 10))      # a Wednesday
    assert not units[DISTRICT].is_open(at(date(2030, 3, 16), 10))  # a Saturday


def test_describe(units):
    assert units[DISTRICT].hours.describe() == "工作日 9:00-11:30、13:00-17:00（法定节假日除外）"
    assert units[MUNICIPAL].hours.describe() == "工作日 9:00-17:00（法定节假日除外）"
    assert units["bigdata"].hours.describe() == "工作日 9:00-21:00（法定节假日除外）"
    assert units["hotline-12345"].hours.describe() == "7×24小时"
    daily = UnitHours.model_validate({"days": "daily", "periods": ["08:30-20:00"]})
    assert daily.describe() == "每天 8:30-20:00（含节假日）"


def test_closed_message_tells_the_hours_and_when_an_answer_comes(units):
    text = units[DISTRICT].closed_message(at(WEDNESDAY, 18))
    assert text.startswith("徐汇区政务服务中心")
    assert "工作日 9:00-11:30、13:00-17:00（法定节假日除外）" in text and "明天9:00" in text
    assert "留言" in text
    assert "10月8日（周四）9:00" in units[MUNICIPAL].closed_message(at(date(2026, 10, 1), 10))
    assert "今天13:00" in units[DISTRICT].closed_message(at(WEDNESDAY, 12))


def test_defaults_and_overflow(units):
    for unit in units.values():
        assert (unit.agent_cap, unit.first_response_sla_s, unit.overflow_after_s) == (5, 60, 180)
    assert units.overflow_target(DISTRICT, "market") == "market"  # up to the municipal department
    assert units.overflow_target(DISTRICT, None) == "hotline-12345"
    assert units.overflow_target("lingang", "transport") == "transport"
    assert units.overflow_target("market", "market") == "hotline-12345"
    assert units.overflow_target("bigdata", None) == "hotline-12345"
    assert units.overflow_target("hotline-12345", "market") is None


# -- a bad file is refused with the file and the field named -----------------------------------


def broken(tmp_path: Path, change) -> str:
    data = yaml.safe_load((config_dir() / "units.yaml").read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "units.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_units(path)
    message = str(info.value)
    assert str(path) in message and "pydantic" not in message
    return message


def _set(*keys, value):
    def change(data):
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


@pytest.mark.parametrize("change, field, why", [
    (_set("schedules", "district_office", "periods", value=["09:00-11:30", "17:00-13:00"]),
     "schedules.district_office.periods.1", "end 13:00 is not after start 17:00"),
    (_set("units", "foo", value={"name": "某局", "hours": "office"}),
     "units.foo", "not a department code"),
    (_set("units", "edu", "hours", value="ofice"), "units.edu.hours", "unknown schedule"),
    (_set("units", "edu", "overflow_to", value="nowhere"), "units.edu.overflow_to", "not a unit"),
    (_set("units", "edu", "agent_capp", value=3), "units.edu.agent_capp", "Extra inputs"),
    (_set("units", "edu", "agent_cap", value=0), "units.edu.agent_cap", "greater than or equal"),
    (_set("schedules", "office", "periods", value=[540]), "schedules.office.periods.0", "quoted"),
    (_set("schedules", "office", "timezone", value="Asia/Shanghia"), "schedules.office.timezone",
     "IANA"),
    (_set("defaults", "closed_message", value="{unti}"), "defaults.closed_message", "placeholder"),
    (_set("units", "edu", "overflow_after_s", value=30), "units.edu.overflow_after_s", "shorter"),
    (_set("units", "market", "overflow_to", value="lead-department"), "units.market.overflow_to",
     "leads matters"),
])
def test_bad_units_file_names_the_field(tmp_path, change, field, why):
    message = broken(tmp_path, change)
    assert field in message and why in message


def test_a_missing_unit_and_an_overflow_loop_are_refused(tmp_path):
    assert "units: no entry for 'lingang'" in broken(tmp_path, lambda d: d["units"].pop("lingang"))

    def loop(data):
        data["units"]["edu"]["overflow_to"] = "police"
        data["units"]["police"]["overflow_to"] = "edu"
    assert "overflow loops back" in broken(tmp_path, loop)
