"""Instance secrets and signing helpers shared by channels and the console."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .config import Settings


def instance_secret(settings: Settings, purpose: str) -> bytes:
    """A per-deployment secret for ``purpose`` (cookie signing, CSRF …).

    Derived from ``<data_dir>/secret.key``, created on first use with mode 0600. Several
    processes must share it, so a multi-machine deployment puts the same file on each (or sets
    the data dir to shared storage).
    """
    path = Path(settings.data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
    master = path.read_text().strip().encode()
    return hmac.new(master, purpose.encode(), hashlib.sha256).digest()


def sign(secret: bytes, value: str) -> str:
    mac = hmac.new(secret, value.encode(), hashlib.sha256).digest()[:18]
    return f"{value}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def unsign(secret: bytes, token: str) -> str | None:
    """The value of a token made by :func:`sign`, or None if it was forged or altered."""
    value, _, _mac = token.rpartition(".")
    if not value:
        return None
    return value if hmac.compare_digest(sign(secret, value), token) else None
