"""custom.send from the RQ job, against the local stand-in: retried when the gateway certainly did
not take a message, never sent twice once it did (or might have), given up to the dead-letter
list with a reason otherwise; long replies go in parts."""

from __future__ import annotations

import json

import pytest

from adapters.alipay import AlipayAdapter
from adapters.alipay.sender import Delivery, Part, dead_letter_key, enqueue
from core import jobs
from core.app import create_app
from core.appkeys import HUB
from core.dialog.models import Outbound

from .conftest import APP_ID, app_config, run_worker, with_alipay

USER = f"{APP_ID}:2088000000000042"


@pytest.fixture
async def sending(aiohttp_client, settings, engine, redis, rq_redis, queue_name, keys, standin):
    cfg = with_alipay(settings, app_config(keys, standin.gateway, queue=queue_name,
                                           retry_intervals=[0], max_attempts=3, timeout_s=1.5,
                                           max_send_chars=100))
    cfg = cfg.model_copy(update={"handoff": cfg.handoff.model_copy(update={"enabled": False})})
    client = await aiohttp_client(create_app(cfg, adapters={"alipay": AlipayAdapter}))
    adapter = client.app[HUB].adapters["alipay"]
    adapter.job_settings = cfg.model_dump(mode="json")
    queue = jobs.queue(queue_name, rq_redis)

    class Sending:
        hub = client.app[HUB]
        n = 0

        async def push(self, *texts: str) -> list[Outbound]:
            outs = []
            for text in texts:
                self.n += 1
                outs.append(Outbound(conversation_id="c-send", message_id=f"m{self.n}",
                                     seq=self.n, sender="bot", action="answer", text=text))
            await adapter.push(USER, outs)
            return outs

        def work(self) -> None:
            run_worker(queue, rq_redis)

        def dead(self) -> list[dict]:
            prefix = settings.redis.prefix
            return [json.loads(x) for x in rq_redis.lrange(dead_letter_key(prefix), 0, -1)]

        async def done(self, part_id: str) -> str | None:
            raw = await redis.get(f"{settings.redis.prefix}alipay:done:{part_id}")
            return json.loads(raw)["outcome"] if raw else None

    s = Sending()
    s.adapter, s.queue, s.rq, s.sim = adapter, queue, rq_redis, standin.standin
    return s


async def test_failures_are_retried_and_a_sent_message_is_never_sent_again(sending):
    sending.sim.fail_first = 1  # HTTP 503
    sending.sim.busy_first = 1  # code 20000
    await sending.push("第一条", "第二条")
    sending.work()
    assert sending.sim.texts() == ["第一条", "第二条"]
    assert sending.sim.requests == 4  # 503, 20000, then both
    assert [await sending.done(p) for p in ("m1", "m2")] == ["sent", "sent"]
    assert sending.dead() == []

    # the same delivery queued again (a job re-run after the gateway took it): nothing sent
    again = Delivery(app="shenban", to_user_id="2088000000000042", conversation_id="c-send",
                     parts=[Part(id="m1", message_id="m1", text="第一条")])
    enqueue(sending.rq, again, sending.adapter.config, sending.adapter.job_settings)
    sending.work()
    assert sending.sim.texts() == ["第一条", "第二条"] and sending.sim.requests == 4

    # long replies go in parts, each recorded on its own
    await sending.push("长" * 150)
    sending.work()
    assert sending.sim.texts()[2:] == ["长" * 100, "长" * 50]
    assert [await sending.done(p) for p in ("m3.1", "m3.2")] == ["sent", "sent"]


async def test_refusals_unknown_outcomes_and_spent_retries_end_in_dead_letters(sending, keys):
    # a definite refusal: not retried
    sending.sim.refuse = True
    await sending.push("用户已取消关注")
    sending.work()
    assert sending.sim.requests == 1 and sending.sim.texts() == []
    [dead] = sending.dead()
    assert dead["message_id"] == "m1" and "USER_NOT_FOLLOW" in dead["reason"]
    assert "用户已取消关注" not in json.dumps(dead, ensure_ascii=False)
    assert "2088000000000042" not in json.dumps(dead)
    sending.sim.refuse = False

    # the gateway takes the message but its answer is lost: never sent again, the next goes
    sending.sim.silent_first = 1
    await sending.push("答复可能已送达", "下一条")
    sending.work()
    assert sending.sim.texts() == ["答复可能已送达", "下一条"]
    assert sending.dead()[-1]["message_id"] == "m2"
    assert "outcome" in sending.dead()[-1]["reason"] or "lost" in sending.dead()[-1]["reason"]
    assert await sending.done("m3") == "sent"

    # an answer "accepted" whose signature does not verify: not trusted, not resent
    sending.sim.alipay_key = keys.app
    await sending.push("签名不符")
    sending.work()
    assert sending.sim.texts().count("签名不符") == 1
    assert "signature" in sending.dead()[-1]["reason"]
    sending.sim.alipay_key = keys.alipay

    # the gateway down for longer than the attempts: given up after max_attempts (3)
    sending.sim.fail_first = 100
    before = sending.sim.requests
    await sending.push("网关不可用")
    sending.work()
    assert sending.sim.requests - before == 3
    assert sending.dead()[-1]["message_id"] == "m5" and "gave up" in sending.dead()[-1]["reason"]
    assert await sending.done("m5") == "dead"
    assert "网关不可用" not in sending.sim.texts()
