"""Field types of the KB models (``models.py``): codes checked against their tables, the seed's
wire formats for lists (``a~b``; terminals ``pc-app``), its date formats, sanitised rich text.

Each is an ``Annotated`` type, so a model field says what it is in one word (``CodeList``,
``KbDateTime``) and the checks live here once.
"""

from __future__ import annotations

import secrets
import time
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
)

from ..reference import MATTER_CODE, Codes, load_codes, load_matters
from .richtext import sanitize_html

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
STATUSES = ("draft", "published", "retired")
Status = Literal["draft", "published", "retired"]

# -- field types ------------------------------------------------------------------------------

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _blank_to_none(v: Any) -> Any:
    return None if isinstance(v, str) and not v.strip() else v


OptText = Annotated[Text | None, BeforeValidator(_blank_to_none)]


def _codes(info: ValidationInfo) -> Codes:
    ctx = info.context or {}
    return ctx.get("codes") or load_codes()


def _code(table: str):
    def check(v: str, info: ValidationInfo) -> str:
        if v not in _codes(info).table(table):
            raise ValueError(f"{v!r} is not a code of table {table!r} (config/codes.yaml)")
        return v

    return check


def _scalar_to_str(v: Any) -> Any:
    # YAML reads an unquoted 310000 or 1 as an int; codes are strings
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def Code(table: str) -> Any:  # noqa: N802 - reads as a type in annotations
    return Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_code(table))]


def _not_emptied(v: str) -> str:
    if not v.strip():
        raise ValueError("nothing is left after removing unsafe HTML (script, style, …)")
    return v


RichText = Annotated[Text, AfterValidator(sanitize_html), AfterValidator(_not_emptied)]


def _split(sep: str):
    def split(v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):
            return [p.strip() for p in v.split(sep) if p.strip()]
        if isinstance(v, (list, tuple)):
            return [_scalar_to_str(x) for x in v]
        return v

    return split


def _no_separator(sep: str):
    def check(items: list[str]) -> list[str]:
        for item in items:
            if sep in item:
                raise ValueError(f"item {item!r} contains {sep!r}, the wire-format separator")
        return items

    return check


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


CodeList = Annotated[
    list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]],
    BeforeValidator(_split("~")),
    AfterValidator(_no_separator("~")),
    AfterValidator(_dedupe),
]


def _matter_codes(items: list[str]) -> list[str]:
    known = load_matters().by_code()
    for code in items:
        if not MATTER_CODE.match(code):
            raise ValueError(f"{code!r} is not a matter code (M01, M02 …)")
        if code not in known:
            raise ValueError(f"{code!r} is not a known matter (config/matters.yaml)")
    return items


MatterList = Annotated[CodeList, AfterValidator(_matter_codes)]


def _terminals(items: list[str], info: ValidationInfo) -> list[str]:
    table = _codes(info).terminal
    for code in items:
        if code not in table:
            raise ValueError(f"{code!r} is not a code of table 'terminal' (config/codes.yaml)")
    if not items:
        raise ValueError("at least one terminal is required")
    return items


TerminalList = Annotated[
    list[str], BeforeValidator(_split("-")), AfterValidator(_no_separator("-")),
    AfterValidator(_dedupe), AfterValidator(_terminals),
]

_DT_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S",
               "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y年%m月%d日")


def _parse_datetime(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.replace(tzinfo=None, microsecond=0)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    if isinstance(v, str):
        s = v.strip()
        for fmt in _DT_FORMATS:
            try:
                return datetime.strptime(s, fmt)
            except ValueError:
                continue
        raise ValueError(f"{v!r} is not a date-time (expected YYYY-MM-DD HH:MM:SS)")
    return v


def _parse_date(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, str):
        d = _parse_datetime(v)
        return d.date() if isinstance(d, datetime) else d
    return v


KbDateTime = Annotated[
    datetime,
    BeforeValidator(_parse_datetime),
    PlainSerializer(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"), return_type=str),
]
KbDate = Annotated[
    date, BeforeValidator(_parse_date),
    PlainSerializer(lambda d: d.strftime("%Y-%m-%d"), return_type=str),
]
AliasList = Annotated[
    list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]],
    BeforeValidator(_split("~")),
    AfterValidator(_no_separator("~")),
    AfterValidator(_dedupe),
]


def new_entry_id(entry_type: str) -> str:
    """A generated 记录唯一标识: type prefix, millisecond time (sortable), randomness."""
    # 64 random bits: with 24, a 10,000-record import generated colliding ids about one time in four
    return f"{entry_type}-{int(time.time() * 1000):011x}{secrets.token_hex(8)}"
