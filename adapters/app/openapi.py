"""The OpenAPI 3.1 document of the 随申办 APP API, generated from the pydantic models.

Served at ``GET /api/openapi.json`` and checked in as ``docs/openapi.json``; regenerate it with

    python -m adapters.app.openapi > docs/openapi.json

(a test fails when the checked-in copy differs from what the code generates).
"""

from __future__ import annotations

import copy
import json
import sys
from functools import lru_cache
from typing import Any

from pydantic.json_schema import models_json_schema

from core import __version__

from . import signing
from core.attachments import EXTENSIONS

from .adapter import ATTACHMENTS, PREFIX
from .models import (
    ErrorBody, PollQuery, PollResponse, QuickReplyMessage, SendResponse, TextMessage,
    UploadQuery, UploadResponse, WsClientFrame, WsServerFrame,
)

REF = "#/components/schemas/{model}"

SIGNING = """Every request is signed with the app's key (HMAC-SHA256) and carries four headers:
`X-Bangban-App` (the app id), `X-Bangban-Timestamp` (unix seconds, within ±300 s of the
server's clock by default), `X-Bangban-Nonce` (16-64 characters from `A-Z a-z 0-9 . _ ~ -`,
never reused) and `X-Bangban-Signature`, the lower-case hex HMAC-SHA256 of

    METHOD + "\\n" + PATH + "\\n" + TIMESTAMP + "\\n" + NONCE + "\\n" + HEX(SHA256(BODY))

where PATH is the request target exactly as sent (path and query string, percent-encoded,
parameters in the order sent) and BODY the exact body bytes (empty for GET). A request that
fails any check is refused with 401 and a reason (a body over the size limit is refused with 413
before it is read). `adapters/app/signing.py` is a reference
implementation (standard library only).

Pictures and voice messages (`POST /attachments`) are sent as the raw file, not as JSON or
multipart: BODY is the file's bytes, so the last line of the canonical string is simply the
file's SHA-256. Hash the bytes you send and send those same bytes. The server reads the body
within the size limit of the type the bytes turn out to be (413 before the signature is
checked, as for any body over its limit), then checks the signature, then the type.

Users are namespaced by app: the same `user` under two apps is two different citizens."""

#: the error statuses each kind of operation can answer with, and why
_ERRORS = {
    "400": "Malformed JSON (or not a websocket upgrade, for /ws).",
    "401": "Not signed, unknown app, bad signature, timestamp outside the replay window, "
           "or nonce already used.",
    "404": "No such attachment for this app.",
    "413": "The body is larger than the configured limit (for attachments: the limit of the "
           "picture or voice type detected, given in the message).",
    "415": "A message whose Content-Type is not application/json; an attachment that is not "
           "a picture or voice message of an accepted type (detected from the content).",
    "422": "The body or query failed validation: `problems` lists each field and reason.",
    "429": "Too many messages from this user; retry after `Retry-After` seconds.",
}


def _schemas() -> tuple[dict[tuple, dict], dict[str, Any]]:
    models = [(TextMessage, "validation"), (QuickReplyMessage, "validation"),
              (WsClientFrame, "validation"), (PollQuery, "validation"),
              (UploadQuery, "validation"),
              (SendResponse, "serialization"), (PollResponse, "serialization"),
              (UploadResponse, "serialization"),
              (ErrorBody, "serialization"), (WsServerFrame, "serialization")]
    refs, top = models_json_schema(models, ref_template=REF)
    return refs, top.get("$defs", {})


