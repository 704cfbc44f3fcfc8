"""WeChat's platform API as the send job uses it: calls, the shared access token, the errors.

Split from :mod:`adapters.wechat.sender` (the RQ job that decides what to send and remembers
what was sent); everything here is one request and its answer. The errors say what a failure
means for a retry:

- :class:`SendError`: not accepted, worth another try;
- :class:`Refused`: refused for good (the 48-hour window, a spent quota, an unknown openid …);
- :class:`Unsendable`: a picture or voice refused for what it is (type, size, length);
- :class:`Uncertain`: sent, but no answer came, so it may have been accepted: never resent.

Access tokens (``stable_token``) are cached in Redis for every worker and app process, fetched by
one process at a time (a short Redis lock), and dropped and fetched again when the platform says
the token is no longer valid. ``stable_token`` hands every caller the same token until it nears
expiry, so this deployment never invalidates a token another system uses for the same account.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
import urllib.error
import urllib.request
from typing import Any

from core.errors import BangbanError

from .config import WeChatAccount

#: the platform's answers that mean "this access token is no longer valid"
TOKEN_INVALID = {40001, 40014, 42001}
#: answers no retry can change: window closed, quota spent, unknown / unfollowed user, no right
WINDOW_CLOSED = {45015: "window", 45047: "quota"}
PERMANENT = {40003, 43004, 48001, 45002, 40008, 41001, 40013, 40125, 40164, 61024}
#: refusals of a picture or voice itself: media type, file type, file size, too large, too long
MEDIA_REFUSED = {40004, 40005, 40006, 45001, 45007}


class SendError(BangbanError):
    """Not accepted by the platform, and worth another try."""

    code = "wechat_send_failed"


class Refused(BangbanError):
    """The platform refused for good (see WINDOW_CLOSED and PERMANENT)."""

    code = "wechat_refused"

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"errcode {errcode}: {errmsg[:200]}")
        self.errcode = errcode


class Unsendable(SendError):
    """The platform refused a picture or voice for what it is: no retry will change that."""

    code = "wechat_media_refused"


class Uncertain(BangbanError):
    """Sent, but no answer came: it may have been accepted, so it is not sent again."""

    code = "wechat_uncertain"


# -- HTTP -------------------------------------------------------------------------------------


def _call(url: str, payload: dict[str, Any] | None, timeout: float, *,
          sent_matters: bool, body: tuple[bytes, str] | None = None) -> dict[str, Any]:
    """POST JSON (GET when ``payload`` is None; ``body``: raw bytes and their content type
    instead) and return the JSON answer.

    ``sent_matters``: whether a request that reached the platform unanswered is Uncertain (a
    send) or merely failed (a token fetch or an upload, which are safe to repeat).
    """
    data, ctype = body or (None if payload is None else
                           json.dumps(payload, ensure_ascii=False).encode(),
                           "application/json; charset=utf-8")
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": ctype})
    try:
        # urllib wraps failures *before* the request was fully sent (DNS, connect, write) in
        # URLError; what fails after it (waiting for or reading the answer) comes through as is
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our config
            body = resp.read(1024 * 1024)
    except urllib.error.HTTPError as exc:  # an HTTP error status: the API did not take it
        raise SendError(f"HTTP {exc.code} from the platform API") from None
    except urllib.error.URLError as exc:
        raise SendError(f"cannot reach the platform API: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        if sent_matters:
            raise Uncertain(f"no answer from the platform API: {exc!r}") from None
        raise SendError(f"no answer from the platform API: {exc!r}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        if sent_matters:
            raise Uncertain("the platform API's answer is not JSON") from None
        raise SendError("the platform API's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise SendError("the platform API's answer is not a JSON object")
    return answer


# -- access tokens ----------------------------------------------------------------------------

_DELETE_IF = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
              "return redis.call('del', KEYS[1]) end return 0")


class Tokens:
    """The account's access token, shared through Redis."""

    def __init__(self, connection, prefix: str, account: WeChatAccount,  # noqa: ANN001
                 timeout: float) -> None:
        self.redis = connection
        self.account = account
        self.timeout = timeout
        self.key = f"{prefix}wechat:token:{account.app_id}"
        self.lock = f"{prefix}wechat:token-lock:{account.app_id}"

    def get(self) -> str:
        cached = self.redis.get(self.key)
        if cached:
            return cached.decode() if isinstance(cached, bytes) else cached
        mine = secrets.token_hex(8)
        if not self.redis.set(self.lock, mine, nx=True, px=int(self.timeout * 2000) + 1000):
            # another process is fetching: wait for its token rather than ask the platform too
            # (asking again is harmless with stable_token, only wasteful)
            deadline = time.monotonic() + self.timeout * 2
            while time.monotonic() < deadline:
                time.sleep(0.1)
                cached = self.redis.get(self.key)
                if cached:
                    return cached.decode() if isinstance(cached, bytes) else cached
        try:
            return self._fetch(force=False)
        finally:
            self.redis.eval(_DELETE_IF, 1, self.lock, mine)

    def _fetch(self, *, force: bool) -> str:
        answer = _call(f"{self.account.api_base}/cgi-bin/stable_token", {
            "grant_type": "client_credential", "appid": self.account.app_id,
            "secret": self.account.app_secret.get_secret_value(), "force_refresh": force,
        }, self.timeout, sent_matters=False)
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise SendError(f"no access token: errcode {answer.get('errcode')}: "
                            f"{str(answer.get('errmsg'))[:200]}")
        expires = answer.get("expires_in")
        ttl = int(expires) - 300 if isinstance(expires, int) and expires > 600 else 300
        self.redis.set(self.key, token, ex=ttl)  # refreshed 5 minutes before it expires
        return token

    def renew(self, bad: str) -> str:
        """The platform refused ``bad``: forget it and get a valid one."""
        self.redis.eval(_DELETE_IF, 1, self.key, bad)
        token = self._fetch(force=False)
        if token == bad:  # the platform still hands out the one it refuses: force a new one
            token = self._fetch(force=True)
        return token


