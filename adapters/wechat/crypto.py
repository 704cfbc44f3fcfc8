"""WeChat's callback signatures and message encryption (安全模式), on wechatpy's primitives.

- ``signature`` = SHA-1 of the sorted strings (token, timestamp, nonce): every request has it;
  in plaintext mode it is all there is, and it does not cover the body.
- ``msg_signature`` adds the ``Encrypt`` value: in safe mode it covers the whole message.
- Encryption: AES-256-CBC with key = base64(EncodingAESKey + "="), IV = key[:16], PKCS#7 padded
  to 32 bytes, over random(16) + length(4, big-endian) + message + AppID. The AppID at the end
  is checked on the way in, so a message encrypted for another account is refused.

wechatpy's ``PrpCrypto`` does the AES part. Two things are ours: the 16 random bytes come from
``secrets`` (wechatpy uses ``random``), and every failure of a malformed ciphertext (bad
base64, a length that is not a block multiple, bad padding, non-UTF-8) becomes one
:class:`BadPayload` instead of whichever exception the library happened to raise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
import struct

from wechatpy.crypto import PrpCrypto
from wechatpy.exceptions import InvalidAppIdException

from core.errors import BangbanError

_ALPHABET = string.ascii_letters + string.digits


class BadSignature(BangbanError):
    code = "bad_signature"


class BadPayload(BangbanError):
    """The encrypted message cannot be decrypted, or was not encrypted for this account."""

    code = "bad_payload"


def signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the parts sorted and concatenated."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _same(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.lower().encode(
        "utf-8", "replace"))


class _Prp(PrpCrypto):
    def __init__(self, key: bytes, random16: str | None = None) -> None:
        super().__init__(key)
        self._random16 = random16

    def get_random_string(self) -> str:
        # a fixed value only where a test replays the platform's published sample
        return self._random16 or "".join(secrets.choice(_ALPHABET) for _ in range(16))


class AccountCrypto:
    """Signatures and encryption of one account."""

    def __init__(self, token: str, app_id: str, aes_key: str | None = None) -> None:
        self.token = token
        self.app_id = app_id
        self.key = base64.b64decode(aes_key + "=") if aes_key else None

    # -- signatures ---------------------------------------------------------------------------
    def check_signature(self, given: str | None, timestamp: str, nonce: str) -> None:
        if not _same(signature(self.token, timestamp, nonce), given):
            raise BadSignature("signature does not match (token, timestamp, nonce)")

    def check_msg_signature(self, given: str | None, timestamp: str, nonce: str,
                            encrypt: str) -> None:
        if not _same(signature(self.token, timestamp, nonce, encrypt), given):
            raise BadSignature("msg_signature does not match (token, timestamp, nonce, Encrypt)")

    # -- encryption ---------------------------------------------------------------------------
    def decrypt(self, encrypt: str) -> str:
        """The plaintext message inside ``Encrypt`` (its signature already checked)."""
        if self.key is None:
            raise BadPayload("this account has no EncodingAESKey (plaintext mode)")
        try:
            return _Prp(self.key).decrypt(encrypt, self.app_id)
        except InvalidAppIdException:
            raise BadPayload("the message was encrypted for another AppID") from None
        except (ValueError, TypeError, IndexError, struct.error):
            # bad base64, not a whole number of blocks, bad padding or length, not UTF-8
            raise BadPayload("the Encrypt value cannot be decrypted") from None

    def encrypt(self, text: str, *, random16: str | None = None) -> str:
        if self.key is None:
            raise BadPayload("this account has no EncodingAESKey (plaintext mode)")
        return _Prp(self.key, random16).encrypt(text, self.app_id).decode()

    def seal(self, text: str, *, fmt: str, timestamp: str, nonce: str,
             random16: str | None = None) -> str:
        """A reply in safe mode: ``text`` encrypted, signed, in the XML or JSON envelope."""
        encrypt = self.encrypt(text, random16=random16)
        sig = signature(self.token, timestamp, nonce, encrypt)
        if fmt == "json":
            return json.dumps({"Encrypt": encrypt, "MsgSignature": sig,
                               "TimeStamp": timestamp, "Nonce": nonce})
        # base64 and hex digits: nothing here needs escaping; the timestamp and nonce are ours
        return (f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
                f"<MsgSignature><![CDATA[{sig}]]></MsgSignature>"
                f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>")


def new_nonce() -> str:
    return str(secrets.randbelow(10**10))


__all__ = ["AccountCrypto", "BadPayload", "BadSignature", "signature", "new_nonce"]
