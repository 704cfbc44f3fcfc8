"""Reading what Alipay posts to an app's gateway URL, refusing anything doubtful with a reason.

A notification is ``application/x-www-form-urlencoded``: ``service`` (what it is), ``charset``
(how the body is encoded: UTF-8 or GBK), ``sign_type``, ``sign``, ``biz_content`` (XML for
生活号 / mini-program messages) and, on newer notifications, ``app_id`` and ``notify_*``.

Order of the checks, each a :class:`GatewayError` (4xx with a code and a reason):

1. the body is no larger than the limit (413), read in chunks so a liar's Content-Length
   cannot make us buffer more;
2. the form parses in its declared charset, strictly: unknown charset, bytes that are not
   that charset, a parameter given twice, control characters — 400;
3. (the caller checks the RSA2 signature here, on these decoded parameters — before any XML)
4. ``biz_content`` parses as XML with no DOCTYPE and no entities (400), into
   :class:`GatewayMessage`: the sender's id, the kind, the text, the time, the message id.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qsl
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from aiohttp import web
from defusedxml import DefusedXmlException
from pydantic import BaseModel, ConfigDict, ValidationError

from core.bodies import read_limited
from core.dialog.models import MAX_TEXT
from core.errors import BangbanError

from .signing import codec

#: services of the gateway (the ``service`` parameter)
SERVICE_CHECK = "alipay.service.check"
SERVICE_MESSAGE = "alipay.mobile.public.message.notify"
#: an Alipay user id (2088…) or a per-app open id
USER_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: message ids and event names: printable ASCII, no spaces
TOKEN_PATTERN = re.compile(r"^[\x21-\x7e]{1,128}$")
#: control characters (but tab, LF, CR) are refused anywhere in a notification
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_PARAMS = 60


class GatewayError(BangbanError):
    """A refused notification: an HTTP status, a machine-readable code and a reason."""

    code = "refused"

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    def response(self) -> web.Response:
        resp = web.json_response({"error": self.code, "message": self.message},
                                 status=self.status, headers=self.headers)
        if self.status == 413:
            resp.force_close()  # the rest of the body was not read
        return resp


def malformed(code: str, message: str) -> GatewayError:
    return GatewayError(400, code, message)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    too_large = GatewayError(413, "body_too_large",
                             f"the notification exceeds the limit of {limit} bytes")
    body = await read_limited(request, limit)
    if body is None:
        raise too_large
    return body


def parse_form(body: bytes) -> dict[str, str]:
    """The form parameters, decoded (percent-decoding included) in the declared charset."""
    if not body:
        raise malformed("empty_body", "the notification has no parameters")
    # the charset parameter is ASCII, so a first pass in latin-1 finds it in any encoding
    try:
        first = parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                          max_num_fields=MAX_PARAMS)
    except ValueError:
        raise malformed("malformed_form", f"more than {MAX_PARAMS} parameters") from None
    declared = [v for k, v in first if k == "charset"]
    try:
        encoding = codec(declared[0] if declared else None)
    except ValueError as exc:
        raise malformed("unsupported_charset", str(exc)) from None
    try:
        pairs = parse_qsl(body.decode(encoding), keep_blank_values=True, strict_parsing=True,
                          encoding=encoding, errors="strict", max_num_fields=MAX_PARAMS)
    except UnicodeError:
        raise malformed("bad_encoding", f"the notification is not valid {encoding.upper()} "
                        "(as its charset parameter says)") from None
    except ValueError:
        raise malformed("malformed_form", "the body is not a well-formed "
                        "application/x-www-form-urlencoded form") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise malformed("duplicate_parameter", f"parameter {key[:40]!r} is given twice")
        if _CTRL.search(key) or _CTRL.search(value):
            raise malformed("control_characters", f"parameter {key[:40]!r} contains control "
                            "characters")
        params[key] = value
    return params


# -- biz_content ---------------------------------------------------------------------------------


class GatewayMessage(BaseModel):
    """One citizen action from a 生活号 / mini-program gateway message (biz_content)."""

    model_config = ConfigDict(extra="forbid")

    app_id: str | None = None
    from_user_id: str | None = None
    msg_type: Literal["text", "image", "event", "other"]
    text: str = ""
    #: follow, unfollow, click, enter, enter_ppchat, verifygw … (msg_type "event")
    event_type: str | None = None
    action_param: str | None = None
    #: milliseconds since the epoch, as Alipay sends it
    create_time: int | None = None
    msg_id: str | None = None


def _text(root: Element, path: str) -> str | None:
    node = root.find(path)
    if node is None or node.text is None:
        return None
    return node.text.strip()


def parse_xml(xml: str) -> Element:
    """biz_content as XML; a DOCTYPE or an entity declaration is refused, not resolved."""
    if re.search(r"<!(DOCTYPE|ENTITY)", xml, re.IGNORECASE):
        raise malformed("xml_dtd_refused", "biz_content may not contain a DOCTYPE or entity "
                        "declarations")
    try:
        return SafeET.fromstring(xml, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise malformed("malformed_xml", f"biz_content is not well-formed XML: "
                        f"{str(exc)[:120]}") from None


def parse_message(biz_content: str) -> GatewayMessage:
    """The message in ``biz_content``; 400/413 with the reason when it is not usable."""
    root = parse_xml(biz_content)
    msg_type = (_text(root, "MsgType") or "").lower()
    user = _text(root, "FromUserId") or _text(root, "FromAlipayUserId")
    if user is not None and not USER_PATTERN.match(user):
        raise malformed("bad_user", "FromUserId must be 1-64 letters, digits, '_' or '-'")
    content = (_text(root, "Text/Content") or "") if msg_type == "text" else ""
    if len(content) > MAX_TEXT:
        raise GatewayError(413, "text_too_long", f"the message has {len(content)} characters; "
                           f"the limit is {MAX_TEXT}")
    action = _text(root, "ActionParam")
    if action is not None and len(action) > MAX_TEXT:
        raise GatewayError(413, "text_too_long", f"ActionParam exceeds {MAX_TEXT} characters")
    for name, value in (("MsgId", _text(root, "MsgId")), ("EventType", _text(root, "EventType")),
                        ("AppId", _text(root, "AppId"))):
        if value is not None and not TOKEN_PATTERN.match(value):
            raise malformed("bad_field", f"{name} must be 1-128 printable ASCII characters")
    created = _text(root, "CreateTime")
    if created is not None and not (created.isascii() and created.isdigit()
                                    and len(created) <= 16):
        raise malformed("bad_field", "CreateTime must be a time in milliseconds")
    try:
        return GatewayMessage(
            app_id=_text(root, "AppId"), from_user_id=user,
            msg_type=msg_type if msg_type in ("text", "image", "event") else "other",
            text=content, event_type=(_text(root, "EventType") or None),
            action_param=action or None,
            create_time=int(created) if created else None, msg_id=_text(root, "MsgId"))
    except ValidationError as exc:  # pragma: no cover - every field was checked above
        raise malformed("bad_field", str(exc.errors()[0]["msg"])) from None


__all__ = ["GatewayError", "GatewayMessage", "SERVICE_CHECK", "SERVICE_MESSAGE", "malformed",
           "parse_form", "parse_message", "parse_xml", "read_body"]
