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
