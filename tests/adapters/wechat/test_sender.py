"""The send job on a real RQ worker and Redis, against the stand-in platform: one shared token,
retries that never resend what was accepted, no resend of an unanswered send, dead letters and
the agent's notices. (Synchronous tests: the worker runs its jobs on this thread.)"""

from __future__ import annotations

import json
import secrets
import time

import pytest
from rq.job import Job, JobStatus

from adapters.wechat import sender
from adapters.wechat.config import WeChatConfig

from . import vectors as v
from .conftest import AMR, MP3, VOICE_NOTE, with_wechat, work

CONTEXT = {"conversation": "c1", "unit": "police", "handoff": "h1", "messages": ["m1"]}


@pytest.fixture
def cfg(settings, platform, units_file, queue_name):
    """Settings on a Redis prefix of this test's own (tokens and dead letters start empty)."""
    s = with_wechat(settings, platform.url, units_file, queue_name, timeout_s=1)
    return s.model_copy(update={"redis": s.redis.model_copy(update={
        "prefix": f"wxtest{secrets.token_hex(3)}:"})})


def send(cfg, rq_redis, texts: list[str], openid: str = "oCitizen", context=CONTEXT,
         account: str = "oa-live") -> Job:
    config = WeChatConfig.model_validate(cfg.channels["wechat"])
    return sender.enqueue(rq_redis, config, account, openid, texts, context,
                          cfg.model_dump(mode="json"))


def workspace_events(rq_redis, cfg):
    pubsub = rq_redis.pubsub()
    pubsub.subscribe(f"{cfg.redis.prefix}workspace")
    pubsub.get_message(timeout=1)  # the subscription confirmation

    def read() -> list[dict]:
        found = []
        while (m := pubsub.get_message(timeout=0.5)) is not None:
            if m["type"] == "message":
                found.append(json.loads(m["data"]))
        return found

    return read


def test_texts_go_out_in_order_with_one_shared_token(cfg, rq_redis, queue_name, platform):
    a = send(cfg, rq_redis, ["一", "二"])
    b = send(cfg, rq_redis, ["三"])
    work(queue_name, rq_redis)
    assert platform.platform.to("oCitizen") == ["一", "二", "三"]
    assert platform.platform.token_fetches == 1
    assert rq_redis.get(f"{cfg.redis.prefix}wechat:token:{v.OA_APPID}")
    for job in (a, b):
        job = Job.fetch(job.id, connection=rq_redis)
        assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == {"sent": 1, "skipped": 0, "uncertain": 0}


def test_failures_are_retried_without_resending_what_was_accepted(cfg, rq_redis, queue_name,
                                                                  platform):
    # the first text is accepted, the second fails twice (busy, then an HTTP error)
    platform.platform.failures = ["ok", -1, "http500"]
    job = send(cfg, rq_redis, ["第一条", "第二条"])
    work(queue_name, rq_redis)
    assert platform.platform.to("oCitizen") == ["第一条", "第二条"]
    job = Job.fetch(job.id, connection=rq_redis)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == {"sent": 1, "skipped": 1, "uncertain": 0}


def test_a_refused_token_is_renewed(cfg, rq_redis, queue_name, platform):
    send(cfg, rq_redis, ["早上好"])
    work(queue_name, rq_redis)
    platform.platform.revoke(v.OA_APPID)  # e.g. another system force-refreshed it
    send(cfg, rq_redis, ["下午好"])
    work(queue_name, rq_redis)
    assert platform.platform.to("oCitizen") == ["早上好", "下午好"]
    assert platform.platform.token_fetches == 2


