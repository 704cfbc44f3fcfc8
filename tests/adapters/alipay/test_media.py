"""An agent's picture reaches an Alipay citizen as a picture: an image-text message (custom.send,
RSA2-signed and checked by the stand-in) whose link is a signed, expiring URL of this server.
The link serves the picture. An altered, forged or expired link gets 403, and anything but an
agent's picture of that app's citizens gets 404. A picture deleted meanwhile is skipped and the
rest still goes, and a retried job never sends a picture twice."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import ValidationError
from sqlalchemy import delete

from adapters.alipay import AlipayAdapter
from adapters.alipay.adapter import UNSHOWN
from adapters.alipay.config import AlipayConfig
from adapters.alipay.media import PREFIX, URL_TTL_S, link_key, media_path, signature
from core import jobs
from core.app import create_app
from core.appkeys import HUB
from core.attachments import id_from_url
from core.db.schema import attachments
from core.dialog.models import Attachment, Outbound

from .conftest import APP_ID, APP_NAME, PNG, app_config, run_worker, with_alipay

CITIZEN = "2088000000000042"
USER = f"{APP_ID}:{CITIZEN}"
OTHER_APP_ID = "2021000000000002"
AMR = b"#!AMR\n" + bytes(64)
GONE = "a" + "0" * 31


def id_of(attachment: Attachment) -> str:
    return id_from_url(attachment.url)


@pytest.fixture
async def media(aiohttp_client, settings, engine, redis, rq_redis, queue_name, keys, standin):
    config = app_config(keys, standin.gateway, queue=queue_name, retry_intervals=[0],
                        max_attempts=3, timeout_s=1.5)
    config["apps"].append({**config["apps"][0], "name": "other", "app_id": OTHER_APP_ID})
    cfg = with_alipay(settings, config)
    cfg = cfg.model_copy(update={"handoff": cfg.handoff.model_copy(update={"enabled": False})})
    client = await aiohttp_client(create_app(cfg, adapters={"alipay": AlipayAdapter}))
    hub = client.app[HUB]
    adapter = hub.adapters["alipay"]
    # the workers make the links from server.public_url: here, this very server
    base = str(client.make_url("")).rstrip("/")
    adapter.job_settings = cfg.model_copy(update={"server": cfg.server.model_copy(
        update={"public_url": base})}).model_dump(mode="json")
    queue = jobs.queue(queue_name, rq_redis)

    class Media:
        n = 0

        async def conversation(self, channel: str = "alipay", user: str = USER) -> str:
            return (await hub.conversations.current(channel, user)).id

        async def upload(self, conversation_id: str, uploader: str = "agent",
                         data: bytes = PNG) -> Attachment:
            meta = await hub.attachments.save(conversation_id, uploader, "u-zhang", data,
                                              name="材料清单.png")
            return meta.to_attachment()

        async def agent_says(self, text: str, *pictures: Attachment,
                             name: str | None = "张警官") -> Outbound:
            self.n += 1
            out = Outbound(conversation_id=await self.conversation(),
                           message_id=f"m{self.n}", seq=self.n, sender="agent",
                           action="agent", text=text, sender_name=name,
                           attachments=list(pictures))
            await adapter.push(USER, [out])
            return out

        def work(self) -> None:
            run_worker(queue, rq_redis)

        def path(self, attachment_id: str, app: str = APP_NAME, **kw) -> str:
            return media_path(adapter.config, adapter.config.app_named(app), attachment_id,
                              **kw)

        async def fetch(self, url: str):
            resp = await client.get(url.removeprefix(base))
            return resp.status, await resp.read(), resp

    m = Media()
    m.hub, m.adapter, m.sim, m.base, m.engine, m.rq = (hub, adapter, standin.standin, base,
                                                      engine, rq_redis)
    return m


async def test_an_agents_picture_arrives_as_a_picture_whose_link_serves_it(media):
    picture = await media.upload(await media.conversation())
    await media.agent_says("请看材料清单", picture)
    await media.agent_says("", picture, name=None)  # a picture alone, from an unnamed agent
    await media.agent_says("看完请回复")
    media.work()

    first, article, alone, last = media.sim.received(CITIZEN)
    # the text goes first, without the old "cannot show" note, then the picture, in order
    assert first == "张警官：请看材料清单" and last == "张警官：看完请回复"
    assert "[图片]" not in first
    assert (article["title"], article["desc"], article["action_name"]) == (
        "图片", "张警官发来的图片", "查看图片")
    assert alone["desc"] == "工作人员发来的图片"
    assert article["image_url"] == article["url"]
    assert article["url"].startswith(f"{media.base}{PREFIX}/{APP_NAME}/{id_of(picture)}?exp=")
    # every request was signed by the app and taken as Alipay takes it
    assert media.sim.bad_signatures == 0 and media.sim.errors == []
    assert {m["chat"] for m in media.sim.messages} == {"1"}

    # the link, fetched as Alipay's client fetches it, is the picture, served safely
    status, body, resp = await media.fetch(article["url"])
    assert status == 200 and body == PNG
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"

    # a voice message still says it cannot be played here, and sends no picture
    voice = await media.upload(await media.conversation(), data=AMR)
    await media.agent_says("请听语音", voice)
    media.work()
    assert media.sim.received(CITIZEN)[4:] == [f"张警官：请听语音\n[语音]{UNSHOWN}"]
    assert len(media.sim.articles()) == 2


async def test_an_altered_forged_or_expired_link_is_refused_with_403(media, keys):
    conv = await media.conversation()
    aid = id_of(await media.upload(conv))
    other = id_of(await media.upload(conv))
    good = media.path(aid)
    status, body, _ = await media.fetch(good)
    assert status == 200 and body == PNG

    async def refused(path: str) -> str:
        status, body, _ = await media.fetch(path)
        assert status == 403, (path, status)
        answer = json.loads(body)
        assert answer["message"]
        return answer["error"]

    sig = good.rsplit("sig=", 1)[1]
    exp = int(good.split("exp=")[1].split("&")[0])
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert await refused(good.replace(sig, flipped)) == "bad_signature"
    assert await refused(good.replace(f"exp={exp}", f"exp={exp + 60}")) == "bad_signature"
    assert await refused(good.replace(aid, other)) == "bad_signature"  # another picture
    assert await refused(good.replace(f"/{APP_NAME}/", "/other/")) == "bad_signature"
    assert await refused(good.split("?")[0]) == "unsigned_link"
    assert await refused(good.replace(f"sig={sig}", "sig=xyz")) == "bad_link"
    forged = signature(b"not the server's key", APP_NAME, aid, exp)
    assert await refused(good.replace(sig, forged)) == "bad_signature"
    # signed by this server but a week and a minute old
    expired = media.path(aid, now=time.time() - URL_TTL_S - 60)
    assert await refused(expired) == "expired_link"
    assert "expired" in json.loads((await media.fetch(expired))[1])["message"]
    # a valid link to a picture that does not exist is an unknown id
    status, _, _ = await media.fetch(media.path(GONE))
    assert status == 404


async def test_only_an_agents_picture_of_that_apps_citizens_is_served(media):
    alipay = await media.conversation()
    citizens = id_of(await media.upload(alipay, uploader="citizen"))
    voice = id_of(await media.upload(alipay, data=AMR))
    wechat = id_of(await media.upload(await media.conversation("wechat", "oa:oCitizen")))
    other_app = id_of(await media.upload(await media.conversation(
        user=f"{OTHER_APP_ID}:{CITIZEN}")))
    mine = id_of(await media.upload(alipay))
    # each link correctly signed, so only what the attachment is decides
    for aid in (citizens, voice, wechat, other_app):
        status, body, _ = await media.fetch(media.path(aid))
        assert status == 404 and PNG not in body, aid
    assert (await media.fetch(media.path(mine)))[0] == 200
    # a link of one app does not serve another app's citizens' picture
    assert (await media.fetch(media.path(other_app, app="other")))[0] == 200
    assert (await media.fetch(media.path(mine, app="other")))[0] == 404


async def test_a_picture_deleted_meanwhile_is_skipped_and_the_text_after_it_goes(media):
    picture = await media.upload(await media.conversation())
    await media.agent_says("", picture)
    await media.agent_says("", Attachment(kind="image", url=f"/attachments/{GONE}",
                                          mime="image/png", size=10))
    await media.agent_says("图片已撤回，请按文字办理")
    async with media.engine.begin() as conn:  # the agent's picture is removed before the send
        await conn.execute(delete(attachments).where(attachments.c.id == id_of(picture)))
    media.work()
    assert media.sim.received(CITIZEN) == ["张警官：图片已撤回，请按文字办理"]
    prefix = media.hub.settings.redis.prefix
    for part in ("m1.pic1", "m2.pic1"):
        done = json.loads(media.rq.get(f"{prefix}alipay:done:{part}"))
        assert done["outcome"] == "gone"


async def test_a_retried_job_does_not_send_the_picture_twice(media):
    picture = await media.upload(await media.conversation())
    # one batch: text, picture, text; the gateway is busy for the last one, once
    media.sim.fail_at = {3}
    conv = await media.conversation()
    outs = [Outbound(conversation_id=conv, message_id=f"r{i}", seq=i, sender="agent",
                     action="agent", text=text, sender_name="张警官",
                     attachments=[picture] if i == 2 else [])
            for i, text in ((1, "请看"), (2, ""), (3, "看完请回复"))]
    await media.adapter.push(USER, outs)
    media.work()
    assert media.sim.requests == 4  # text, picture, 503, then on the retry only the last text
    received = media.sim.received(CITIZEN)
    assert received[0] == "张警官：请看" and received[2] == "张警官：看完请回复"
    assert len(media.sim.articles()) == 1

    # the picture's answer is lost (the gateway took it, then said nothing): never resent
    media.sim.silent_first = 1
    await media.agent_says("", picture)
    await media.agent_says("这条照常送达")
    media.work()
    assert len(media.sim.articles()) == 2
    assert media.sim.received(CITIZEN)[-1] == "张警官：这条照常送达"
    prefix = media.hub.settings.redis.prefix
    dead = [json.loads(x) for x in media.rq.lrange(f"{prefix}alipay:dead", 0, -1)]
    assert [d["part"] for d in dead] == ["m1.pic1"]


def test_a_short_media_secret_is_refused_naming_the_field(keys):
    config = app_config(keys)
    with pytest.raises(ValidationError) as err:
        AlipayConfig.model_validate({**config, "media_secret": "too-short"})
    assert err.value.errors()[0]["loc"] == ("media_secret",)
    assert "too-short" not in str(err.value)
    # a secret replaces the key derived from the app's private key: old links stop working
    derived = AlipayConfig.model_validate(config)
    secret = AlipayConfig.model_validate({**config, "media_secret": "s" * 40})
    app = derived.apps[0]
    assert link_key(derived, app) != link_key(secret, app) == b"s" * 40
    assert link_key(derived, app) == link_key(AlipayConfig.model_validate(config), app)
