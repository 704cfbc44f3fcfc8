"""Where a citizen who asks for a person is queued (线上人工帮办 routing).

The rules, in the order they are applied (the first that fits wins):

1. technical  — platform problems (cannot log in, page will not open, 实名认证 fails …) go to
   ``bigdata`` whatever the matter: the department cannot fix the platform, and the matter is often
   unknown anyway because the citizen never got that far.
2. unknown matter — the citizen picks from a menu grouped by lead department (plus direct entries
   for platform problems and for 12345), because a wrong guess costs a transfer later.
3. community  — a matter that lists ``civil-community`` goes there when the citizen's question is
   about the 社区/居委/街道 side of it (e.g. 居住证 collected at the 社区事务受理服务中心).
4. lingang    — a matter that lists ``lingang`` (M18) goes to the 临港新片区管委会 when the citizen
   mentions 临港/新片区/洋山/滴水湖. A topic, not a district: the 新片区 spans parts of 浦东新区,
   奉贤区 and 闵行区 (and 小洋山), so no district code identifies it.
5. districts  — a matter that lists ``districts`` is handled by the district office of the citizen's
   district (``district-<GB/T 2260 code>``), where such cases are actually processed; the municipal
   department is its overflow. Unknown district: ask, with the 16 districts as quick replies. The
   region 310000 (上海市) means "no particular district" and takes the default below.
6. default    — the matter's first responsible unit.

Pure functions over config/matters.yaml: no I/O beyond loading it once, no clock, no Redis, so the
dialog, the agent workspace (transfers) and tests all share one answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from .reference import Matters, load_matters

#: pseudo unit of matters.yaml: the district office of the citizen's district
DISTRICTS = "districts"
DISTRICT_PREFIX = "district-"
MUNICIPAL_REGION = "310000"
TECHNICAL_UNIT = "bigdata"
COMMUNITY_UNIT = "civil-community"
LINGANG_UNIT = "lingang"
HOTLINE_UNIT = "hotline-12345"

Topic = Literal["technical", "community", "lingang"]
Action = Literal["queue", "ask_district", "choose_department"]
Reason = Literal["technical", "community", "lingang", "district_office", "municipal_level",
                 "matter_default", "district_unknown", "matter_unknown"]

# Cue words, matched as substrings of the citizen's text. Short on purpose: a missed cue only costs
# the default unit (which can transfer), a wrong one sends the citizen to the wrong desk. Words that
# also describe a case being stuck at a department (卡住, 进度) are left out for that reason.
TECHNICAL_CUES: tuple[str, ...] = (
    "登录不上", "登陆不上", "登不上", "无法登录", "不能登录", "登录失败", "登录异常",
    "系统报错", "报错", "系统错误", "系统故障", "系统异常", "页面打不开", "网页打不开", "打不开",
    "白屏", "闪退", "加载不出", "验证码收不到", "收不到验证码", "实名认证失败", "认证失败",
    "人脸识别失败", "刷脸失败", "无法提交", "提交不了", "上传失败", "上传不了", "bug",
)
COMMUNITY_CUES: tuple[str, ...] = (
    "社区", "居委", "村委", "街道", "受理中心", "镇政府",
)
LINGANG_CUES: tuple[str, ...] = ("临港", "新片区", "洋山", "滴水湖")

# technical outranks everything (rule 1); community before lingang because a 临港 resident asking
# about a community matter (居住证) is better served by the community desk than by the default unit
_TOPIC_ORDER: tuple[tuple[Topic, tuple[str, ...]], ...] = (
    ("technical", TECHNICAL_CUES), ("community", COMMUNITY_CUES), ("lingang", LINGANG_CUES))


def detect_topic(text: str | None) -> Topic | None:
    """The routing topic the citizen's words point to, or None."""
    if not text:
        return None
    folded = text.lower()
    for topic, cues in _TOPIC_ORDER:
        if any(cue in folded for cue in cues):
            return topic
    return None


def district_unit(region: str) -> str:
    return f"{DISTRICT_PREFIX}{region}"


def district_choices(matters: Matters | None = None) -> tuple[tuple[str, str], ...]:
    """The 16 districts as (region code, name), in GB/T 2260 order, for quick replies."""
    regions = (matters or load_matters()).regions
    return tuple((code, name) for code, name in regions.items() if code != MUNICIPAL_REGION)


def parse_district(value: str | None, matters: Matters | None = None) -> str | None:
    """A region code from a code ("310104"), a name ("徐汇区") or a short name ("徐汇", "浦东")."""
    if not value:
        return None
    value = value.strip()
    regions = (matters or load_matters()).regions
    if value in regions:
        return value
    for code, name in regions.items():
        short = name.removesuffix("新区").removesuffix("区").removesuffix("市")
        if value in (name, short):
            return code
    return None


