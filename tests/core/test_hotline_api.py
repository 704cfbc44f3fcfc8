"""12345's status callbacks and the supervisors' ticket views, through the real application
(create_app + core.hotline_api.mount) on the test database and Redis."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import ClientSession

from core import hotline_api, jobs
from core.appkeys import HUB
from core.config import DispatchSettings
from core.conversations import ConversationStore
from core.db.schema import tickets
from core.hotline_api import MAX_CALLBACK_BYTES, apply_callback, citizen_text
from core.hotline_sim import HotlineSim, RunningSim
from core.staff import StaffStore
from core.hotline_wire import CALLBACK_PATH, BadSignature, DispatchConfig, signed_headers
from core.tickets import dead_letters_key, get_ticket, job_key, post_ticket, ticket_payload
from core.errors import NotFound, ValidationFailed
from tests.conftest import bangban_executable
from tests.console.test_auth import PASSWORD, login

SECRET = "s3cret-for-tests"


def with_dispatch(settings, **kw):
    return settings.model_copy(update={"dispatch": DispatchSettings(secret=SECRET, **kw)})


def make_app(settings):
    from core.app import create_app

    app = create_app(settings, adapters={})
    if not any(getattr(r.resource, "canonical", None) == CALLBACK_PATH
               for r in app.router.routes()):
        hotline_api.mount(app)  # until create_app mounts it itself
    return app


@pytest.fixture
async def api(aiohttp_client, settings, engine, redis):
    """The app with 12345 callbacks accepted (secret set) and no dispatch endpoint: no sweep."""
    return await aiohttp_client(make_app(with_dispatch(settings)))


async def add_ticket(engine, ticket_id="t1", *, conversation_id="c9", unit="hrss",
                     status="sent", summary="s", contact=None, external_id=None,
                     updated_at=None) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(tickets.insert().values(
            id=ticket_id, conversation_id=conversation_id, unit=unit, summary=summary,
            transcript=[{"sender": "citizen", "text": "我的电话13812345678"}],
            citizen_contact=contact, status=status, attempts=1,
            idempotency_key=f"key-{ticket_id}", external_id=external_id, created_at=now,
            updated_at=updated_at or now))


def signed(payload: dict | bytes, secret: str = SECRET, at: float | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload,
                                                                 ensure_ascii=False).encode()
    h = signed_headers(secret, body, now=at)
    return body, h["X-Bangban-Signature"], h["X-Bangban-Timestamp"]


async def run_worker(queue_name: str, database_url: str, redis_url: str, cwd) -> str:
    """A real ``bangban worker --burst`` on ``queue_name``: it runs the jobs with its own
    configuration (this test's database and Redis) and exits; returns its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANGBAN_")}
    env.update(BANGBAN_DATABASE_URL=database_url, BANGBAN_REDIS_URL=redis_url)
    worker = await asyncio.create_subprocess_exec(
        bangban_executable(), "worker", "--burst", "--queue", queue_name, cwd=cwd,
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(worker.communicate(), 120)
    assert worker.returncode == 0, err.decode()
    return err.decode()


async def post_callback(client, payload, **kw):
    body, sig, ts = signed(payload, **kw)
    return await client.post(CALLBACK_PATH, data=body, headers={
        "X-Bangban-Signature": sig, "X-Bangban-Timestamp": ts,
        "Content-Type": "application/json"})


# -- applying callbacks -----------------------------------------------------------------------


async def test_callbacks_move_the_ticket_forward_idempotently(engine):
    await add_ticket(engine)

    async def call(status, **kw):
        body, sig, ts = signed({"ticket_id": "t1", "status": status, **kw})
        return await apply_callback(engine, body, signature=sig, timestamp=ts, secret=SECRET)

    first = await call("accepted", external_id="12345-000042")
    assert (first["status"], first["changed"], first["conversation_id"], first["external_id"]) \
        == ("accepted", True, "c9", "12345-000042")
    assert (await call("accepted"))["changed"] is False
    done = await call("办结", note="  已补办\x07 ")
    assert (done["status"], done["note"], done["external_id"]) == ("done", "已补办",
                                                                    "12345-000042")
    stale = await call("accepted")
    assert (stale["status"], stale["changed"]) == ("done", False)
    row = await get_ticket(engine, "t1")
    assert (row["status"], row["external_id"]) == ("done", "12345-000042")


async def test_callbacks_with_a_bad_signature_or_body_are_refused(engine):
    await add_ticket(engine)
    body, sig, ts = signed({"ticket_id": "t1", "status": "returned"}, secret="wrong-secret")
    with pytest.raises(BadSignature):
        await apply_callback(engine, body, signature=sig, timestamp=ts, secret=SECRET)
    body, sig, ts = signed({"ticket_id": "t1", "status": "returned"}, at=time.time() - 3600)
    with pytest.raises(BadSignature):  # replayed an hour later
        await apply_callback(engine, body, signature=sig, timestamp=ts, secret=SECRET)
    body, sig, ts = signed({"ticket_id": "t1", "status": "returned"})
    tampered = body.replace(b"returned", b"done")
    with pytest.raises(BadSignature):
        await apply_callback(engine, tampered, signature=sig, timestamp=ts, secret=SECRET)
    with pytest.raises(BadSignature):
        await apply_callback(engine, body, signature=None, timestamp=None, secret=SECRET)
    for bad in [b"not json", b"[1]", b'{"ticket_id": "t1", "status": "closed"}',
                b'{"status": "done"}', b"\xff\xfe"]:
        body, sig, ts = signed(bad)
        with pytest.raises(ValidationFailed):
            await apply_callback(engine, body, signature=sig, timestamp=ts, secret=SECRET)
    body, sig, ts = signed({"idempotency_key": "nope", "status": "done"})
    with pytest.raises(NotFound):
        await apply_callback(engine, body, signature=sig, timestamp=ts, secret=SECRET)
    assert (await get_ticket(engine, "t1"))["status"] == "sent"


def test_citizen_texts():
    assert citizen_text("accepted", "12345-000042", None) == (
        "【12345工单进度】您反映的问题已由12345市民服务热线受理，工单号：12345-000042。"
        "办理结果将通过这里告知您，您也可以拨打12345查询办理进度。")
    assert "工单号" not in citizen_text("accepted", None, None)
    done = citizen_text("done", "12345-000042", "已为您补办社保卡。")
    assert "已办结，工单号：12345-000042。办理结果：已为您补办社保卡。如对办理结果有疑问" in done
    returned = citizen_text("returned", None, "不属于本市管辖")
    assert "被12345市民服务热线退回。退回原因：不属于本市管辖。帮办工作人员将核实情况后重新处理" in returned
    assert "退回原因" not in citizen_text("returned", None, "  ")


# -- the callback endpoint --------------------------------------------------------------------


async def test_a_callback_updates_the_ticket_and_tells_the_citizen(api, engine):
    hub = api.server.app[HUB]
    conv = await ConversationStore(engine).current("web", "citizen-1")
    await add_ticket(engine, "t1", conversation_id=conv.id)
    pushed: list = []

    async def on_bus(channel, user, outs):
        pushed.append((channel, user, [o.text for o in outs]))

    hub.bus.subscribe(on_bus)

    resp = await post_callback(api, {"ticket_id": "t1", "status": "受理",
                                     "external_id": "12345-000042"})
    assert resp.status == 200
    assert await resp.json() == {"ticket_id": "t1", "status": "accepted", "changed": True,
                                 "notified": True}
    # a retry by 12345 changes nothing and tells nobody
    again = await post_callback(api, {"ticket_id": "t1", "status": "accepted"})
    assert (await again.json())["changed"] is False and (await again.json())["notified"] is False
    done = await post_callback(api, {"idempotency_key": "key-t1", "status": "done",
                                     "note": "已为您补办社保卡"})
    assert (await done.json())["status"] == "done"

    history = await ConversationStore(engine).history(conv.id)
    assert [(m.sender, m.action) for m in history] == [("system", "system")] * 2
    assert "受理，工单号：12345-000042" in history[0].text
    assert "已办结，工单号：12345-000042。办理结果：已为您补办社保卡。" in history[1].text
    for _ in range(100):  # the bus delivers to whichever process holds the citizen
        if len(pushed) == 2:
            break
        await asyncio.sleep(0.05)
    assert [(c, u) for c, u, _ in pushed] == [("web", "citizen-1")] * 2
    assert pushed[1][2] == [history[1].text]
    assert (await get_ticket(engine, "t1"))["status"] == "done"


async def test_a_returned_ticket_tells_the_citizen_what_happens_next(api, engine):
    conv = await ConversationStore(engine).current("app", "citizen-2")
    await add_ticket(engine, "t2", conversation_id=conv.id, external_id="12345-000007")
    resp = await post_callback(api, {"ticket_id": "t2", "status": "returned",
                                     "note": "请补充具体地址"})
    assert (await resp.json())["notified"] is True
    [msg] = await ConversationStore(engine).history(conv.id)
    assert "退回，工单号：12345-000007。退回原因：请补充具体地址。帮办工作人员将核实情况后重新处理" in msg.text
    assert "您也可以直接回复补充说明" in msg.text


async def test_a_callback_for_a_conversation_that_is_gone_still_counts(api, engine):
    await add_ticket(engine, "t3", conversation_id="c-missing")
    resp = await post_callback(api, {"ticket_id": "t3", "status": "accepted"})
    assert resp.status == 200
    assert await resp.json() == {"ticket_id": "t3", "status": "accepted", "changed": True,
                                 "notified": False}


async def test_bad_callbacks_get_their_status_codes(api, engine):
    await add_ticket(engine)
    resp = await post_callback(api, {"ticket_id": "t1", "status": "done"}, secret="forged-key")
    assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
    resp = await api.post(CALLBACK_PATH, data=b"{}")  # unsigned
    assert resp.status == 401
    resp = await post_callback(api, b"{not json")
    assert resp.status == 400 and "not JSON" in (await resp.json())["message"]
    resp = await post_callback(api, {"ticket_id": "t1", "status": "closed"})
    assert resp.status == 400 and "status" in (await resp.json())["message"]
    resp = await post_callback(api, {"status": "done"})
    assert resp.status == 400 and "names no ticket" in (await resp.json())["message"]
    resp = await post_callback(api, {"ticket_id": "t-unknown", "status": "done"})
    assert resp.status == 404
    huge = {"ticket_id": "t1", "status": "done", "note": "长" * MAX_CALLBACK_BYTES}
    resp = await post_callback(api, huge)
    assert resp.status == 413 and (await resp.json())["error"] == "too_large"

    async def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(3):
            yield b"x" * MAX_CALLBACK_BYTES
    resp = await api.post(CALLBACK_PATH, data=chunks())
    assert resp.status == 413
    assert (await get_ticket(engine, "t1"))["status"] == "sent"


async def test_callbacks_are_refused_when_dispatch_is_not_configured(aiohttp_client, settings,
                                                                     engine, redis):
    client = await aiohttp_client(make_app(settings))
    resp = await post_callback(client, {"ticket_id": "t1", "status": "done"})
    assert resp.status == 503 and (await resp.json())["error"] == "dispatch_off"


async def test_the_simulator_sends_callbacks_the_app_applies(api, engine):
    conv = await ConversationStore(engine).current("web", "citizen-3")
    await add_ticket(engine, "t1", conversation_id=conv.id)
    row = await get_ticket(engine, "t1")
    to = str(api.make_url(CALLBACK_PATH))
    with RunningSim(HotlineSim(SECRET)) as sim:
        d = DispatchConfig(endpoint=f"{sim.url}/tickets", secret=SECRET, callback_url=to)
        answer = await asyncio.to_thread(post_ticket, ticket_payload(row, d), d)
        async with ClientSession() as http:
            async def cb(status, **params):
                async with http.post(f"{sim.url}/tickets/{answer['id']}/callback",
                                     params={"status": status, **params}) as resp:
                    return resp.status, await resp.json()

            status, out = await cb("accepted")  # to the callback_url the ticket came with
            assert status == 200 and out["status"] == 200 and out["sent_to"] == to, out
            assert (await get_ticket(engine, "t1"))["status"] == "accepted"
            status, out = await cb("returned", note="请补充地址")
            assert json.loads(out["response"])["status"] == "returned"
            assert (await cb("closed"))[0] == 400
    texts = [m.text for m in await ConversationStore(engine).history(conv.id)]
    assert len(texts) == 2 and "工单号：12345-000001" in texts[0] and "请补充地址" in texts[1]


# -- the recovery sweep in the app ------------------------------------------------------------


async def test_the_app_sweep_queues_a_ticket_stuck_in_created(aiohttp_client, settings, engine,
                                                              redis, rq_redis, queue_name,
                                                              monkeypatch, database_url,
                                                              redis_url, tmp_path):
    monkeypatch.setattr(hotline_api, "RECOVER_EVERY_S", 0.1)
    monkeypatch.setattr("core.ticket_recovery.RECOVER_AFTER_S", 60.0)
    with RunningSim(HotlineSim(SECRET)) as sim:
        configured = with_dispatch(settings, endpoint=f"{sim.url}/tickets", queue=queue_name,
                                   retry_intervals=[0])
        await aiohttp_client(make_app(configured))
        # saved while Redis was down: a row, no job
        await add_ticket(engine, "t-stuck", status="created",
                         updated_at=datetime.now(UTC) - timedelta(minutes=2))
        await add_ticket(engine, "t-fresh", status="created")  # its own enqueue is under way
        for _ in range(100):
            if await redis.exists(job_key("bangban:", "t-stuck")):
                break
            await asyncio.sleep(0.05)
        assert await redis.exists(job_key("bangban:", "t-stuck"))
        assert not await redis.exists(job_key("bangban:", "t-fresh"))
        await asyncio.sleep(0.3)  # more rounds: still one job
        assert len(jobs.queue(queue_name, rq_redis)) == 1
        err = await run_worker(queue_name, database_url, redis_url, tmp_path)
        assert (await get_ticket(engine, "t-stuck"))["status"] == "sent", err
        assert [t["deliveries"] for t in sim.sim.tickets.values()] == [1]
        assert (await get_ticket(engine, "t-fresh"))["status"] == "created"


# -- the supervisors' views -------------------------------------------------------------------


async def sign_in(client, username: str) -> None:
    client.session.cookie_jar.clear()  # whoever was signed in before
    resp = await login(client, username)
    assert resp.status == 303, await resp.text()


@pytest.fixture
async def staff(engine) -> StaffStore:
    store = StaffStore(engine)
    await store.add_user("banzhang", PASSWORD, roles=["supervisor"], units=["hrss"])
    await store.add_user("guanli", PASSWORD, roles=["admin"])
    await store.add_user("zuoxi", PASSWORD, roles=["agent"], units=["hrss"])
    return store


async def test_supervisors_list_their_units_tickets_masked(api, engine, staff):
    await add_ticket(engine, "t1", unit="hrss", status="dead", contact="138****5678",
                     summary="群众电话13812345678，身份证310101199001011234，社保卡补办")
    await add_ticket(engine, "t2", unit="hrss", status="sent")
    await add_ticket(engine, "t3", unit="police", status="sent")

    assert (await api.get("/console/api/tickets")).status == 401
    await sign_in(api, "zuoxi")
    assert (await api.get("/console/api/tickets")).status == 403  # agents do not supervise

    await sign_in(api, "banzhang")
    data = await (await api.get("/console/api/tickets")).json()
    assert sorted(t["id"] for t in data["tickets"]) == ["t1", "t2"] and data["count"] == 2
    t1 = next(t for t in data["tickets"] if t["id"] == "t1")
    assert t1["summary"] == "群众电话138****5678，身份证310101********1234，社保卡补办"
    assert t1["citizen_contact"] == "138****5678" and t1["status_label"] == "派单失败"
    assert "transcript" not in t1 and "13812345678" not in json.dumps(data)
    dead = await (await api.get("/console/api/tickets?status=dead")).json()
    assert [t["id"] for t in dead["tickets"]] == ["t1"]
    resp = await api.get("/console/api/tickets?unit=police")
    assert resp.status == 403 and "无权查看：police" in (await resp.json())["message"]
    resp = await api.get("/console/api/tickets?status=lost")
    assert resp.status == 400 and "未知的工单状态" in (await resp.json())["message"]
    assert (await api.get("/console/api/tickets?limit=0")).status == 400

    await sign_in(api, "guanli")
    everything = await (await api.get("/console/api/tickets")).json()
    assert everything["count"] == 3
    police = await (await api.get("/console/api/tickets?unit=police")).json()
    assert [t["id"] for t in police["tickets"]] == ["t3"]


async def test_an_unknown_unit_filter_is_named_not_answered_with_an_empty_list(api, engine,
                                                                                 staff):
    await add_ticket(engine, "t1", unit="hrss", status="dead")
    for user in ("guanli", "banzhang"):  # before, an admin's typo got 200 and nothing
        await sign_in(api, user)
        for path in ("/console/api/tickets", "/console/api/tickets/dead"):
            resp = await api.get(f"{path}?unit=nosuch")
            body = await resp.json()
            assert resp.status == 400 and body["message"] == "未知的单位代码：nosuch。", (user, path)
            resp = await api.get(f"{path}?unit=hrss&unit=hrs")
            assert resp.status == 400 and "hrs。" in (await resp.json())["message"]


async def test_supervisors_read_their_units_dead_letters(api, redis, staff):
    for ticket_id, unit in (("t1", "hrss"), ("t2", "police"), ("t3", "hrss")):
        await redis.rpush(dead_letters_key("bangban:"), json.dumps({
            "ticket_id": ticket_id, "conversation_id": "c1", "unit": unit,
            "summary": "回电13812345678", "attempts": 5, "last_error": "HTTP 503",
            "at": "2025-09-22T02:00:00+00:00"}, ensure_ascii=False))
    await sign_in(api, "banzhang")
    data = await (await api.get("/console/api/tickets/dead")).json()
    assert [d["ticket_id"] for d in data["dead_letters"]] == ["t3", "t1"]  # newest first
    assert data["dead_letters"][0]["summary"] == "回电138****5678"
    assert (await api.get("/console/api/tickets/dead?unit=police")).status == 403
    await sign_in(api, "guanli")
    assert (await (await api.get("/console/api/tickets/dead")).json())["count"] == 3


async def test_a_supervisor_sends_a_dead_ticket_again_and_12345_gets_it_once(
        aiohttp_client, settings, engine, redis, rq_redis, queue_name, staff, database_url,
        redis_url, tmp_path):
    from tests.console.test_auth import page_csrf

    with RunningSim(HotlineSim(SECRET)) as sim:
        configured = with_dispatch(settings, endpoint=f"{sim.url}/tickets", queue=queue_name,
                                   retry_intervals=[0])
        client = await aiohttp_client(make_app(configured))
        await add_ticket(engine, "t-dead", unit="hrss", status="dead")
        await add_ticket(engine, "t-sent", unit="hrss", status="sent")
        await add_ticket(engine, "t-police", unit="police", status="dead")
        await redis.rpush(dead_letters_key("bangban:"), json.dumps({
            "ticket_id": "t-dead", "conversation_id": "c9", "unit": "hrss", "summary": "s",
            "attempts": 5, "last_error": "HTTP 503", "at": "2026-11-28T02:00:00+00:00"}))

        await sign_in(client, "banzhang")
        csrf = {"X-CSRF-Token": await page_csrf(client)}
        assert (await client.post("/console/api/tickets/t-dead/resend")).status == 403  # CSRF
        resp = await client.post("/console/api/tickets/t-police/resend", headers=csrf)
        assert resp.status == 403  # another unit's ticket
        resp = await client.post("/console/api/tickets/t-sent/resend", headers=csrf)
        assert resp.status == 409 and "派单失败" in (await resp.json())["message"]
        assert (await client.post("/console/api/tickets/nope/resend", headers=csrf)).status == 404

        resp = await client.post("/console/api/tickets/t-dead/resend", headers=csrf)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["ticket"]["status"] == "created"
        assert (await get_ticket(engine, "t-dead"))["attempts"] == 0
        assert (await (await client.get("/console/api/tickets/dead")).json())["count"] == 0
        # twice in a row is refused: the first resend is already on its way
        assert (await client.post("/console/api/tickets/t-dead/resend",
                                  headers=csrf)).status == 409

        err = await run_worker(queue_name, database_url, redis_url, tmp_path)
        ticket = await get_ticket(engine, "t-dead")
        assert ticket["status"] == "sent" and ticket["attempts"] == 1, err
        got = list(sim.sim.tickets.values())
        assert len(got) == 1 and got[0]["deliveries"] == 1
