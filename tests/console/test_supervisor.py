"""班组监控 through the real application: loads, the line, breaches and 差评整改, per unit of the
supervisor and never another unit's."""

from __future__ import annotations

from core.appkeys import HUB
from core.ratings import RatingStore

from .test_workspace import (TAX_QUESTION, ask_for_person, desk_app,  # noqa: F401
                             sign_in, staff_store)


async def busy_police(desk_app, sign_in, engine):
    """An online police agent holding one citizen (SLA breached) at its cap, a second citizen
    waiting, a poor rating to follow up; and a citizen waiting at the tax bureau."""
    desk = desk_app.app[HUB].desk
    agent = await sign_in("zhang", ["police"], display="张警官")
    await desk.heartbeat(agent.user, cap=1)
    first = await ask_for_person(desk_app.app)
    second = await ask_for_person(desk_app.app)
    [held] = (await desk.board(agent.user))["mine"]
    assert held["channel_user"] == first
    assert await desk.store.mark_breached(held["id"])
    await RatingStore(engine).record(conversation_id=held["conversation_id"], segment="agent",
                                     target=held["id"], unit="police", agent=agent.user.id,
                                     channel="web", level=1,
                                     comment="<b>态度差</b> 身份证310101199001011234")
    tax_citizen = await ask_for_person(desk_app.app, TAX_QUESTION)
    return agent, held, second, tax_citizen


async def test_a_supervisor_sees_loads_the_line_breaches_and_followups_of_their_unit(
        desk_app, sign_in, engine):
    agent, held, waiting, tax_citizen = await busy_police(desk_app, sign_in, engine)
    boss = await sign_in("boss", ["police"], roles=("supervisor",))

    status, data = await boss.get("/console/api/supervisor")
    assert status == 200
    [unit] = data["units"]
    assert unit["unit"] == "police" and unit["unit_name"] == "市公安局"
    assert unit["agents"] == [{"id": agent.user.id, "name": "张警官", "status": "online",
                               "load": 1, "cap": 1}]
    [line] = unit["waiting"]
    assert line["position"] == 1 and line["waited_s"] >= 0 and line["matter"]
    assert [s["handoff"] for s in unit["serving"]] == [held["id"]]
    assert unit["serving"][0]["sla_breached"] and not unit["serving"][0]["answered"]
    assert [b["handoff"] for b in unit["breaches"]] == [held["id"]]
    [f] = unit["followups"]
    # the citizen's comment as they wrote it, but with the ID-card number masked, as the
    # ticket lists mask theirs
    assert f["level_name"] == "非常不满意"
    assert f["comment"] == "<b>态度差</b> 身份证310101********1234"
    assert f["agent_name"] == "张警官"

    status, page = await boss.get("/console/supervisor")
    assert status == 200
    assert "市公安局" in page and "张警官" in page and "在线" in page and "1 / 1" in page
    assert 'class="sv-waited" data-since=' in page and "超时未响应" in page
    assert "&lt;b&gt;态度差&lt;/b&gt;" in page and "<b>态度差" not in page
    assert "310101199001011234" not in page
    assert f'href="/console/workspace?h={held["id"]}"' in page
    assert "市税务局" not in page and tax_citizen not in page
    assert '<script src="/console/static/workspace.js" defer></script>' in page


async def test_only_supervisors_and_admins_and_admins_see_every_busy_unit(desk_app, sign_in,
                                                                          engine):
    agent, held, waiting, tax_citizen = await busy_police(desk_app, sign_in, engine)
    status, _ = await agent.get("/console/supervisor")
    assert status == 403
    status, body = await agent.get("/console/api/supervisor")
    assert status == 403 and body["error"] == "forbidden"
    home = (await agent.get("/console/"))[1]
    assert "班组监控" not in home

    admin = await sign_in("root", [], roles=("admin",))
    _, data = await admin.get("/console/api/supervisor")
    assert {u["unit"] for u in data["units"]} == {"police", "tax"}  # the others are quiet
    tax = next(u for u in data["units"] if u["unit"] == "tax")
    assert len(tax["waiting"]) == 1 and tax["agents"] == [] and tax["breaches"] == []
    assert 'href="/console/supervisor"' in (await admin.get("/console/"))[1]

    other = await sign_in("taxboss", ["tax"], roles=("supervisor",))
    _, data = await other.get("/console/api/supervisor")
    assert [u["unit"] for u in data["units"]] == ["tax"]
    assert data["units"][0]["followups"] == [] and data["units"][0]["breaches"] == []
