"""Settings of the Alipay channel (``channels.alipay``): the apps, limits and delivery.

One deployment can serve several Alipay apps at once (a mini program and a 生活号, or one per
district): each has its own gateway URL ``/channels/alipay/<name>``, its own key pair and its
own Alipay public key. Keys are checked when the configuration is loaded, so a pasted key with
a missing character stops start-up with the field's name instead of failing the first citizen.

Keys may be given as PEM or as the bare base64 the Alipay open platform console shows (the app
private key as PKCS#8 or PKCS#1, the Alipay public key as X.509 SubjectPublicKeyInfo). RSA keys
shorter than 2048 bits are refused: RSA2 with a 1024-bit key is what Alipay stopped accepting.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from adapters.base import AdapterConfig

from .signing import BadKey, load_private_key, load_public_key

#: Alipay's production open-platform gateway (custom.send goes here)
DEFAULT_GATEWAY = "https://openapi.alipay.com/gateway.do"
#: the name in ``/channels/alipay/<name>``
APP_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class AlipayApp(BaseModel):
    """One Alipay app (mini program or 生活号) whose gateway points at us."""

    # a rejected private key must not be echoed into an error message or a log
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    #: our label for the app; its gateway URL is ``/channels/alipay/<name>``
    name: Annotated[str, StringConstraints(pattern=APP_NAME_PATTERN)]
    #: the app's id on the Alipay open platform (the ``app_id`` of every request and notification)
    app_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{8,32}$")]
    #: the Alipay public key shown for this app ("支付宝公钥"): checks every notification
    alipay_public_key: str
    #: the app's own private key: signs custom.send requests and the gateway's answers; its
    #: public half is what verifygw answers with (Alipay checks it against the one uploaded)
    app_private_key: SecretStr
    #: the open-platform gateway custom.send is posted to (a local stand-in in tests)
    gateway: str = DEFAULT_GATEWAY

    @field_validator("alipay_public_key")
    @classmethod
    def _public_key(cls, v: str) -> str:
        try:
            load_public_key(v)
        except BadKey as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("app_private_key")
    @classmethod
    def _private_key(cls, v: SecretStr) -> SecretStr:
        try:
            load_private_key(v.get_secret_value())
        except BadKey as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("gateway")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+[^\s]*$", v):
            raise ValueError("must be an http:// or https:// URL")
        return v


class AlipayConfig(AdapterConfig):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    #: the apps served; none: every notification is refused (404 unknown app)
    apps: list[AlipayApp] = Field(default_factory=list)
    #: messages one citizen may send per minute (all processes together); more get 429
    rate_limit_per_minute: int = Field(20, ge=1, le=600)
    #: largest notification body accepted, in bytes (a text message is well under 8 KiB)
    max_body_bytes: int = Field(64 * 1024, ge=4096, le=1024 * 1024)
    #: a message whose CreateTime is older than this is refused: the core remembers message
    #: ids for 24 h, so a captured notification can never be replayed past de-duplication
    max_message_age_s: int = Field(23 * 3600, ge=60, le=23 * 3600)
    #: how long a notification waits for the core before it is acknowledged anyway (Alipay
    #: retries a notification it got no answer to; the reply goes out by custom.send later)
    answer_within_s: float = Field(4.0, gt=0, le=10)
    #: RQ queue of the custom.send jobs
    queue: str = Field("default", min_length=1, max_length=64)
    #: seconds before each retry of a failed send (the last one repeats); 0 = at once
    retry_intervals: list[int] = Field(default_factory=lambda: [5, 30, 120, 600])
    #: attempts in all, the first one included
    max_attempts: int = Field(5, ge=1, le=20)
    timeout_s: float = Field(10.0, gt=0, le=60)
    #: check the signature on the gateway's answers to custom.send (Alipay signs them)
    verify_responses: bool = True
    #: the longest text one custom.send carries; longer replies go as several messages
    max_send_chars: int = Field(2000, ge=100, le=4000)
    #: the HMAC key of the signed links agents' pictures are served by (``media``), at least
    #: 32 characters. Unset, each app's key is derived from its private key, so pictures work
    #: with no setting. Set or change it to revoke every link already sent without changing the
    #: keys Alipay knows. Every app process and worker must have the same value.
    media_secret: SecretStr | None = None

    @field_validator("retry_intervals")
    @classmethod
    def _intervals(cls, v: list[int]) -> list[int]:
        if not v or any(i < 0 or i > 86400 for i in v):
            raise ValueError("at least one interval, each 0-86400 seconds")
        return v

    @field_validator("media_secret")
    @classmethod
    def _media_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().strip()) < 32:
            raise ValueError("must be at least 32 characters (a random string, e.g. "
                             "`openssl rand -hex 32`)")
        return v

    @field_validator("apps")
    @classmethod
    def _unique(cls, apps: list[AlipayApp]) -> list[AlipayApp]:
        for attr in ("name", "app_id"):
            seen: set[str] = set()
            for app in apps:
                value = getattr(app, attr)
                if value in seen:
                    raise ValueError(f"two apps have the {attr} {value!r}")
                seen.add(value)
        return apps

    def app_named(self, name: str) -> AlipayApp | None:
        return next((a for a in self.apps if a.name == name), None)

    def app_with_id(self, app_id: str) -> AlipayApp | None:
        return next((a for a in self.apps if a.app_id == app_id), None)


__all__ = ["AlipayApp", "AlipayConfig", "DEFAULT_GATEWAY", "APP_NAME_PATTERN"]