def test_a_send_left_unanswered_is_not_sent_again(cfg, rq_redis, queue_name, platform):
    platform.platform.failures = ["hang"]
    platform.platform.hang_s = 2  # longer than timeout_s: the platform accepts, we never hear
    job = send(cfg, rq_redis, ["可能已送达", "之后这条"])
    work(queue_name, rq_redis)
    deadline = time.monotonic() + 5
    while len(platform.platform.sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    # each arrived once: the unanswered one was not retried (it lands last, when the stand-in
    # finally answers)
    assert platform.platform.to("oCitizen") == ["之后这条", "可能已送达"]
    assert Job.fetch(job.id, connection=rq_redis).return_value() == {
        "sent": 1, "skipped": 0, "uncertain": 1}


def test_giving_up_leaves_a_dead_letter_and_tells_the_agent(cfg, rq_redis, queue_name,
                                                           platform):
    events = workspace_events(rq_redis, cfg)
    platform.platform.failures = [-1, -1, -1]  # max_attempts is 3 in these settings
    job = send(cfg, rq_redis, ["发不出去"])
    work(queue_name, rq_redis)
    assert platform.platform.sent == []
    assert Job.fetch(job.id, connection=rq_redis).get_status() == JobStatus.FAILED
    [dead] = [json.loads(x) for x in rq_redis.lrange(f"{cfg.redis.prefix}wechat:dead", 0, -1)]
    assert dead["conversation"] == "c1" and "errcode -1" in dead["error"]
    [failed] = [e for e in events() if e["type"] == "channel_send_failed"]
    assert (failed["unit"], failed["conversation"], failed["channel"]) == ("police", "c1",
                                                                          "wechat")


def test_a_spent_quota_is_reported_and_ends_the_job(cfg, rq_redis, queue_name, platform):
    events = workspace_events(rq_redis, cfg)
    platform.platform.failures = ["ok", 45047]
    job = send(cfg, rq_redis, ["第五条", "第六条", "第七条"])
    work(queue_name, rq_redis)
    assert platform.platform.to("oCitizen") == ["第五条"]
    assert Job.fetch(job.id, connection=rq_redis).return_value()["refused"] == 45047
    [closed] = [e for e in events() if e["type"] == "channel_window_closed"]
    assert closed["reason"] == "quota" and closed["unit"] == "police"
    # an unknown account in the worker's configuration: logged, nothing sent, no retry
    job = send(cfg, rq_redis, ["x"], account="gone")
    work(queue_name, rq_redis)
    assert Job.fetch(job.id, connection=rq_redis).return_value()["error"] == "unknown account"


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.fixture
def store(engine, cfg):
    from core.attachments import AttachmentStore

    return AttachmentStore(engine, cfg.handoff.max_image_bytes, cfg.handoff.max_voice_bytes)


@pytest.mark.parametrize(("kind", "data", "mime", "name"), [
    ("image", PNG, "image/png", "材料清单.png"), ("voice", MP3, "audio/mpeg", "办理须知.mp3")])
async def test_a_picture_or_voice_is_uploaded_once_and_sent_once_through_retries(
        store, cfg, rq_redis, queue_name, platform, kind, data, mime, name):
    """An agent's picture goes as an image message, an MP3 as a voice message (each uploaded as
    media of that type), between the texts around it; its send fails once (busy), and the retry
    sends the same upload."""
    meta = await store.save("c1", "agent", "u1", data, name=name)
    platform.platform.failures = ["ok", -1]
    job = send(cfg, rq_redis, ["请看或听", {kind: meta.id}, "看完请回复"])
    work(queue_name, rq_redis)
    texts = platform.platform.to("oCitizen")
    assert texts[0] == "请看或听" and texts[2] == "看完请回复" and texts[1].startswith(f"[{kind} ")
    media = platform.platform.uploaded(texts[1])
    assert (media.kind, media.data, media.mime) == (kind, data, mime)
    assert platform.platform.uploads == 1  # the retry reused the media id
    assert Job.fetch(job.id, connection=rq_redis).return_value() == {
        "sent": 2, "skipped": 1, "uncertain": 0}


@pytest.mark.parametrize("kind", ["image", "voice"])
async def test_a_picture_or_voice_that_is_gone_is_skipped_and_the_rest_sent(
        engine, cfg, rq_redis, queue_name, platform, kind):
    job = send(cfg, rq_redis, [{kind: "a0000000000000000000000000000000"}, "文字照常"])
    work(queue_name, rq_redis)
    assert platform.platform.to("oCitizen") == ["文字照常"]
    assert platform.platform.uploads == 0
    assert Job.fetch(job.id, connection=rq_redis).return_value() == {
        "sent": 1, "skipped": 1, "uncertain": 0}


async def test_a_picture_and_a_voice_in_one_batch_each_go_once(store, cfg, rq_redis,
                                                               queue_name, platform):
    """Each part keeps its own media id through a retry: the picture is not sent again, the
    voice is not uploaded again, and neither goes as the other."""
    picture = await store.save("c1", "agent", "u1", PNG, name="窗口.png")
    voice = await store.save("c1", "agent", "u1", AMR, name="说明.amr")
    platform.platform.failures = ["ok", "ok", "http500"]
    send(cfg, rq_redis, ["请看图并听语音", {"image": picture.id}, {"voice": voice.id}])
    work(queue_name, rq_redis)
    text, image, sound = platform.platform.to("oCitizen")
    assert text == "请看图并听语音"
    assert platform.platform.uploaded(image).data == PNG
    voice_media = platform.platform.uploaded(sound)
    assert (voice_media.kind, voice_media.data) == ("voice", AMR)
    assert platform.platform.uploads == 2


async def test_a_voice_the_platform_refuses_is_announced_and_the_rest_sent(store, cfg, rq_redis,
                                                                           queue_name,
                                                                           platform):
    """A voice over 60 seconds (which only the platform measures: 45007) is not retried in
    vain: the citizen is told there is a voice message, and what follows still goes."""
    meta = await store.save("c1", "agent", "u1", AMR, name="很长的语音.amr")
    platform.platform.failures = [45007]
    job = send(cfg, rq_redis, [{"voice": meta.id}, "后面的文字"])
    work(queue_name, rq_redis)
    assert platform.platform.to("oCitizen") == [VOICE_NOTE, "后面的文字"]
    assert Job.fetch(job.id, connection=rq_redis).return_value() == {
        "sent": 2, "skipped": 0, "uncertain": 0}
