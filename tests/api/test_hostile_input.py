"""What an attacker would try first: every probe gets its 4xx (never a 500), and the headers that
keep patient data out of caches and other origins."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from careflow.auth import Role
from careflow.crypto import KeyRing
from tests.conftest import LoopbackServer, Stack, referral_payload
from tests.console.conftest import console_client, csrf_of

pytestmark = pytest.mark.e2e

NESTED = b"[" * 100_000 + b"]" * 100_000
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Bundle xmlns="http://hl7.org/fhir"><id value="&lol3;"/><type value="message"/></Bundle>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Bundle [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Bundle xmlns="http://hl7.org/fhir"><id value="&xxe;"/><type value="message"/></Bundle>"""
HOSPITAL_SOR = "200000000000001"


def _outcome(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


async def test_deeply_nested_json_is_400_for_every_json_endpoint(stack: Stack) -> None:
    inbound = await stack.api.post(
        "/fhir/$process-message",
        content=NESTED,
        headers={**stack.headers(Role.PARTNER, HOSPITAL_SOR), "Content-Type": "application/fhir+json"},
    )
    assert "nested deeper" in _outcome(inbound, 400)["issue"][0]["diagnostics"]
    referral = await stack.api.post(
        "/referrals",
        content=b'{"patient":' + b'{"a":' * 200 + b"1" + b"}" * 201,
        headers={**stack.headers(Role.CLINICIAN), "Content-Type": "application/json"},
    )
    _outcome(referral, 400)
    search = await stack.api.post(
        "/flows/search",
        content=NESTED[:20_000] + NESTED[-20_000:],
        headers={**stack.headers(Role.COORDINATOR), "Content-Type": "application/json"},
    )
    _outcome(search, 400)


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["entity-expansion", "external-entity"])
async def test_xml_with_a_doctype_is_refused(stack: Stack, document: bytes) -> None:
    response = await stack.api.post(
        "/fhir/$process-message",
        content=document,
        headers={**stack.headers(Role.PARTNER, HOSPITAL_SOR), "Content-Type": "application/fhir+xml"},
    )
    outcome = _outcome(response, 400)
    assert "DOCTYPE" in outcome["issue"][0]["diagnostics"]
    assert "root:" not in response.text and "lollol" not in response.text


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/referrals", 64 * 1024),
        ("/codec/decode", 4 * 1024 * 1024),
        ("/fhir/$process-message", 5 * 1024 * 1024),
        ("/flows/search", 64 * 1024),
    ],
)
async def test_oversized_bodies_are_413_before_authentication(stack: Stack, path: str, limit: int) -> None:
    # No token at all: the size is refused first, and the body is not read.
    declared = await stack.api.post(path, content=b" " * (limit + 1), headers={"Content-Type": "application/json"})
    _outcome(declared, 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    chunked = await stack.api.post(path, content=chunks(), headers={"Content-Type": "application/json"})
    _outcome(chunked, 413)


async def test_console_cpr_search_with_an_invalid_number_is_422(stack: Stack) -> None:
    async with console_client(stack) as client:
        page = await client.get("/console/flows")
        response = await client.post("/console/flows/search", data={"cpr": "12-34", "csrf_token": csrf_of(page.text)})
        assert response.status_code == 422 and "A CPR number has 10 digits" in response.text


async def test_non_ascii_credentials_are_401(stack: Stack) -> None:
    for value in ("Bearer æøå".encode(), "Bearer cf1.æ.ø".encode(), b"Bearer \xff\xfe", "Basic Ω".encode()):
        response = await stack.api.get("/flows", headers={"Authorization": value})
        _outcome(response, 401)
    async with httpx.AsyncClient(base_url=stack.settings.public_url) as client:
        form = await client.get("/console/login")
        login = await client.post(
            "/console/login", data={"token": "eyJæøå.blåbær.grød", "csrf_token": csrf_of(form.text)}
        )
        assert login.status_code == 401 and "not accepted" in login.text
    async with httpx.AsyncClient(base_url=stack.settings.public_url) as client:
        garbage_cookie = await client.get("/console", headers={"Cookie": "careflow_console=æøå.ø".encode()})
        assert garbage_cookie.status_code == 303  # no session, and no 500


def _payloads(*items: tuple[dict[str, bytes], bytes]) -> dict:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in metadata.items()},
                "data": base64.b64encode(data).decode(),
            }
            for metadata, data in items
        ]
    }


