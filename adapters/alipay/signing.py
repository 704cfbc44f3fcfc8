"""RSA2 (SHA256withRSA) as the Alipay open platform uses it, both ways.

**Checking what Alipay sends.** A notification is a set of form parameters, one of which is
``sign`` (base64). The signed content is every other parameter with a non-empty value, sorted
by name, written ``name=value`` with the value URL-*decoded* (as received, not re-encoded) and
joined by ``&``, encoded in the notification's ``charset``. Alipay has two rules for which
parameters are left out, and its own SDKs check both:

- *V2* — only ``sign`` is left out (``rsaCheckV2``): app-gateway notifications, the rule for
  生活号 and mini-program gateway messages;
- *V1* — ``sign`` and ``sign_type`` are left out (``rsaCheckV1``): payment notifications.

:func:`verify_params` accepts a notification that verifies under either (V2 tried first) and
says which. Only ``sign_type=RSA2`` is accepted: RSA (SHA-1) is refused, not downgraded to.

**Signing what we send.** An open-platform request (custom.send) is signed the same way over
its sorted parameters with the app's private key, ``sign_type`` included (V2). The gateway's
synchronous answers (verifygw, the ack of a message) are XML whose ``<response>`` content is
signed as it stands::

    <?xml version="1.0" encoding="GBK"?><alipay><response>…</response><sign>…</sign>
    <sign_type>RSA2</sign_type></alipay>

Alipay's JSON answers to our requests are checked the same way: the signature covers the exact
text of the ``<method>_response`` member.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from core.errors import BangbanError

SIGN_TYPE = "RSA2"
#: which parameters each rule leaves out of the signed content, in the order they are tried
VARIANTS: dict[str, tuple[str, ...]] = {"v2": ("sign",), "v1": ("sign", "sign_type")}
#: charsets Alipay uses → the codec that reproduces the bytes it signed (GBK is a superset of
#: GB2312 with the same byte sequences for every GB2312 character)
CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk",
            "gb18030": "gb18030"}
#: what Alipay assumes when a request names no charset
DEFAULT_CHARSET = "GBK"
MIN_KEY_BITS = 2048
#: a base64 RSA signature of a key up to 8192 bits is at most this long
MAX_SIGN_CHARS = 1400


class BadKey(BangbanError):
    """A configured key cannot be used."""

    code = "bad_key"


class BadSignature(BangbanError):
    """A signature is missing, malformed or does not match."""

    code = "bad_signature"


# -- keys ---------------------------------------------------------------------------------------


def _der(text: str) -> bytes:
    body = "".join(text.split())
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadKey("not a PEM key nor base64 DER") from None


def _check_rsa(key: object, kind: str) -> None:
    if not isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        raise BadKey(f"the {kind} is not an RSA key")
    if key.key_size < MIN_KEY_BITS:
        raise BadKey(f"the {kind} has {key.key_size} bits; RSA2 needs at least {MIN_KEY_BITS}")


@lru_cache(maxsize=64)
def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An RSA public key from PEM or the bare base64 of its SubjectPublicKeyInfo."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(_der(text))
    except (ValueError, TypeError, UnicodeError) as exc:
        raise BadKey(f"not a usable public key ({type(exc).__name__})") from None
    _check_rsa(key, "public key")
    return key  # type: ignore[return-value]


@lru_cache(maxsize=64)
def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM or the bare base64 of PKCS#8 or PKCS#1 DER."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        else:
            key = serialization.load_der_private_key(_der(text), password=None)
    except (ValueError, TypeError, UnicodeError) as exc:
        # never the exception text: it could quote part of the key
        raise BadKey(f"not a usable unencrypted private key ({type(exc).__name__})") from None
    _check_rsa(key, "private key")
    return key  # type: ignore[return-value]


def public_key_base64(private_key: rsa.RSAPrivateKey) -> str:
    """The public half as the one-line base64 Alipay shows and verifygw answers with."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


# -- the primitive ------------------------------------------------------------------------------


def codec(charset: str | None) -> str:
    """The Python codec for an Alipay ``charset`` value (ValueError for one we don't take)."""
    name = (charset or DEFAULT_CHARSET).strip().lower()
    if name not in CHARSETS:
        raise ValueError(f"unsupported charset {charset[:20]!r} (use UTF-8 or GBK)")
    return CHARSETS[name]


