"""The codec endpoint the Temporal UI uses: coordinators can read payloads, nobody else."""

from __future__ import annotations

import base64
import json

import pytest

from careflow.auth import Role
from tests.conftest import Stack, referral_payload
from workflows.referral import ReferralPathwayWorkflow

pytestmark = pytest.mark.e2e


async def test_coordinator_decodes_a_workflow_input_from_the_server(stack: Stack) -> None:
    accepted = (
        await stack.api.post("/referrals", json=referral_payload("0808505123"), headers=stack.headers(Role.CLINICIAN))
    ).json()
    handle = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{accepted['id']}")
    await handle.result()
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes.input
    # What the server holds: encrypted, as the UI receives it.
    encrypted = {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in started.payloads
        ]
    }
    assert "0808505123" not in json.dumps(encrypted)
    response = await stack.api.post("/codec/decode", json=encrypted, headers=stack.headers(Role.COORDINATOR))
    assert response.status_code == 200, response.text
    decoded = response.json()["payloads"][0]
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(decoded["data"]))["patient"]["cpr"] == "0808505123"
    # And back: encode gives an encrypted payload that decodes to the same.
    again = await stack.api.post("/codec/encode", json={"payloads": [decoded]}, headers=stack.headers(Role.COORDINATOR))
    assert base64.b64decode(again.json()["payloads"][0]["metadata"]["encoding"]) == b"binary/encrypted"


async def test_codec_refuses_garbage_and_other_roles(stack: Stack) -> None:
    assert (
        await stack.api.post("/codec/decode", content=b"not json", headers=stack.headers(Role.COORDINATOR))
    ).status_code == 400
    tampered = {
        "payloads": [
            {
                "metadata": {
                    "encoding": base64.b64encode(b"binary/encrypted").decode(),
                    "encryption-key-id": base64.b64encode(b"dev1").decode(),
                },
                "data": base64.b64encode(b"x" * 40).decode(),
            }
        ]
    }
    response = await stack.api.post("/codec/decode", json=tampered, headers=stack.headers(Role.COORDINATOR))
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"
    assert (
        await stack.api.post(
            "/codec/decode", json={"payloads": []}, headers=stack.headers(Role.PARTNER, "200000000000001")
        )
    ).status_code == 403


# ----- the dev Temporal UI's codec credential (api/routes/codec.py DevUiCodecCredential) ---------


async def _through_credential_check(path: str, digest: str) -> dict:
    from api.routes.codec import DevUiCodecCredential

    seen: dict = {}

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        seen.update(
            path=scope["path"], raw_path=scope["raw_path"], valid=scope.get("state", {}).get("codec_ui_credential")
        )

    await DevUiCodecCredential(app, digest)(
        {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "state": {}}, None, None
    )
    return seen


async def test_the_dev_ui_credential_is_checked_and_stripped_from_the_path() -> None:
    import hashlib

    digest = hashlib.sha256(b"s3cret-of-this-run").hexdigest()
    good = await _through_credential_check("/codec/ui/s3cret-of-this-run/decode", digest)
    assert good == {"path": "/codec/ui/decode", "raw_path": b"/codec/ui/decode", "valid": True}
    bad = await _through_credential_check("/codec/ui/guess/decode", digest)
    assert bad == {"path": "/codec/ui/decode", "raw_path": b"/codec/ui/decode", "valid": False}, (
        "a guess is stripped too, and not valid"
    )
    unset = await _through_credential_check("/codec/ui/s3cret-of-this-run/decode", "")
    assert unset["valid"] is False and "s3cret" not in unset["path"], "outside dev (no digest) nothing is valid"
    other = await _through_credential_check("/codec/decode", digest)
    assert other["path"] == "/codec/decode" and other["valid"] is None


def test_the_dev_ui_credential_is_refused_outside_dev() -> None:
    from careflow.settings import Settings, UnsafeConfiguration
    from tests.careflow.test_fail_closed import GOOD

    settings = Settings(
        env="production",
        session_secret=GOOD["CAREFLOW_SESSION_SECRET"],
        codec_keys=GOOD["CAREFLOW_CODEC_KEYS"],
        cpr_hash_key=GOOD["CAREFLOW_CPR_HASH_KEY"],
        jwks="https://idp.example/jwks",
        jwt_issuer="https://idp.example",
        jwt_audience="careflow",
        codec_ui_credential_sha256="ab" * 32,
    )
    with pytest.raises(UnsafeConfiguration, match="CAREFLOW_CODEC_UI_CREDENTIAL_SHA256"):
        settings.refuse_unsafe("api")


def test_log_lines_never_carry_a_ui_credential() -> None:
    import logging

    from careflow.logs import RedactCodecCredential

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", "/codec/ui/s3cret/decode", "1.1", 200),
        None,
    )
    assert RedactCodecCredential().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "POST /codec/ui/***/decode HTTP/1.1" 200'
