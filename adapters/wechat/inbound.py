"""What WeChat pushes to us, parsed safely and turned into the core's ``Inbound``.

XML is parsed with defusedxml, not by wechatpy's parser (xmltodict): a request is refused (400)
if its bytes contain ``<!DOCTYPE`` or ``<!ENTITY`` anywhere, before any parser sees them, and
defusedxml itself refuses a doctype, an entity declaration or an external entity should one slip
past that check (e.g. in another encoding). Without a doctype no entity can be declared, so
"billion laughs" and external entities cannot happen; an undeclared ``&name;`` is a parse error.
WeChat never sends any of it. Depth and the number of elements are bounded.

JSON (Mini Programs may choose it) is parsed with strict UTF-8 and a bounded nesting depth.

Both formats carry the same field names, so one pydantic model (:class:`PushMessage`) reads
either. Pictures and voice messages are kept as *references*: the attachment's URL is
``wechat-media:<account>/<MediaId>`` (the platform keeps the media for 3 days, see
docs/channels/wechat.md); a voice message's speech recognition (``Recognition``), when the
account has it switched on, is the message's text, so the bot can answer it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.dialog.models import MAX_TEXT, Attachment, Inbound
from core.errors import BangbanError

#: refused before parsing: WeChat never sends a DTD, and a DTD is how XML bombs get in
_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
MAX_DEPTH = 6
MAX_ELEMENTS = 500
#: events that open the conversation: greet the citizen (关注 an Official Account, entering a
#: Mini Program's customer-service session)
WELCOME_EVENTS = ("subscribe", "user_enter_tempsession")


class Malformed(BangbanError):
    code = "malformed"


def _value(el: Element, depth: int) -> Any:
    """An element as text (a leaf) or a dict of its children (repeated names: a list)."""
    children = list(el)
    if not children:
        return el.text or ""
    if depth >= MAX_DEPTH:
        raise Malformed("the XML is nested too deeply")
    found: dict[str, Any] = {}
    for child in children:
        value = _value(child, depth + 1)
        if child.tag in found:  # repeated elements (e.g. PicList items) become a list
            if not isinstance(found[child.tag], list):
                found[child.tag] = [found[child.tag]]
            found[child.tag].append(value)
        else:
            found[child.tag] = value
    return found


def parse_xml(body: bytes) -> dict[str, Any]:
    """``<xml>…</xml>`` as a dict (child elements by name; text for leaves)."""
    if _DTD.search(body):
        raise Malformed("XML with a DOCTYPE or entity declarations is refused")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except DefusedXmlException:
        raise Malformed("XML with a DOCTYPE, entity declarations or external entities is "
                        "refused") from None
    except (ParseError, ValueError) as exc:
        raise Malformed(f"the body is not well-formed XML: {str(exc)[:120]}") from None
    if sum(1 for _ in root.iter()) > MAX_ELEMENTS:
        raise Malformed("the XML has too many elements")
    data = _value(root, 1)
    if root.tag != "xml" or not isinstance(data, dict):
        raise Malformed("the XML root must be <xml> with child elements")
    return data


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeError:
        raise Malformed("the body is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"the body is not valid JSON: {str(exc)[:100]}") from None
    if not isinstance(data, dict):
        raise Malformed("the JSON body must be an object")
    return data


def parse(body: bytes) -> tuple[str, dict[str, Any]]:
    """The body's format ("xml" / "json") and its content; WeChat sends one or the other."""
    head = body.lstrip()[:1]
    if head == b"<":
        return "xml", parse_xml(body)
    if head == b"{":
        return "json", parse_json(body)
    raise Malformed("the body is neither XML nor JSON")


def _problem(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "(body)"
    return f"{where}: {err['msg']}"


class Envelope(BaseModel):
    """A safe-mode push: the encrypted message (its fields are signed by msg_signature)."""

    model_config = ConfigDict(extra="ignore")
    Encrypt: str = Field(min_length=1, max_length=1024 * 1024, pattern=r"^[A-Za-z0-9+/=]+$")


def envelope(data: dict[str, Any]) -> Envelope:
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        raise Malformed(f"not a safe-mode message: {_problem(exc)}") from None


_Id = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.:=-]+$")


class PushMessage(BaseModel):
    """One message or event (the fields we use; the rest are ignored)."""

    model_config = ConfigDict(extra="ignore")
    ToUserName: str = Field(max_length=64)
    FromUserName: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    CreateTime: int = Field(ge=0, lt=10**11)
    MsgType: str = Field(max_length=32)
    MsgId: str | None = Field(None, max_length=32, pattern=r"^[0-9]+$")
    Content: str | None = Field(None, max_length=64 * 1024)
    MediaId: str | None = _Id
    Format: str | None = Field(None, max_length=16)
    Recognition: str | None = Field(None, max_length=64 * 1024)
    Event: str | None = Field(None, max_length=64)

    @field_validator("MsgId", mode="before")
    @classmethod
    def _digits(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def message(data: dict[str, Any]) -> PushMessage:
    try:
        return PushMessage.model_validate(data)
    except ValidationError as exc:
        raise Malformed(f"not a WeChat message: {_problem(exc)}") from None


def _text(value: str | None) -> tuple[str, dict[str, str]]:
    """The citizen's text, cut to what the core takes: a long message still gets an answer
    about its beginning, which is better than an error the platform shows as 暂时无法提供服务."""
    text = (value or "").strip()
    if len(text) > MAX_TEXT:
        return text[:MAX_TEXT], {"truncated": "1"}
    return text, {}


def media_url(account: str, media_id: str) -> str:
    return f"wechat-media:{account}/{media_id}"


def to_inbound(account: str, app_id: str, channel: str, msg: PushMessage) -> Inbound | None:
    """The core's Inbound, or None for what the bot does not take (other events, video …)."""
    user = f"{account}:{msg.FromUserName}"
    base: dict[str, Any] = {"channel": channel, "channel_user": user,
                            "msg_id": f"{app_id}:{msg.MsgId}" if msg.MsgId else None}
    kind = msg.MsgType
    if kind == "text":
        text, meta = _text(msg.Content)
        if not text:
            return None
        return Inbound(**base, text=text, meta=meta)
    if kind in ("image", "voice") and msg.MediaId:
        fmt = (msg.Format or "").lower()
        mime = "image/jpeg" if kind == "image" else \
            f"audio/{fmt if re.fullmatch(r'[a-z0-9]{1,10}', fmt) else 'amr'}"
        text, meta = _text(msg.Recognition) if kind == "voice" else ("", {})
        att = Attachment(kind=kind, url=media_url(account, msg.MediaId), mime=mime, size=0)
        return Inbound(**base, kind=kind, text=text, attachments=[att], meta=meta)
    if kind == "event" and (msg.Event or "") in WELCOME_EVENTS:
        # events have no MsgId: the platform's retries repeat the sender and the time
        msg_id = f"{app_id}:ev:{msg.FromUserName}:{msg.CreateTime}"
        if len(msg_id) > 128:
            msg_id = f"ev:{hashlib.sha256(msg_id.encode()).hexdigest()}"
        return Inbound(channel=channel, channel_user=user, kind="event", msg_id=msg_id,
                       meta={"event": msg.Event or ""})
    return None


__all__ = ["Malformed", "PushMessage", "Envelope", "parse", "parse_xml", "parse_json",
           "envelope", "message", "to_inbound", "media_url", "WELCOME_EVENTS"]