def rsa2_sign(content: str, private_key: rsa.RSAPrivateKey, charset: str = "utf-8") -> str:
    data = content.encode(codec(charset))
    signature = private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa2_verify(content: str, sign: str, public_key: rsa.RSAPublicKey,
                charset: str | None = "utf-8") -> bool:
    try:
        raw = base64.b64decode(sign.replace(" ", "+"), validate=True)
        public_key.verify(raw, content.encode(codec(charset)), padding.PKCS1v15(),
                          hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError, UnicodeError):
        return False
    return True


# -- parameters ---------------------------------------------------------------------------------


def sign_content(params: Mapping[str, str], leave_out: tuple[str, ...] = ("sign",)) -> str:
    """``k=v`` of the non-empty parameters not left out, sorted by name, joined by ``&``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params)
                    if k not in leave_out and params[k] != "")


def verify_params(params: Mapping[str, str], public_key: rsa.RSAPublicKey) -> str:
    """Check a notification's signature; returns the rule it verified under (``v2``/``v1``).

    ``params`` are the decoded form parameters. Raises :class:`BadSignature` with a reason.
    """
    sign = params.get("sign", "")
    if not sign:
        raise BadSignature("the notification is not signed (no sign parameter)")
    if len(sign) > MAX_SIGN_CHARS:
        raise BadSignature("the sign parameter is too long to be an RSA signature")
    sign_type = params.get("sign_type", "")
    if sign_type != SIGN_TYPE:
        raise BadSignature(f"sign_type must be {SIGN_TYPE} (SHA256withRSA), "
                           f"not {sign_type[:16]!r}")
    charset = params.get("charset")
    for variant, leave_out in VARIANTS.items():
        if rsa2_verify(sign_content(params, leave_out), sign, public_key, charset):
            return variant
    raise BadSignature("the signature does not match the parameters (checked with sign "
                       "removed, and with sign and sign_type removed)")


def sign_params(params: Mapping[str, str], private_key: rsa.RSAPrivateKey) -> str:
    """The ``sign`` of an open-platform request (its ``charset`` parameter says how to encode)."""
    return rsa2_sign(sign_content(params), private_key, params.get("charset") or "utf-8")


# -- the gateway's XML answers ------------------------------------------------------------------


def signed_response(response: str, private_key: rsa.RSAPrivateKey,
                    charset: str = DEFAULT_CHARSET) -> str:
    """The signed XML answer to a gateway notification; ``response`` is the inner XML."""
    sign = rsa2_sign(response, private_key, charset)
    return (f'<?xml version="1.0" encoding="{charset}"?><alipay><response>{response}</response>'
            f"<sign>{sign}</sign><sign_type>{SIGN_TYPE}</sign_type></alipay>")


def verifygw_response(private_key: rsa.RSAPrivateKey, charset: str = DEFAULT_CHARSET) -> str:
    """The answer to ``alipay.service.check``: success and our public key, signed."""
    inner = f"<success>true</success><biz_content>{public_key_base64(private_key)}</biz_content>"
    return signed_response(inner, private_key, charset)


# -- the gateway's JSON answers to our requests -------------------------------------------------


def response_member(raw: str, method: str) -> tuple[str | None, str | None]:
    """The exact text of ``<method>_response`` (or ``error_response``) and the ``sign``.

    Alipay signs the member's text as it appears in the answer, so it is cut out of the raw
    text rather than re-serialised. (None, None) when the answer has neither member.
    """
    try:
        whole = json.loads(raw)
    except ValueError:
        return None, None
    if not isinstance(whole, dict):
        return None, None
    sign = whole.get("sign") if isinstance(whole.get("sign"), str) else None
    decoder = json.JSONDecoder()
    for name in (method.replace(".", "_") + "_response", "error_response"):
        key = json.dumps(name)
        at = raw.find(key)
        while at != -1:
            colon = raw.find(":", at + len(key))
            start = colon + 1
            while start < len(raw) and raw[start] in " \t\r\n":
                start += 1
            try:
                _, end = decoder.raw_decode(raw, start)
            except ValueError:
                break
            if raw[at + len(key):colon].strip() == "":
                return raw[start:end], sign
            at = raw.find(key, at + 1)
    return None, sign


__all__ = ["BadKey", "BadSignature", "CHARSETS", "DEFAULT_CHARSET", "SIGN_TYPE", "VARIANTS",
           "codec", "load_private_key", "load_public_key", "public_key_base64", "response_member",
           "rsa2_sign", "rsa2_verify", "sign_content", "sign_params", "signed_response",
           "verify_params", "verifygw_response"]
