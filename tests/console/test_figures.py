"""GET /console/api/figures through the real application: who may read what, the parameters,
and the numbers as the console receives them."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from console import figures as console_figures
from core.staff import StaffStore
from tests.console.test_auth import PASSWORD, login
from tests.core.test_figures import fill

URL = "/console/api/figures"
RANGE = "from=2025-09-22&to=2025-09-23"


def make_app(settings):
    from core.app import create_app

    # human help off: its live sweep would otherwise take up (and overflow) the fixture's
    # long-waiting segment while the figures are read
    settings = settings.model_copy(update={
        "handoff": settings.handoff.model_copy(update={"enabled": False})})
    app = create_app(settings, adapters={})
    if not any(getattr(r.resource, "canonical", None) == URL for r in app.router.routes()):
        console_figures.mount(app)  # until console.setup mounts it itself
    return app


@pytest.fixture
async def api(aiohttp_client, settings, engine, redis) -> TestClient:
    await fill(engine)
    store = StaffStore(engine)
    await store.add_user("banzhang", PASSWORD, roles=["supervisor"], units=["hrss"])
    await store.add_user("duoban", PASSWORD, roles=["supervisor", "agent"],
                         units=["hrss", "police"])
    await store.add_user("guanli", PASSWORD, roles=["admin"])
    await store.add_user("zuoxi", PASSWORD, roles=["agent"], units=["hrss"])
    return await aiohttp_client(make_app(settings))


async def sign_in(client: TestClient, username: str) -> None:
    client.session.cookie_jar.clear()
    resp = await login(client, username)
    assert resp.status == 303, await resp.text()


async def get(client: TestClient, query: str = "", status: int = 200) -> dict:
    resp = await client.get(f"{URL}?{query}" if query else URL)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_only_supervisors_and_admins_read_figures(api):
    assert (await api.get(URL)).status == 401
    await sign_in(api, "zuoxi")
    body = await get(api, RANGE, 403)
    assert body["error"] == "forbidden"


async def test_a_supervisor_sees_their_own_units(api):
    await sign_in(api, "banzhang")
    data = await get(api, f"{RANGE}&by=unit")
    assert data["units"] == ["hrss"]
    assert [(g["key"], g["label"]) for g in data["groups"]] == [("hrss", "市人力资源社会保障局")]
    o = data["overall"]
    assert o["label"] == "合计"
    assert (o["human_resolution"]["numerator"], o["human_resolution"]["denominator"],
            o["human_resolution"]["rate"]) == (2, 3, 0.6667)
    assert o["bot_resolution"]["rate"] is None  # the bot belongs to no unit
    assert (o["dispatch"]["rate"], o["dispatch"]["target"], o["dispatch"]["target_kind"],
            o["dispatch"]["meets_target"]) == (0.2, 0.1, "max", False)
    assert o["counts"]["handoffs"] == 5
    assert (await get(api, f"{RANGE}&unit=hrss"))["units"] == ["hrss"]
    body = await get(api, f"{RANGE}&unit=police", 403)
    assert "无权查看：police" in body["message"]
    await get(api, f"{RANGE}&unit=hrss&unit=police", 403)

    await sign_in(api, "duoban")  # two units: both by default, one on request
    assert (await get(api, RANGE))["units"] == ["hrss", "police"]
    assert (await get(api, f"{RANGE}&unit=police"))["overall"]["counts"]["handoffs"] == 3


async def test_an_admin_sees_everything_with_display_names(api):
    await sign_in(api, "guanli")
    data = await get(api, f"{RANGE}&by=unit")
    assert data["units"] is None and (data["from"], data["to"]) == ("2025-09-22", "2025-09-23")
    assert [(g["key"], g["label"]) for g in data["groups"]] == [
        ("hrss", "市人力资源社会保障局"), ("police", "市公安局"), (None, "无（小申服务）")]
    o = data["overall"]
    assert (o["bot_resolution"]["rate"], o["bot_resolution"]["meets_target"]) == (0.6667, True)
    assert (o["human_resolution"]["rate"], o["human_closed_resolved"]["rate"]) == (0.75, 0.6)
    assert (o["first_response"]["p50_s"], o["first_response"]["p90_s"],
            o["first_response"]["within_target"]["rate"],
            o["first_response"]["messages_excluded"]) == (20.0, 90.0, 0.75, 2)
    assert (o["dispatch"]["numerator"], o["dispatch"]["denominator"]) == (1, 7)
    assert data["targets"] == {"bot_resolution_min": 0.5, "human_resolution_min": 0.9,
                               "dispatch_max": 0.1, "first_response_s": 60}
    assert set(data["notes"]) >= {"bot_resolution", "human_resolution", "first_response",
                                  "dispatch"}

    matters = await get(api, f"{RANGE}&by=matter")
    assert [(g["key"], g["label"]) for g in matters["groups"]] == [
        ("M03", "居住证签注"), ("M10", "失业登记(本市户籍)/(非本市户籍)"), (None, "未识别事项")]
    channels = await get(api, f"{RANGE}&by=channel&channel=web&channel=app")
    assert [(g["key"], g["label"]) for g in channels["groups"]] == [
        ("app", "随申办APP"), ("web", "“一网通办”PC端")]
    assert channels["channels"] == ["web", "app"]
    days = await get(api, f"{RANGE}&by=day")
    assert [(g["key"], g["label"]) for g in days["groups"]] == [
        ("2025-09-22", "2025-09-22"), ("2025-09-23", "2025-09-23")]


async def test_the_default_range_is_the_last_seven_beijing_days(api):
    await sign_in(api, "guanli")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    data = await get(api)
    assert (data["from"], data["to"], data["by"]) == (
        (today - timedelta(days=6)).isoformat(), today.isoformat(), "day")
    assert [g["key"] for g in data["groups"]] == [
        (today - timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    only_to = await get(api, "to=2025-09-23")
    assert (only_to["from"], only_to["to"]) == ("2025-09-17", "2025-09-23")
    assert only_to["overall"]["counts"]["handoffs"] == 9  # Sunday 23:59:59 is in it now


BAD = [
    ("from=2025-9-22&to=2025-09-23", "日期格式应为 YYYY-MM-DD"),
    ("from=2025-02-30&to=2025-03-01", "不是有效日期"),
    ("from=1758499200&to=2025-09-23", "日期格式应为 YYYY-MM-DD"),
    ("from=2025-09-23&to=2025-09-22", "开始日期晚于结束日期"),
    ("from=2024-01-01&to=2025-09-22", "最长366天"),
    (f"{RANGE}&by=week", "by 只能是"),
    (f"{RANGE}&unit=nowhere", "未知的单位代码：nowhere"),
    (f"{RANGE}&channel=Web!", "渠道名称无效"),
    (f"{RANGE}&channel=nosuch", "未知的渠道：nosuch；可选：alipay、app、kiosk、web、wechat"),
    (f"{RANGE}&channel=web&channel=wechta", "未知的渠道：wechta"),
    (f"{RANGE}&group=unit", "不支持的参数 group"),
    # days at the edge of the calendar have no UTC start to compute with: 500 before
    ("to=9999-12-31", "日期须在 2000-01-01 至 2100-12-31 之间"),
    ("from=0001-01-01&to=0001-01-02", "日期须在 2000-01-01 至 2100-12-31 之间"),
    ("to=0001-01-03", "日期须在 2000-01-01 至 2100-12-31 之间"),
    ("from=2100-12-31&to=2101-01-01", "日期须在 2000-01-01 至 2100-12-31 之间"),
]


async def test_bad_parameters_are_400_with_a_reason(api):
    await sign_in(api, "guanli")
    for query, reason in BAD:
        body = await get(api, query, 400)
        assert body["error"] == "invalid" and reason in body["message"], (query, body)
