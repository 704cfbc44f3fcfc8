"""A local stand-in for Alipay's open-platform gateway, as far as custom.send goes.

It takes ``POST /gateway.do`` the way Alipay's SDKs send it (common parameters in the query,
``biz_content`` in the form body), checks the RSA2 signature over all of them (sorted, only
``sign`` left out) with the app's public key, records each accepted message (a text, or an
image-text message: an agent's picture) and answers as Alipay does: JSON whose
``alipay_open_public_message_custom_send_response`` member is signed with "Alipay's" private
key (the tests' own). It can be told to fail the first N requests, or the requests with given
numbers (HTTP 503), to answer code 20000 (busy) or a definite refusal, or to take a message and
never answer (the sender's timeout then makes the outcome unknown).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.alipay.sender import METHOD
from adapters.alipay.signing import rsa2_sign, rsa2_verify, sign_content
from tests.support import ThreadedServer


@dataclass
class Standin:
    #: app_id → the app's public key (what the real gateway has from the developer console)
    app_keys: dict[str, rsa.RSAPublicKey]
    #: "Alipay's" private key: signs the answers
    alipay_key: rsa.RSAPrivateKey
    fail_first: int = 0
    busy_first: int = 0
    refuse: bool = False
    #: take the message, then never answer (for this many requests)
    silent_first: int = 0
    requests: int = 0
    bad_signatures: int = 0
    #: the requests with these numbers (counted from 1, every request) get HTTP 503
    fail_at: set[int] = field(default_factory=set)
    #: every accepted message: {"app_id", "to_user_id", "msg_type", "chat", and "text" (a
    #: text) or "article" (the one article of an image-text message)}
    messages: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def texts(self, to_user_id: str | None = None) -> list[str]:
        return [m["text"] for m in self.messages
                if m["msg_type"] == "text" and to_user_id in (None, m["to_user_id"])]

    def articles(self, to_user_id: str | None = None) -> list[dict[str, str]]:
        return [m["article"] for m in self.messages
                if m["msg_type"] == "image-text" and to_user_id in (None, m["to_user_id"])]

    def received(self, to_user_id: str | None = None) -> list[str | dict[str, str]]:
        """What the citizen saw, in order: texts as strings, pictures as their article."""
        return [m.get("text") or m["article"] for m in self.messages
                if to_user_id in (None, m["to_user_id"])]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/gateway.do", self.gateway)
        return app

    def answer(self, result: dict[str, Any]) -> web.Response:
        member = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        sign = rsa2_sign(member, self.alipay_key, "utf-8")
        name = METHOD.replace(".", "_") + "_response"
        return web.Response(text=f'{{"{name}":{member},"sign":"{sign}"}}',
                            content_type="application/json", charset="utf-8")

    async def gateway(self, request: web.Request) -> web.Response:
        self.requests += 1
        form = await request.post()
        params = {**request.query, **{k: str(v) for k, v in form.items()}}
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503, text="busy")
        if self.requests in self.fail_at:
            return web.Response(status=503, text="busy")
        key = self.app_keys.get(params.get("app_id", ""))
        problems = []
        if key is None or not rsa2_verify(sign_content(params), params.get("sign", ""), key,
                                          params.get("charset")):
            self.bad_signatures += 1
            return self.answer({"code": "40002", "msg": "Invalid Arguments",
                                "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"})
        if params.get("method") != METHOD:
            problems.append(f"method {params.get('method')}")
        if params.get("sign_type") != "RSA2" or params.get("version") != "1.0":
            problems.append("sign_type/version")
        if not re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", params.get("timestamp", "")):
            problems.append("timestamp")
        biz = json.loads(params.get("biz_content", "{}"))
        message = self.message(biz, problems)
        if problems:
            self.errors.extend(problems)
            return self.answer({"code": "40002", "msg": "Invalid Arguments",
                                "sub_code": "isv.invalid-parameter",
                                "sub_msg": "; ".join(problems)})
        if self.busy_first > 0:
            self.busy_first -= 1
            return self.answer({"code": "20000", "msg": "Service Currently Unavailable",
                                "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"})
        if self.refuse:
            return self.answer({"code": "40004", "msg": "Business Failed",
                                "sub_code": "USER_NOT_FOLLOW", "sub_msg": "用户未关注生活号"})
        self.messages.append({"app_id": params["app_id"], "to_user_id": biz["to_user_id"],
                              "msg_type": biz["msg_type"], "chat": biz.get("chat"), **message})
        if self.silent_first > 0:
            self.silent_first -= 1
            await asyncio.sleep(4)  # the sender (timeout_s well under 4 s) gives up first
        return self.answer({"code": "10000", "msg": "Success"})


    @staticmethod
    def message(biz: dict[str, Any], problems: list[str]) -> dict[str, Any]:
        """The text or the article of a custom.send, as Alipay's API describes them."""
        if biz.get("msg_type") == "text":
            if not biz.get("text", {}).get("content"):
                problems.append("biz_content: text without content")
                return {}
            return {"text": biz["text"]["content"]}
        if biz.get("msg_type") == "image-text":
            articles = biz.get("articles")
            if not isinstance(articles, list) or len(articles) != 1:
                problems.append("biz_content: articles must hold one article")
                return {}
            article = articles[0]
            if set(article) != {"title", "desc", "image_url", "url", "action_name"} \
                    or not all(isinstance(v, str) and v for v in article.values()):
                problems.append("biz_content: article fields")
            elif not all(re.match(r"^https?://", article[k]) for k in ("image_url", "url")):
                problems.append("biz_content: image_url and url must be http(s) URLs")
            return {"article": article}
        problems.append(f"biz_content: msg_type {biz.get('msg_type')}")
        return {}


class RunningStandin(ThreadedServer):
    """The stand-in serving on 127.0.0.1 from a thread (RQ workers block the test's loop)."""

    def __init__(self, standin: Standin) -> None:
        self.standin = standin
        super().__init__(standin.app(), "the Alipay stand-in")
        self.gateway = f"{self.url}/gateway.do"