def serving_units(matters: Matters | None = None) -> set[str]:
    """Every concrete unit routing or overflow can send a citizen to (units.yaml must list them)."""
    matters = matters or load_matters()
    units = {TECHNICAL_UNIT, HOTLINE_UNIT}
    for m in matters.matters:
        units.add(m.department)  # lead departments take district overflow
        units.update(u for u in m.units if u != DISTRICTS)
        if DISTRICTS in m.units:
            units.update(district_unit(code) for code, _ in district_choices(matters))
    return units


@dataclass(frozen=True)
class MenuGroup:
    """One department of the menu. A group without matters is chosen as a whole (its unit)."""

    unit: str
    name: str
    matters: tuple[tuple[str, str], ...] = ()  # (matter code, matter name)


@dataclass(frozen=True)
class RouteDecision:
    action: Action
    reason: Reason
    #: why, in a sentence, for logs and the agent's view of the conversation
    detail: str
    matter: str | None = None
    #: the unit to queue on (action "queue")
    unit: str | None = None
    #: action "ask_district": where to go if the citizen cannot or will not name a district
    default_unit: str | None = None
    #: action "ask_district": (region code, name) of the 16 districts
    choices: tuple[tuple[str, str], ...] = ()
    #: action "choose_department": the menu, grouped by lead department
    menu: tuple[MenuGroup, ...] = ()


def department_menu(matters: Matters | None = None) -> tuple[MenuGroup, ...]:
    """Every matter once, under its lead department, in matters.yaml order; then direct entries
    for platform problems and for anything else (12345), so no citizen is left without a choice."""
    matters = matters or load_matters()
    grouped: dict[str, list[tuple[str, str]]] = {}
    for m in matters.matters:
        grouped.setdefault(m.department, []).append((m.code, m.name))
    groups = [MenuGroup(dept, matters.units[dept], tuple(items)) for dept, items in grouped.items()]
    groups += [MenuGroup(TECHNICAL_UNIT, matters.units[TECHNICAL_UNIT]),
               MenuGroup(HOTLINE_UNIT, matters.units[HOTLINE_UNIT])]
    return tuple(groups)


def route(matter: str | None, *, district: str | None, topic: str | None,
          matters: Matters | None = None) -> RouteDecision:
    """Decide where a request for a person goes (see the module docstring for the rules).

    ``district`` is a region code or name (None when unknown); ``topic`` comes from
    :func:`detect_topic` or a quick reply. An unknown topic value is a caller bug and raises.
    """
    if topic is not None and topic not in get_args(Topic):
        raise ValueError(f"unknown routing topic {topic!r}; expected one of {get_args(Topic)}")
    matters = matters or load_matters()
    if topic == "technical":
        return RouteDecision("queue", "technical", "platform / technical problem",
                             matter=matter, unit=TECHNICAL_UNIT)
    m = matters.by_code().get(matter) if matter else None
    if m is None:
        what = f"unknown matter {matter!r}" if matter else "no matter identified"
        return RouteDecision("choose_department", "matter_unknown",
                             f"{what}; the citizen picks a department",
                             matter=None, menu=department_menu(matters))
    default = next((u for u in m.units if u != DISTRICTS), HOTLINE_UNIT)
    if topic == "community" and COMMUNITY_UNIT in m.units:
        return RouteDecision("queue", "community", f"{m.code}: community side of the matter",
                             matter=m.code, unit=COMMUNITY_UNIT)
    if topic == "lingang" and LINGANG_UNIT in m.units:
        return RouteDecision("queue", "lingang", f"{m.code}: citizen is in 临港新片区",
                             matter=m.code, unit=LINGANG_UNIT)
    if DISTRICTS in m.units:
        region = parse_district(district, matters)
        if region == MUNICIPAL_REGION:
            return RouteDecision("queue", "municipal_level",
                                 f"{m.code}: no particular district; default unit",
                                 matter=m.code, unit=default)
        if region is None:
            why = f"district {district!r} not recognised" if district else "district unknown"
            return RouteDecision("ask_district", "district_unknown",
                                 f"{m.code}: handled by district offices; {why}",
                                 matter=m.code, default_unit=default,
                                 choices=district_choices(matters))
        return RouteDecision("queue", "district_office",
                             f"{m.code}: district office of {matters.regions[region]}",
                             matter=m.code, unit=district_unit(region))
    ignored = f" (topic {topic!r} does not apply)" if topic else ""
    return RouteDecision("queue", "matter_default", f"{m.code}: first responsible unit{ignored}",
                         matter=m.code, unit=default)
