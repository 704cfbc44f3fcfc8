"""What the Alipay tests share: key pairs made here, notifications signed the way Alipay signs
them, the channel's settings, and the local custom.send stand-in.

Two key pairs: "Alipay's" (signs the notifications and the stand-in's answers; its public half
is the app's ``alipay_public_key``) and the app's own (signs custom.send and the gateway's
answers; the stand-in checks custom.send with its public half).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rq import SimpleWorker

from adapters.alipay.gateway import SERVICE_MESSAGE
from adapters.alipay.signing import codec, rsa2_sign, sign_content
from core.config import Settings

from .standin import RunningStandin, Standin

APP_ID = "2021000000000001"
APP_NAME = "shenban"
PATH = f"/channels/alipay/{APP_NAME}"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
#: a 1×1 PNG: an agent's picture
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass(frozen=True)
class Keys:
    alipay: rsa.RSAPrivateKey
    app: rsa.RSAPrivateKey

    @property
    def alipay_public_pem(self) -> str:
        return public_pem(self.alipay.public_key())

    @property
    def app_private_pem(self) -> str:
        return private_pem(self.app)


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(alipay=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                app=rsa.generate_private_key(public_exponent=65537, key_size=2048))


def now_ms() -> int:
    return int(time.time() * 1000)


def message_xml(user: str = "2088102122524333", text: str | None = "你好", *,
                msg_type: str = "text", msg_id: str | None = None, event: str | None = None,
                action: str | None = None, created_ms: int | None = None,
                app_id: str | None = APP_ID) -> str:
    """biz_content of a 生活号 / mini-program gateway message, as Alipay writes it."""
    parts = ["<XML>"]
    if app_id is not None:
        parts.append(f"<AppId><![CDATA[{app_id}]]></AppId>")
    parts.append(f"<FromUserId><![CDATA[{user}]]></FromUserId>")
    parts.append(f"<CreateTime>{created_ms or now_ms()}</CreateTime>")
    parts.append(f"<MsgType><![CDATA[{msg_type}]]></MsgType>")
    if event is not None:
        parts.append(f"<EventType><![CDATA[{event}]]></EventType>")
    if action is not None:
        parts.append(f"<ActionParam><![CDATA[{action}]]></ActionParam>")
    if msg_type == "text" and text is not None:
        parts.append(f"<Text><Content><![CDATA[{text}]]></Content></Text>")
    if msg_type == "image":
        parts.append("<Image><MediaId><![CDATA[A*9xXKTqPZ2ZgAAAAAAAAAAAAAARQnAQ]]></MediaId>"
                     "<Format><![CDATA[jpg]]></Format></Image>")
    if msg_id is not None:
        parts.append(f"<MsgId><![CDATA[{msg_id}]]></MsgId>")
    parts.append("<UserInfo><![CDATA[{\"logon_id\":\"159****1234\"}]]></UserInfo></XML>")
    return "".join(parts)


def signed_params(key: rsa.RSAPrivateKey, biz: str | None, *, service: str = SERVICE_MESSAGE,
                  charset: str = "UTF-8", app_id: str | None = APP_ID, rule: str = "v2",
                  **extra: str) -> dict[str, str]:
    """The parameters of a notification signed with ``key`` under Alipay's rule ``v2`` (only
    sign left out) or ``v1`` (sign and sign_type left out)."""
    params = {"service": service, "charset": charset, "sign_type": "RSA2",
              "notify_time": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
    if app_id is not None:
        params["app_id"] = app_id
    if biz is not None:
        params["biz_content"] = biz
    leave_out = ("sign",) if rule == "v2" else ("sign", "sign_type")
    params["sign"] = rsa2_sign(sign_content(params, leave_out), key, charset)
    return params


def form(params: dict[str, str], charset: str = "UTF-8") -> bytes:
    """The urlencoded body, percent-encoded in ``charset`` as Alipay encodes it."""
    return urlencode(params, encoding=codec(charset)).encode("ascii")


def notification(keys: Keys, biz: str | None, **kw: Any) -> bytes:
    charset = kw.get("charset", "UTF-8")
    return form(signed_params(keys.alipay, biz, **kw), charset)


def app_config(keys: Keys, gateway: str = "http://127.0.0.1:9/gateway.do", *,
               app_id: str = APP_ID, name: str = APP_NAME, **settings: Any) -> dict[str, Any]:
    return {"apps": [{"name": name, "app_id": app_id, "alipay_public_key": keys.alipay_public_pem,
                      "app_private_key": keys.app_private_pem, "gateway": gateway}],
            **settings}


def with_alipay(settings: Settings, config: dict[str, Any]) -> Settings:
    return settings.model_copy(update={"channels": {**settings.channels, "alipay": config}})


def run_worker(queue, connection) -> None:  # noqa: ANN001
    """Run the queued jobs (retries included) in this thread, as a worker would."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        SimpleWorker([queue], connection=connection).work(burst=True)
    finally:  # RQ installs its own handlers; give pytest its Ctrl-C back
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.fixture
def standin(keys: Keys) -> Iterator[RunningStandin]:
    running = RunningStandin(Standin(app_keys={APP_ID: keys.app.public_key()},
                                     alipay_key=keys.alipay))
    yield running
    running.stop()
