"""The APP API's OpenAPI document: current, valid OpenAPI 3.1, and true of the live API.

Schemathesis generates requests from the document (valid ones and, separately, invalid ones)
and checks the running server's answers: no 5xx, documented status codes, bodies that match
the response schemas, invalid input rejected and valid input accepted. It cannot sign requests
by itself, so a schemathesis auth provider signs each generated request with the app's
reference helper, over the URL and body exactly as ``requests`` will send them — except the
invalid cases whose headers schemathesis broke on purpose, which must get 401.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation

from adapters.app import AppAdapter
from adapters.app.adapter import PREFIX
from adapters.app.openapi import document, render
from adapters.app.signing import sign_request
from core.app import create_app

from .conftest import APP_A, KEY_A, with_app_channel

DOC = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
MAX_EXAMPLES = 30


def test_checked_in_document_is_the_generated_one():
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is out of date: python -m adapters.app.openapi > docs/openapi.json")


def test_document_is_valid_openapi_3_1():
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_document_describes_security_and_errors():
    doc = document()
    schemes = doc["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {
        "X-Bangban-App", "X-Bangban-Timestamp", "X-Bangban-Nonce", "X-Bangban-Signature"}
    assert all(s["type"] == "apiKey" and s["in"] == "header" for s in schemes.values())
    assert doc["security"] == [{name: [] for name in schemes}]
    send = doc["paths"][f"{PREFIX}/messages"]["post"]
    assert set(send["responses"]) == {"200", "400", "401", "413", "415", "422", "429"}
    error = doc["components"]["responses"]["Error401"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "$defs" not in json.dumps(doc)


async def test_served_document_and_routes_match(app_client):
    resp = await app_client.get("/api/openapi.json")
    assert resp.status == 200
    served = await resp.json()
    assert served == document()
    router = app_client.server.app.router
    routes = {(r.method.lower(), r.resource.canonical) for r in router.routes()
              if r.resource is not None and r.resource.canonical.startswith(PREFIX)}
    documented = {(m, p) for p, ops in served["paths"].items() for m in ops}
    assert routes == documented


@pytest.fixture
async def live_url(aiohttp_client, settings, engine, redis) -> str:
    """A running server whose long-polls return quickly and whose users are not rate limited."""
    app = create_app(with_app_channel(settings, long_poll_max_s=0.2,
                                      rate_limit={"messages": 10_000, "window_s": 60}),
                     adapters={"app": AppAdapter})
    client = await aiohttp_client(app)
    return str(client.make_url("")).rstrip("/")


def signed_schema(base_url: str):
    """The document as a schemathesis schema whose generated requests are signed as APP_A."""
    schema = schemathesis.openapi.from_dict(document())

    @schema.auth(refresh_interval=None)  # sign every request afresh (new timestamp and nonce)
    class HmacSignature:
        def get(self, case, context):
            meta = case.meta
            if meta is not None and meta.is_negative_at(ParameterLocation.HEADER):
                return None  # the signature headers are the invalid part: send them as generated
            return APP_A, KEY_A

        def set(self, case, credentials, context):
            kwargs = case.as_transport_kwargs(base_url=base_url)
            prepared = requests.Request(**{k: v for k, v in kwargs.items() if k in (
                "method", "url", "headers", "params", "data", "json", "cookies")}).prepare()
            case.headers.update(sign_request(*credentials, prepared.method, prepared.path_url,
                                             prepared.body))

    return schema


def _run(schema, method: str, mode: GenerationMode, base_url: str) -> list[int]:
    """Schemathesis' checks on generated cases; the statuses the server answered."""
    operation = schema[f"{PREFIX}/messages"][method]
    statuses = []

    @hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        statuses.append(case.call_and_validate(base_url=base_url, timeout=10).status_code)

    check()
    return statuses


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_live_api_conforms_to_the_document(live_url, method, mode):
    schema = signed_schema(live_url)
    # requests are blocking: the server keeps running on this loop while they are made
    statuses = await asyncio.to_thread(_run, schema, method, mode, live_url)
    if mode == GenerationMode.POSITIVE:  # valid and signed: all taken (none refused as unsigned)
        assert set(statuses) == {200}, statuses
    else:  # schemathesis' own check judges each one (a shrunk case may have become valid)
        assert all(s < 500 for s in statuses) and any(400 <= s < 500 for s in statuses), statuses
