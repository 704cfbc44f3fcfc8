"""A real app with only the WeChat channel, a stand-in platform API, and a citizen who signs (and
in safe mode encrypts) what they send the way the platform does.

Accounts:

- ``mp`` / ``mp-safe``: the Mini Program sample's credentials, plaintext and safe mode, with the
  replay window off so the published requests (from 2024) are accepted as published;
- ``oa``: the Official Account sample's credentials (safe mode), replay window off, likewise;
- ``oa-live``: the same credentials with a 300 s replay window, for freshly signed requests;
- ``oa-plain``: an Official Account in plaintext mode (XML), for the XML refusals.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.wechat import WeChatAdapter
from adapters.wechat.crypto import AccountCrypto, signature
from adapters.wechat.inbound import parse_xml
from core import jobs
from core.app import create_app
from core.appkeys import HUB
from core.config import Settings
from core.kb.seed import load_seed_if_empty
from core.kb.store import KbStore
from tests.support import always_open_units
from tests.core.test_jobs import run_burst_worker

from . import vectors as v
from .platform import Platform, RunningPlatform

SECRET = "app-secret-for-tests"
PLAIN_TOKEN = "plaintoken42"
OA_ORIGINAL_ID = "gh_10f6c3c3ac5a"


@pytest.fixture
def platform():
    running = RunningPlatform(Platform({v.OA_APPID: SECRET, v.MP_APPID: SECRET}))
    yield running
    running.stop()


@pytest.fixture
def units_file(tmp_path) -> Path:
    """config/units.yaml with every unit open around the clock, so human help is always on."""
    return always_open_units(tmp_path)


def accounts(api_base: str) -> list[dict[str, Any]]:
    common = {"app_secret": SECRET, "api_base": api_base}
    return [
        {"name": "mp", "kind": "mini_program", "app_id": v.MP_APPID, "token": v.MP_TOKEN,
         "replay_window_s": 0, **common},
        {"name": "mp-safe", "kind": "mini_program", "app_id": v.MP_APPID, "token": v.MP_TOKEN,
         "encoding_aes_key": v.MP_AES_KEY, "replay_window_s": 0, **common},
        {"name": "oa", "app_id": v.OA_APPID, "token": v.OA_TOKEN,
         "encoding_aes_key": v.OA_AES_KEY, "replay_window_s": 0, **common},
        {"name": "oa-live", "app_id": v.OA_APPID, "token": v.OA_TOKEN,
         "encoding_aes_key": v.OA_AES_KEY, **common},
        {"name": "oa-plain", "app_id": v.OA_APPID, "token": PLAIN_TOKEN, **common},
    ]


def with_wechat(settings: Settings, api_base: str, units_file: Path, queue: str,
                **extra: Any) -> Settings:
    channel = {"accounts": accounts(api_base), "queue": queue, "retry_intervals": [0],
               "max_attempts": 3, "timeout_s": 2, **extra}
    handoff = settings.handoff.model_copy(update={"units_file": units_file,
                                                  "sweep_interval_s": 0.2})
    return settings.model_copy(update={"channels": {**settings.channels, "wechat": channel},
                                       "handoff": handoff})


@pytest.fixture
def make_client(engine, redis, settings, platform, units_file, queue_name, aiohttp_client):
    """``await make_client(seed=…, **channel settings)`` → (client, settings).

    ``aiohttp_client`` comes last so it is torn down first: the app (its sweep, its late
    answers) stops before the database and Redis are emptied under it.
    """

    async def make(*, seed: bool = False, **extra: Any):
        cfg = with_wechat(settings, platform.url, units_file, queue_name, **extra)
        if seed:
            await load_seed_if_empty(KbStore(engine), cfg.kb_seed_dir)
        app = create_app(cfg, adapters={"wechat": WeChatAdapter})
        client = await aiohttp_client(app)
        app[HUB].adapters["wechat"].job_settings = cfg.model_dump(mode="json")
        return client, cfg

    return make


def work(queue_name: str, rq_redis) -> None:  # noqa: ANN001
    """Run the queued send jobs to completion (on this thread: RQ installs signal handlers)."""
    run_burst_worker(jobs.queue(queue_name, rq_redis), rq_redis)


async def eventually(predicate, timeout: float = 5.0, what: str = "condition"):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- an agent's files, by their real magic bytes (what core.attachments.sniff reads) ------------

#: AMR-NB: the "#!AMR\n" header and one second of 12.2 kbit/s frames (header byte 0x3c, 32 bytes)
AMR = b"#!AMR\n" + (b"\x3c" + bytes(31)) * 50
#: MP3: an ID3v2.4 tag header, then MPEG-1 layer III frames (128 kbit/s, 44.1 kHz: 417 bytes)
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + (b"\xff\xfb\x90\x64" + bytes(413)) * 3
#: WebM (what browsers record): an EBML header whose DocType is "webm"
WEBM = (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81"
        b"\x08\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02") + bytes(200)
#: Ogg Opus: the first page, carrying the OpusHead packet
OGG = b"OggS\x00\x02" + bytes(22) + b"\x01\x13OpusHead\x01\x01" + bytes(200)
#: what the citizen reads instead of a voice message WeChat cannot play
VOICE_NOTE = "[语音]（本渠道暂不能显示图片或语音，如需查看请告诉工作人员）"


# -- a citizen on an account ------------------------------------------------------------------


def query(token: str, *, timestamp: str | None = None, nonce: str | None = None,
          encrypt: str | None = None, openid: str | None = None) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    nonce = nonce or str(secrets.randbelow(10**9))
    q = {"timestamp": ts, "nonce": nonce, "signature": signature(token, ts, nonce)}
    if openid:
        q["openid"] = openid
    if encrypt is not None:
        q.update(encrypt_type="aes", msg_signature=signature(token, ts, nonce, encrypt))
    return q


def text_xml(openid: str, text: str, msg_id: int | None = None, *, to: str = OA_ORIGINAL_ID,
             created: int | None = None) -> str:
    msg_id = msg_id or secrets.randbelow(10**18)
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created or int(time.time())}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
            f"<MsgId>{msg_id}</MsgId></xml>")


class Citizen:
    """Someone writing to the ``oa-live`` Official Account (safe mode, XML) or another account."""

    def __init__(self, client, account: str = "oa-live", openid: str | None = None, *,
                 token: str = v.OA_TOKEN, app_id: str = v.OA_APPID,
                 aes_key: str | None = v.OA_AES_KEY) -> None:
        self.client = client
        self.account = account
        self.openid = openid or f"o{secrets.token_hex(13)}"
        self.crypto = AccountCrypto(token, app_id, aes_key)
        self.token = token

    @property
    def path(self) -> str:
        return f"/channels/wechat/{self.account}"

    async def post_xml(self, plain: str, **q: Any):
        if self.crypto.key is None:
            return await self.client.post(self.path, data=plain.encode(),
                                          params=query(self.token, **q))
        encrypt = self.crypto.encrypt(plain)
        body = (f"<xml><ToUserName><![CDATA[{OA_ORIGINAL_ID}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
        return await self.client.post(self.path, data=body.encode(),
                                      params=query(self.token, encrypt=encrypt, **q))

    async def say(self, text: str, msg_id: int | None = None) -> str | None:
        """The passive reply's text, or None when the platform was told only ``success``."""
        resp = await self.post_xml(text_xml(self.openid, text, msg_id))
        body = await resp.text()
        assert resp.status == 200, body
        return self.read_reply(body)

    def read_reply(self, body: str) -> str | None:
        if body == "success":
            return None
        outer = parse_xml(body.encode())
        if self.crypto.key is not None:
            self.crypto.check_msg_signature(outer["MsgSignature"], outer["TimeStamp"],
                                            outer["Nonce"], outer["Encrypt"])
            outer = parse_xml(self.crypto.decrypt(outer["Encrypt"]).encode())
        assert outer["ToUserName"] == self.openid and outer["MsgType"] == "text", outer
        assert outer["FromUserName"] == OA_ORIGINAL_ID
        return outer["Content"]
