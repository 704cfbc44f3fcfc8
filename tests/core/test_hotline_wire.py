"""The contract with 12345: signatures both ways, masked contacts, a validated DispatchConfig."""

from __future__ import annotations

import pytest

from core.hotline_wire import BadSignature, DispatchConfig, sign, verify

SECRET = "s3cret-for-tests"


def test_sign_and_verify():
    body = b'{"a":1}'
    sig = sign(SECRET, "1700000000", body)
    assert sig.startswith("sha256=") and len(sig) == 71
    verify(SECRET, body, sig, "1700000000", now=1700000100)
    for args in [(body + b" ", sig, "1700000000"), (body, sig, "1700000001"),
                 (body, sig, "not-a-time"), (body, "", "1700000000")]:
        with pytest.raises(BadSignature):
            verify(SECRET, *args, now=1700000100)
    with pytest.raises(BadSignature):
        verify(SECRET, body, sig, "1700000000", now=1700000000 + 301)


def test_dispatch_config_is_validated():
    from pydantic import ValidationError

    for bad in [{"endpoint": "ftp://x", "secret": SECRET}, {"endpoint": "http://x", "secret": "s"},
                {"endpoint": "http://x", "secret": SECRET, "retry_intervals": [-1]},
                {"endpoint": "http://x", "secret": SECRET, "max_attempts": 0}]:
        with pytest.raises(ValidationError):
            DispatchConfig.model_validate(bad)
    d = DispatchConfig(endpoint="http://x", secret=SECRET)
    assert (d.retry().max, d.retry().intervals) == (4, [5, 30, 120, 600])
    assert d.model_copy(update={"max_attempts": 1}).retry() is None
