"""Signing requests to the 随申办 APP API — for app developers (and the server's own check).

Every request to ``/api/app/v1`` carries four headers::

    X-Bangban-App:        the app id the key was issued for
    X-Bangban-Timestamp:  unix time in seconds (within ±replay_window_s, default 300, of ours)
    X-Bangban-Nonce:      16-64 characters from [A-Za-z0-9._~-], never reused
    X-Bangban-Signature:  hex(HMAC-SHA256(key, canonical string))

and the canonical string is five lines joined by ``\\n``::

    METHOD                  upper case: GET, POST
    PATH                    the request target exactly as sent: path and query string,
                            percent-encoded, parameters in the order they are sent
    TIMESTAMP               the header's value
    NONCE                   the header's value
    HEX(SHA256(BODY))       of the exact body bytes (of b"" for GET and the websocket)

Sign the bytes you send: serialise the JSON body once, sign it, and send those same bytes. In
Python::

    from adapters.app.signing import sign_request
    body = json.dumps({"user": "u123", "text": "个税清单怎么开"}).encode()
    headers = sign_request("my-app", KEY, "POST", "/api/app/v1/messages", body)
    requests.post(BASE + "/api/app/v1/messages", data=body,
                  headers={**headers, "Content-Type": "application/json"})

Pictures and voice messages are sent as the raw file (``POST /api/app/v1/attachments``), signed
the same way: the body line of the canonical string is then simply the file's SHA-256::

    data = Path("screenshot.png").read_bytes()
    path = "/api/app/v1/attachments?user=u123&name=screenshot.png"
    headers = sign_request("my-app", KEY, "POST", path, data)
    requests.post(BASE + path, data=data, headers={**headers, "Content-Type": "image/png"})

With ``requests`` the signer can be the ``auth`` of a session, which signs each prepared
request (URL and body as they go on the wire)::

    session.auth = RequestsSigner("my-app", KEY)

This module only needs the standard library, so apps can copy it as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

HEADER_APP = "X-Bangban-App"
HEADER_TIMESTAMP = "X-Bangban-Timestamp"
HEADER_NONCE = "X-Bangban-Nonce"
HEADER_SIGNATURE = "X-Bangban-Signature"
HEADERS = (HEADER_APP, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)

NONCE_MIN, NONCE_MAX = 16, 64
NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")


def _bytes(body: bytes | str | None) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def canonical_string(method: str, path: str, timestamp: str, nonce: str,
                     body: bytes | str | None = b"") -> str:
    """The text that is signed (see the module docstring)."""
    digest = hashlib.sha256(_bytes(body)).hexdigest()
    return "\n".join((method.upper(), path, timestamp, nonce, digest))


def signature(key: str | bytes, method: str, path: str, timestamp: str, nonce: str,
              body: bytes | str | None = b"") -> str:
    """Hex HMAC-SHA256 of the canonical string under ``key``."""
    key_bytes = key.encode("utf-8") if isinstance(key, str) else key
    text = canonical_string(method, path, timestamp, nonce, body).encode("utf-8")
    return hmac.new(key_bytes, text, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(16)


def sign_request(app_id: str, key: str | bytes, method: str, path: str,
                 body: bytes | str | None = b"", *, timestamp: int | None = None,
                 nonce: str | None = None) -> dict[str, str]:
    """The four authentication headers for one request.

    ``path`` is the request target as it will be sent (``/api/app/v1/messages?user=u1&after=3``).
    ``timestamp`` (unix seconds) and ``nonce`` default to now and a fresh random value.
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    return {
        HEADER_APP: app_id,
        HEADER_TIMESTAMP: ts,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(key, method, path, ts, nonce, body),
    }


class RequestsSigner:
    """A ``requests`` auth callable: ``session.auth = RequestsSigner(app_id, key)``.

    ``requests`` calls it with each prepared request, after the URL is encoded and the body
    serialised, so the signature covers exactly what is sent. (No import of ``requests``: any
    object with ``method``, ``path_url``, ``body`` and ``headers`` will do.)
    """

    def __init__(self, app_id: str, key: str | bytes) -> None:
        self.app_id = app_id
        self.key = key

    def __call__(self, request: Any) -> Any:
        request.headers.update(sign_request(
            self.app_id, self.key, request.method, request.path_url, request.body))
        return request
