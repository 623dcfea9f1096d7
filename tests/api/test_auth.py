"""Authentication and roles on every endpoint but the health checks."""

from __future__ import annotations

import pytest

from careflow.auth import Role
from tests.conftest import Stack, referral_payload

pytestmark = pytest.mark.e2e


async def test_no_token_is_401(stack: Stack) -> None:
    for method, path in [
        ("POST", "/referrals"),
        ("GET", "/flows"),
        ("GET", "/flows/x"),
        ("POST", "/fhir/$process-message"),
        ("POST", "/codec/decode"),
    ]:
        response = await stack.api.request(method, path)
        assert response.status_code == 401, path
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_bad_token_is_401(stack: Stack) -> None:
    response = await stack.api.get("/flows", headers={"Authorization": "Bearer cf1.forged.token"})
    assert response.status_code == 401


async def test_forged_expired_and_misaddressed_jwts_are_401(stack: Stack, tmp_path) -> None:  # noqa: ANN001
    """Each forgery against the running API (its verifier trusts the stack's dev JWKS)."""
    from datetime import timedelta

    from careflow.tokens import dev_issuer

    real = dev_issuer(stack.settings.data_dir, create=False)
    other = dev_issuer(tmp_path, create=True)  # another key, same kid scheme
    forged = {
        "expired": real.issue(Role.COORDINATOR, ttl=timedelta(seconds=-120)),
        "wrong-issuer": real.issue(Role.COORDINATOR, issuer="https://evil.example"),
        "wrong-audience": real.issue(Role.COORDINATOR, audience="another-api"),
        "wrong-key": other.issue(Role.COORDINATOR),
        "wrong-key-right-kid": _with_kid(other.issue(Role.COORDINATOR), real.kid),
        "too-long": real.issue(Role.COORDINATOR, ttl=timedelta(days=30)),
    }
    for case, bearer in forged.items():
        response = await stack.api.get("/flows", headers={"Authorization": f"Bearer {bearer}"})
        assert response.status_code == 401, case
        assert response.json()["resourceType"] == "OperationOutcome"
    assert (
        await stack.api.get("/flows", headers={"Authorization": f"Bearer {real.issue(Role.COORDINATOR)}"})
    ).status_code == 200


def _with_kid(token: str, kid: str) -> str:
    import json

    import jwt

    header, body, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(header))
    return ".".join([jwt.utils.base64url_encode(json.dumps({**claims, "kid": kid}).encode()).decode(), body, signature])


async def test_admin_does_not_act_as_a_partner(stack: Stack) -> None:
    response = await stack.api.post(
        "/fhir/$process-message",
        content=b"{}",
        headers={**stack.headers(Role.ADMIN), "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 403


async def test_wrong_role_is_403(stack: Stack) -> None:
    assert (
        await stack.api.post("/referrals", json=referral_payload(), headers=stack.headers(Role.COORDINATOR))
    ).status_code == 403
    assert (await stack.api.get("/flows", headers=stack.headers(Role.PARTNER, "200000000000001"))).status_code == 403
    assert (
        await stack.api.post(
            "/fhir/$process-message",
            content=b"{}",
            headers={**stack.headers(Role.CLINICIAN), "Content-Type": "application/fhir+json"},
        )
    ).status_code == 403
    assert (
        await stack.api.post("/codec/decode", json={"payloads": []}, headers=stack.headers(Role.CLINICIAN))
    ).status_code == 403


async def test_health_needs_no_token(stack: Stack) -> None:
    assert (await stack.api.get("/healthz")).status_code == 200
    ready = await stack.api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "database": "ok",
        "temporal": "ok",
        "workers": "ok",
        "relay": "ok",
    }


async def test_unknown_flow_is_404(stack: Stack) -> None:
    response = await stack.api.get("/flows/does-not-exist", headers=stack.headers(Role.COORDINATOR))
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"patient": {"cpr": "3213501234"}}, "patient.cpr"),
        ({"receiving_sor": "abc"}, "receiving_sor"),
        ({"reason": ""}, "reason"),
        ({"priority": "whenever"}, "priority"),
    ],
)
async def test_bad_referral_is_422_without_echoing_patient_data(stack: Stack, change: dict, field: str) -> None:
    body = {**referral_payload(), **change}
    response = await stack.api.post("/referrals", json=body, headers=stack.headers(Role.CLINICIAN))
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(field in issue["diagnostics"] for issue in outcome["issue"])
    assert "3213501234" not in response.text


async def test_unknown_receiver_is_422(stack: Stack) -> None:
    response = await stack.api.post(
        "/referrals", json=referral_payload(receiving_sor="999999999999999"), headers=stack.headers(Role.CLINICIAN)
    )
    assert response.status_code == 422
    assert "unknown organisation" in response.json()["issue"][0]["diagnostics"]


async def test_idempotency_key_starts_once(stack: Stack) -> None:
    headers = {**stack.headers(Role.CLINICIAN), "Idempotency-Key": "referral-test-123"}
    first = await stack.api.post("/referrals", json=referral_payload("0404505123"), headers=headers)
    second = await stack.api.post("/referrals", json=referral_payload("0404505123"), headers=headers)
    assert first.status_code == 202 and second.status_code == 409
    assert first.json()["url"] in second.json()["issue"][0]["diagnostics"]


async def test_retry_with_idempotency_key_starts_a_referral_whose_first_attempt_died(stack: Stack) -> None:
    """The API died between storing the flow and starting its workflow: the client's retry starts it."""
    import uuid

    from sqlmodel import Session

    from api.routes.referrals import IDEMPOTENCY_NAMESPACE
    from careflow.crypto import KeyRing, cpr_lookup_hash
    from store.db import make_engine
    from store.models import Flow
    from workflows.referral import ReferralPathwayWorkflow

    key = f"orphan-{uuid.uuid4()}"
    flow_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"test-clinician:{key}"))
    key_ring = KeyRing.parse(stack.settings.codec_keys)
    with Session(make_engine(stack.settings.sqlalchemy_url)) as session:
        session.add(
            Flow(
                id=flow_id,
                workflow_id=f"referral-{flow_id}",
                pathway="referral",
                referring_sor="100000000000001",
                receiving_sor="200000000000001",
                cpr_hash=cpr_lookup_hash("0606505123", stack.settings.cpr_hash_key),
                patient_enc=key_ring.encrypt_text("{}"),
                reason_enc=key_ring.encrypt_text("r"),
            )
        )
        session.commit()
    headers = {**stack.headers(Role.CLINICIAN), "Idempotency-Key": key}
    other_patient = await stack.api.post("/referrals", json=referral_payload("0707505123"), headers=headers)
    assert other_patient.status_code == 409 and "another flow" in other_patient.text
    retry = await stack.api.post("/referrals", json=referral_payload("0606505123"), headers=headers)
    assert retry.status_code == 202, retry.text
    assert retry.json()["id"] == flow_id
    result = await stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{flow_id}").result()
    assert result.status.value == "completed"
    again = await stack.api.post("/referrals", json=referral_payload("0606505123"), headers=headers)
    assert again.status_code == 409


async def test_openapi_describes_the_inbound_message_body(stack: Stack) -> None:
    spec = (await stack.api.get("/openapi.json")).json()
    body = spec["paths"]["/fhir/$process-message"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/fhir+json", "application/fhir+xml"}
    assert {"/referrals", "/flows", "/flows/{flow_id}", "/healthz", "/readyz"} <= set(spec["paths"])