def _query_parameters(schemas: dict[str, Any], *, skip: tuple[str, ...] = (),
                      model_name: str = "PollQuery") -> list[dict]:
    """A query model's fields as OpenAPI query parameters (null variants dropped)."""
    model = schemas[model_name]
    params = []
    for name, prop in model["properties"].items():
        if name in skip:
            continue
        prop = copy.deepcopy(prop)
        prop.pop("title", None)
        description = prop.pop("description", None)
        variants = [v for v in prop.pop("anyOf", []) if v.get("type") != "null"]
        if variants:
            prop.update(variants[0])
        if prop.get("default", 0) is None:
            prop.pop("default")
        param = {"name": name, "in": "query", "required": name in model.get("required", []),
                 "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _json(ref: dict) -> dict:
    return {"application/json": {"schema": ref}}


def _responses(ok: dict, *errors: str) -> dict:
    responses = dict(ok)
    for status in errors:
        responses[status] = {"$ref": f"#/components/responses/Error{status}"}
    return responses


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    refs, schemas = _schemas()
    ref = {model.__name__: r for (model, _mode), r in refs.items()}
    error_ref = ref["ErrorBody"]
    responses = {}
    for status, why in _ERRORS.items():
        responses[f"Error{status}"] = {"description": why, "content": _json(error_ref)}
    responses["Error429"]["headers"] = {"Retry-After": {
        "description": "Seconds until the user may send again.",
        "schema": {"type": "integer", "minimum": 0}}}
    schemes = {
        "BangbanApp": signing.HEADER_APP, "BangbanTimestamp": signing.HEADER_TIMESTAMP,
        "BangbanNonce": signing.HEADER_NONCE, "BangbanSignature": signing.HEADER_SIGNATURE,
    }
    security_schemes = {
        name: {"type": "apiKey", "in": "header", "name": header,
               "description": f"`{header}`: one of the four headers of the request signature "
                              "(see the API description)."}
        for name, header in schemes.items()
    }
    send = {
        "operationId": "sendMessage",
        "summary": "Send the citizen's message; get the bot's replies",
        "description": "A text (`text`) or a tapped quick reply (`payload` + `label`). With "
                       "`msg_id`, a retry of the same message is recognised: it answers "
                       "`duplicate: true` and no replies (read them with GET).",
        "requestBody": {"required": True, "content": _json(
            {"oneOf": [ref["TextMessage"], ref["QuickReplyMessage"]]})},
        "responses": _responses({"200": {"description": "The message was taken; the replies.",
                                         "content": _json(ref["SendResponse"])}},
                                "400", "401", "413", "415", "422", "429"),
    }
    poll = {
        "operationId": "pollMessages",
        "summary": "Read (long-poll) the conversation's messages after a sequence number",
        "description": "Returns the stored messages with `seq` > `after` at once if there are "
                       "any; otherwise waits up to `wait` seconds (at most the server's "
                       "long-poll limit) for one, and answers an empty list if none comes. "
                       "Unknown or repeated query parameters are refused (422).",
        "parameters": _query_parameters(schemas),
        "responses": _responses({"200": {"description": "Messages in sequence order.",
                                         "content": _json(ref["PollResponse"])}},
                                "401", "413", "422"),
    }
    ws = {
        "operationId": "openWebsocket",
        "summary": "Websocket: receive every message in order, send texts",
        "description": "Signed like every request (empty body). The server sends "
                       "`WsServerFrame`s: `{type: message, message}` in sequence order from "
                       "`after`; `{type: status, message}` for a transient human-help status "
                       "(queue position, expected wait, agent: `message.queue`, `seq` 0, not "
                       "stored; show the newest by `created_at` in place); and "
                       "`{type: error, error, reason}` for a refused frame. The "
                       "client sends `WsClientFrame`s: `{type: send, text}` or "
                       "`{type: send, payload, label}`.",
        "parameters": _query_parameters(schemas, skip=("wait",)),
        "responses": _responses({"101": {"description": "Switching to the websocket."}},
                                "400", "401", "422"),
    }
    binary = {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}
    media_types = sorted(EXTENSIONS)
    upload = {
        "operationId": "sendAttachment",
        "summary": "Send a picture or voice message (the raw file as the body)",
        "description": "The body is the file itself (a screenshot, a photo, a voice note), "
                       "signed like any body (see the API description). Its type is detected "
                       "from its content: PNG, JPEG, GIF or WebP pictures; AMR, MP3, AAC/M4A, "
                       "3GPP, OGG, WAV or WebM audio. Content-Type and `name` are not trusted. "
                       "Pictures and voice messages have their own size limits (the server's "
                       "`handoff.max_image_bytes` / `max_voice_bytes`, 5 MiB and 2 MiB by "
                       "default). The file is stored and sent as the user's message at once: "
                       "the answer is that of `POST /messages`, plus `attachment`.",
        "parameters": _query_parameters(schemas, model_name="UploadQuery"),
        "requestBody": {"required": True, "content": {
            **{mime: binary for mime in media_types}, "application/octet-stream": binary}},
        "responses": _responses({"200": {"description": "Stored and sent; the replies.",
                                         "content": _json(ref["UploadResponse"])}},
                                "401", "413", "415", "422", "429"),
    }
    download = {
        "operationId": "getAttachment",
        "summary": "Download a picture or voice message of one of this app's users",
        "description": "The `url` of an attachment in a message (pictures agents send, and "
                       "the user's own). Signed like every request (empty body). Served with "
                       "the detected `Content-Type`, `X-Content-Type-Options: nosniff` and the "
                       "file name in `Content-Disposition` (RFC 6266 `filename*`).",
        "parameters": [{"name": "attachment_id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^a[0-9a-f]{23,31}$"}}],
        "responses": _responses({"200": {
            "description": "The file.",
            "headers": {"Content-Disposition": {
                "description": "`inline`, with the file name.", "schema": {"type": "string"}}},
            "content": {mime: binary for mime in media_types}}}, "401", "404", "413", "422"),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Bangban 随申办 APP API", "version": __version__,
                 "description": SIGNING,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "paths": {
            f"{PREFIX}/messages": {"post": send, "get": poll},
            f"{PREFIX}/ws": {"get": ws},
            ATTACHMENTS: {"post": upload},
            ATTACHMENTS + "/{attachment_id}": {"get": download},
        },
        "components": {"schemas": schemas, "responses": responses,
                       "securitySchemes": security_schemes},
        "security": [{name: [] for name in schemes}],
    }


def document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document."""
    return copy.deepcopy(_document())


def render() -> str:
    return json.dumps(document(), ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(render().encode("utf-8"))
