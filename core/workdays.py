"""The Chinese working-day calendar: public holidays and 调休 make-up working days.

Backed by the maintained ``chinesecalendar`` package. For a year it does not cover yet (the State
Council publishes each year's arrangement in the autumn before), we fall back to Monday–Friday
and log once, rather than refuse to compute a deadline.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import chinese_calendar

log = logging.getLogger(__name__)
_warned: set[int] = set()


def is_workday(day: date) -> bool:
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        if day.year not in _warned:
            _warned.add(day.year)
            log.warning("no holiday data for %d in chinesecalendar; using Monday–Friday "
                        "(upgrade the chinesecalendar package)", day.year)
        return day.weekday() < 5


def add_workdays(start: date | datetime, days: int) -> date:
    """The date ``days`` working days after ``start`` (start itself not counted)."""
    day = start.date() if isinstance(start, datetime) else start
    remaining = days
    while remaining > 0:
        day += timedelta(days=1)
        if is_workday(day):
            remaining -= 1
    return day