def _api(tokens: Tokens, path: str, payload: dict[str, Any] | None, *, sent_matters: bool,
         body: tuple[bytes, str] | None = None) -> dict[str, Any]:
    """One platform call with the shared token (renewed once if the platform refuses it);
    raises Refused / SendError on an errcode, returns the answer otherwise."""
    token = tokens.get()
    for attempt in (1, 2):
        sep = "&" if "?" in path else "?"
        answer = _call(f"{tokens.account.api_base}{path}{sep}access_token={token}", payload,
                       tokens.timeout, sent_matters=sent_matters, body=body)
        code = answer.get("errcode", 0)
        if code == 0:
            return answer
        errmsg = str(answer.get("errmsg", ""))
        if code in TOKEN_INVALID and attempt == 1:
            token = tokens.renew(token)
            continue
        if code in WINDOW_CLOSED or code in PERMANENT:
            raise Refused(code, errmsg)
        if code in MEDIA_REFUSED:
            raise Unsendable(f"errcode {code}: {errmsg[:200]}")
        raise SendError(f"errcode {code}: {errmsg[:200]}")
    raise SendError("the platform refused a fresh access token")  # pragma: no cover


def send_text(tokens: Tokens, openid: str, text: str) -> None:
    """One customer-service text message; returns once the platform accepted it."""
    _api(tokens, "/cgi-bin/message/custom/send", {"touser": openid, "msgtype": "text",
                                                  "text": {"content": text}}, sent_matters=True)


def upload_media(tokens: Tokens, kind: str, data: bytes, mime: str, name: str) -> str:
    """Upload a picture or voice as temporary media of type ``kind`` (``image`` / ``voice``;
    multipart, field ``media``); its media id."""
    boundary = f"----bangban{secrets.token_hex(12)}"
    safe = "".join(c for c in name if c.isascii() and c.isalnum() or c in "._-")
    if not safe or safe.startswith("."):  # a Chinese name keeps only its extension
        safe = kind + safe
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; "
            f"filename=\"{safe}\"\r\nContent-Type: {mime}\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    answer = _api(tokens, f"/cgi-bin/media/upload?type={kind}", None, sent_matters=False,
                  body=(body, f"multipart/form-data; boundary={boundary}"))
    media_id = answer.get("media_id")
    if not isinstance(media_id, str) or not media_id:
        raise SendError("the platform took the upload but returned no media_id")
    return media_id


def send_media(tokens: Tokens, openid: str, kind: str, media_id: str) -> None:
    """One customer-service image or voice message; returns once the platform accepted it."""
    _api(tokens, "/cgi-bin/message/custom/send", {"touser": openid, "msgtype": kind,
                                                  kind: {"media_id": media_id}},
         sent_matters=True)
