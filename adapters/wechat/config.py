"""The WeChat channel's settings (``channels.wechat``): the accounts and how messages are sent.

One Bangban can serve several WeChat accounts (the 一网通办 Official Account, a district's, a
Mini Program's customer service): each gets its own callback URL ``/channels/wechat/<name>``,
its own token and key, and its citizens are ``<name>:<openid>``, since an openid only means
something within one account.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from adapters.base import AdapterConfig

#: an account's name: the URL segment and the first part of its citizens' channel_user
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
#: the platform's rule for the callback token: 3-32 letters or digits
TOKEN_PATTERN = r"^[A-Za-z0-9]{3,32}$"
#: the longest the reply budget may be: WeChat gives up after 5 s, and the network needs some
MAX_BUDGET_S = 4.5


class WeChatAccount(BaseModel):
    """One Official Account or Mini Program, as configured in its 开发设置 / 消息推送 page."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
    #: an Official Account (公众号) may answer in the HTTP response; a Mini Program (小程序)
    #: customer service may not (it only takes ``success``), so its answers all go by the API
    kind: Literal["official_account", "mini_program"] = "official_account"
    app_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    #: AppSecret, for access tokens (kept out of reprs and logs)
    app_secret: SecretStr
    #: the callback Token (令牌) of the 服务器配置, for signatures
    token: Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]
    #: EncodingAESKey (43 characters): set for 安全模式 (and 兼容模式), where every request must be
    #: encrypted; null for 明文模式, where encrypted requests are refused
    encoding_aes_key: SecretStr | None = None
    #: the platform API's base URL; tests and private gateways point it elsewhere
    api_base: str = "https://api.weixin.qq.com"
    #: a request's timestamp may differ from our clock by at most this many seconds; 0 turns the
    #: check off (only for replaying the platform's published samples)
    replay_window_s: int = Field(300, ge=0, le=86_400)

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        raw = v.get_secret_value()
        if not re.fullmatch(r"[A-Za-z0-9]{43}", raw):
            raise ValueError("must be the 43 letters and digits of the EncodingAESKey")
        try:
            if len(base64.b64decode(raw + "=", validate=True)) != 32:
                raise ValueError
        except (binascii.Error, ValueError):
            raise ValueError("is not a valid EncodingAESKey (base64 of 32 bytes)") from None
        return v

    @field_validator("api_base")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @property
    def safe_mode(self) -> bool:
        return self.encoding_aes_key is not None

    @property
    def aes_key(self) -> str | None:
        return self.encoding_aes_key.get_secret_value() if self.encoding_aes_key else None


class WeChatConfig(AdapterConfig):
    accounts: list[WeChatAccount] = Field(default_factory=list, max_length=100)
    #: messages one citizen may send per minute; more are acknowledged and dropped
    rate_limit_per_minute: int = Field(20, ge=1, le=10_000)
    #: how long a request waits for the answer before answering ``success`` and sending the
    #: answer by the customer-service API instead (WeChat's own limit is 5 s)
    reply_budget_s: float = Field(4.0, gt=0, le=MAX_BUDGET_S)
    #: largest request body accepted, in bytes (413 above); WeChat's pushes are a few KiB
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    #: the RQ queue of the send jobs
    queue: str = "high"
    #: seconds before each retry of a failed send; the last one repeats if needed
    retry_intervals: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: [2, 10, 30, 120], min_length=1)
    #: attempts in all, the first one included
    max_attempts: int = Field(5, ge=1, le=20)
    #: timeout of one call to the platform API
    timeout_s: float = Field(5.0, gt=0, le=60)

    @field_validator("accounts")
    @classmethod
    def _unique(cls, accounts: list[WeChatAccount]) -> list[WeChatAccount]:
        seen: set[str] = set()
        for acc in accounts:
            if acc.name in seen:
                raise ValueError(f"account name {acc.name!r} is used twice")
            seen.add(acc.name)
        return accounts

    def account(self, name: str) -> WeChatAccount | None:
        return next((a for a in self.accounts if a.name == name), None)


__all__ = ["WeChatAccount", "WeChatConfig", "MAX_BUDGET_S"]
