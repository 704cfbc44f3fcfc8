"""The figures API for supervisors and admins: ``GET /console/api/figures``.

``?from=YYYY-MM-DD&to=YYYY-MM-DD&by=day|unit|matter|channel[&unit=..][&channel=..]`` (unit and
channel may repeat; the range defaults to the last 7 Beijing days, ``by`` to day). Answers the
core.figures.Figures document, with display names for the groups. A supervisor sees only their
own units: no ``unit`` means all of them, a unit of someone else's is 403. Bad parameters are 400
with the reason in Chinese (the console shows it as is).
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters import discover
from core.appkeys import ENGINE, SETTINGS
from core.config import Settings
from core.errors import Forbidden, ValidationFailed
from core.figures import BY, Figures, FiguresQuery, compute
from core.hours import load_units
from core.reference import load_codes, matter_names
from core.staff import StaffUser

from .auth import login_required, staff_session

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CHANNEL = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: channel adapter name → its code in the seed's 终端类型 table, where they differ
_TERMINAL = {"web": "pc"}
NO_UNIT, NO_MATTER = "无（小申服务）", "未识别事项"


def unit_scope(user: StaffUser, asked: list[str]) -> list[str] | None:
    """The units a request may cover: an admin anything (None = all), a supervisor or agent only
    their own (all of them when none is asked for). Raises Forbidden for someone else's unit."""
    if user.has_role("admin"):
        return list(asked) or None
    outside = [u for u in asked if not user.in_unit(u)]
    if outside:
        raise Forbidden(f"您只能查看本单位的数据，无权查看：{'、'.join(outside)}。")
    return list(asked) or list(user.units)


def check_units(settings: Settings, asked: list[str]) -> None:
    """Raises ValidationFailed naming a unit code units.yaml does not have: a typo would
    otherwise be answered with empty figures or an empty list, as if nothing had happened."""
    known = load_units(settings.handoff.units_file)
    if unknown := [u for u in asked if u not in known]:
        raise ValidationFailed(f"未知的单位代码：{unknown[0]}。")


def check_channels(asked: list[str]) -> None:
    """Raises ValidationFailed naming a channel that is not installed (as `bangban figures
    --channel` does), with the ones that are."""
    known = _channels()
    if unknown := [c for c in asked if c not in known]:
        raise ValidationFailed(f"未知的渠道：{unknown[0]}；可选：{'、'.join(sorted(known))}。")


@cache
def _channels() -> frozenset[str]:
    # installed rather than enabled: a channel switched off since still has its figures; read
    # once per process, as installing an adapter needs a restart anyway
    return frozenset(discover())


class FiguresParams(BaseModel):
    """The query string, validated (each message is what the console shows)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    date_from: date | None = Field(None, alias="from")
    date_to: date | None = Field(None, alias="to")
    by: str = "day"
    unit: list[str] = []
    channel: list[str] = []

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def _day(cls, v: Any) -> Any:
        if v in (None, ""):
            return None
        if not isinstance(v, str) or not _DAY.match(v):
            raise ValueError("日期格式应为 YYYY-MM-DD，例如 2025-09-22。")
        try:
            return date.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{v} 不是有效日期。") from None

    @field_validator("by")
    @classmethod
    def _by(cls, v: str) -> str:
        if v not in BY:
            raise ValueError("by 只能是 day（按日）、unit（按单位）、matter（按事项）或 channel（按渠道）。")
        return v

    @field_validator("channel")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not _CHANNEL.match(c)]
        if bad:
            raise ValueError(f"渠道名称无效：{bad[0]!r}。")
        return v

    @classmethod
    def parse(cls, query: Any) -> FiguresParams:
        data: dict[str, Any] = {}
        for name in query:
            values = query.getall(name)
            data[name] = values if name in ("unit", "channel") else values[-1]
        return cls.model_validate(data)


def _problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"不支持的参数 {err['loc'][0]}；可用参数：from、to、by、unit、channel。"
    field = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
    return msg if msg.endswith("。") else f"{field}：{msg}"


@cache
def _labels(units_file: Any) -> dict[str, dict[str, str]]:
    codes = load_codes()
    terminal = codes.table("terminal")
    return {
        "unit": {code: u.name for code, u in load_units(units_file).items()},
        "matter": matter_names(),
        "channel": {name: terminal[_TERMINAL.get(name, name)]
                    for name in ("web", "app", "wechat", "alipay", "kiosk")},
    }


def label(settings: Settings, by: str, key: str | None) -> str | None:
    """What the console shows for a group key."""
    if by == "day":
        return key
    if key is None:
        return {"unit": NO_UNIT, "matter": NO_MATTER}.get(by)
    return _labels(settings.handoff.units_file)[by].get(key, key)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@login_required(roles=("supervisor", "admin"))
async def get_figures(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    try:
        params = FiguresParams.parse(request.query)
    except ValidationError as exc:
        return _error(400, "invalid", _problem(exc))
    try:
        check_units(settings, params.unit)
        check_channels(params.channel)
    except ValidationFailed as exc:
        return _error(400, "invalid", str(exc))
    try:
        units = unit_scope(staff_session(request).user, params.unit)
    except Forbidden as exc:
        return _error(403, exc.code, str(exc))
    try:  # no ``to``: today; no ``from``: the 7 days up to ``to``
        query = FiguresQuery(since=params.date_from, until=params.date_to, by=params.by,
                             units=units, channels=params.channel or None)
    except ValidationError as exc:
        return _error(400, "invalid", _problem(exc))
    figures: Figures = await compute(request.config_dict[ENGINE], query)
    for group in figures.groups:
        group.label = label(settings, query.by, group.key)
    figures.overall.label = "合计"
    return web.json_response(figures.model_dump(mode="json", by_alias=True))


def mount(app: web.Application) -> None:
    """Add the figures API to an app made by core.app.create_app (console already set up)."""
    app.router.add_get("/console/api/figures", get_figures)


__all__ = ["mount", "unit_scope", "check_units", "check_channels", "label", "FiguresParams"]