async def test_foreign_or_garbage_ciphertext_to_the_codec_is_400(stack: Stack) -> None:
    foreign = KeyRing.parse("dev1:" + base64.b64encode(os.urandom(32)).decode())
    own = KeyRing.parse(stack.settings.codec_keys)
    encrypted = {"encoding": b"binary/encrypted", "encryption-key-id": b"dev1"}
    probes = [
        _payloads((encrypted, foreign.encrypt(b"\x0a\x03abc")[1])),  # another deployment's key, same id
        _payloads(({"encoding": b"binary/encrypted", "encryption-key-id": b"nobody"}, b"x" * 40)),  # unknown key id
        _payloads(({"encoding": b"binary/encrypted", "encryption-key-id": b"\xff\xfe"}, b"x" * 40)),  # key id not text
        _payloads((encrypted, b"short")),  # shorter than a nonce
        _payloads((encrypted, own.encrypt(b"\xff\xff\xff\xff not a protobuf")[1])),  # decrypts, but to garbage
        _payloads(({"encoding": b"binary/encrypted"}, b"x" * 40)),  # no key id
    ]
    for probe in probes:
        _outcome(await stack.api.post("/codec/decode", json=probe, headers=stack.headers(Role.COORDINATOR)), 400)
    _outcome(
        await stack.api.post(
            "/codec/decode", content=b'{"payloads": [{"data": 12}]}', headers=stack.headers(Role.COORDINATOR)
        ),
        400,
    )


async def test_cors_only_on_the_codec_for_the_temporal_ui_and_without_credentials(stack: Stack) -> None:
    ui = f"http://127.0.0.1:{stack.settings.temporal_ui_port}"
    preflight = {
        "Origin": ui,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    codec = await stack.api.options("/codec/decode", headers=preflight)
    assert codec.status_code == 200 and codec.headers["access-control-allow-origin"] == ui
    assert "access-control-allow-credentials" not in codec.headers
    flows = await stack.api.options("/flows", headers=preflight)
    assert "access-control-allow-origin" not in flows.headers
    get = await stack.api.get("/flows", headers={"Origin": ui, **stack.headers(Role.COORDINATOR)})
    assert "access-control-allow-origin" not in get.headers
    other = await stack.api.options("/codec/decode", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


async def test_patient_data_answers_are_not_cached(stack: Stack) -> None:
    accepted = await stack.api.post(
        "/referrals", json=referral_payload("0202505123"), headers=stack.headers(Role.CLINICIAN)
    )
    flow = await stack.api.get(f"/flows/{accepted.json()['id']}", headers=stack.headers(Role.COORDINATOR))
    search = await stack.api.post("/flows/search", json={"cpr": "0202505123"}, headers=stack.headers(Role.COORDINATOR))
    for response in (flow, search):
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "strict-transport-security" not in response.headers  # plain HTTP: no HSTS


async def test_hsts_and_secure_cookie_only_behind_a_trusted_tls_proxy(stack: Stack) -> None:
    from api.main import create_app

    proxied = stack.settings.model_copy(update={"trusted_proxies": "127.0.0.1"})
    async with (
        LoopbackServer(create_app(proxied, run_migrations=False)) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        over_tls = await client.get("/console/login", headers={"X-Forwarded-Proto": "https"})
        assert over_tls.headers["strict-transport-security"].startswith("max-age=")
        assert "secure" in over_tls.headers["set-cookie"].lower()
        plain = await client.get("/console/login")
        assert "strict-transport-security" not in plain.headers and "secure" not in plain.headers["set-cookie"].lower()
    # The stack trusts no proxy: a client claiming HTTPS is not believed.
    claimed = await stack.api.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in claimed.headers


async def test_probes_leave_the_api_healthy(stack: Stack) -> None:
    ready = await stack.api.get("/readyz")
    assert ready.status_code == 200, json.dumps(ready.json())


async def test_numbers_too_large_for_the_database_are_422(stack: Stack) -> None:
    """Found by schemathesis: an offset past SQLite's 64-bit integers was a 500."""
    huge = str(2**70)
    for params in ({"offset": huge}, {"limit": huge}):
        _outcome(await stack.api.get("/flows", params=params, headers=stack.headers(Role.COORDINATOR)), 422)
    async with console_client(stack) as client:
        page = await client.get(f"/console/flows/x/messages/in/{huge}")
        assert page.status_code == 422
        action = await client.post(
            f"/console/escalations/{huge}/resend",
            data={"reason": "r", "csrf_token": csrf_of((await client.get("/console/flows")).text)},
        )
        assert action.status_code == 422
