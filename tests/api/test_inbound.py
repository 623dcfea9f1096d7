"""Inbound messages: stored once, delivered once, answered the same; bad input gets an OperationOutcome."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from careflow.auth import Role
from messaging import build_message, to_json
from messaging.model import AppointmentContent, Envelope, MessageKind, Organization, PatientData
from store.db import make_engine
from store.models import InboundMessage
from tests.conftest import Stack, referral_payload, wait_for
from workflows.referral import ReferralPathwayWorkflow

pytestmark = pytest.mark.e2e

HOSPITAL = Organization(sor="200000000000001", ean="5790020000016", name="Kardiologisk afdeling, Demo Hospital")
GP = Organization(sor="100000000000001", ean="5790010000019", name="Lægerne Nørrebro (demo GP)")


def appointment(
    service_request_id: str, header_id: str | None = None, *, cpr: str = "0101505123", sender: Organization = HOSPITAL
) -> bytes:
    """The hospital's appointment for a referral (for the referral's patient: pass its CPR)."""
    envelope = Envelope(
        message_header_id=header_id or str(uuid.uuid4()),
        bundle_id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        sender=sender,
        receiver=GP,
        patient=PatientData(cpr=cpr, given_name="Testa", family_name="Syntetisk"),
    )
    content = AppointmentContent(service_request_id=service_request_id, start=datetime.now(UTC) + timedelta(days=3))
    return to_json(build_message(MessageKind.APPOINTMENT, envelope, content))


async def silent_referral(stack: Stack, cpr: str) -> dict:
    """A referral the hospital acknowledges but never answers: the test plays its replies.
    Replies stay off until the referral has reached the hospital (the send is asynchronous)."""
    simulator = stack.simulator_app.state.simulator
    simulator.behaviour.reply = False
    try:
        accepted = (
            await stack.api.post("/referrals", json=referral_payload(cpr), headers=stack.headers(Role.CLINICIAN))
        ).json()

        async def received() -> bool:
            return any(sr == accepted["id"] for sr, _event in simulator.headers_per_step)

        await wait_for(received)
    finally:
        simulator.behaviour.reply = True
    return accepted


def post(stack: Stack, body: bytes, content_type: str = "application/fhir+json", sor: str = HOSPITAL.sor):  # noqa: ANN201
    return stack.api.post(
        "/fhir/$process-message",
        content=body,
        headers={**stack.headers(Role.PARTNER, sor), "Content-Type": content_type},
    )


def operation_outcome(response) -> dict:  # noqa: ANN001
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"] and body["issue"][0]["diagnostics"]
    return body


async def test_duplicate_is_delivered_once_and_answered_the_same(stack: Stack) -> None:
    accepted = await silent_referral(stack, "0303505123")
    body = appointment(accepted["id"], cpr="0303505123")
    first = await post(stack, body)
    second = await post(stack, body)
    assert first.status_code == second.status_code == 202
    assert first.content == second.content
    engine = make_engine(stack.settings.sqlalchemy_url)
    with Session(engine) as session:
        rows = session.exec(
            select(InboundMessage).where(
                InboundMessage.flow_id == accepted["id"], InboundMessage.event_code == MessageKind.APPOINTMENT.value
            )
        ).all()
    assert len(rows) == 1
    handle = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{accepted['id']}")

    async def appointment_applied() -> bool:
        state = await handle.query(ReferralPathwayWorkflow.pathway_state)
        return state.step == "test_result"

    await wait_for(appointment_applied)
    state = await handle.query(ReferralPathwayWorkflow.pathway_state)
    assert state.received_header_ids.count(rows[0].message_header_id) == 1
    # The acknowledgement went back to the hospital once.
    await wait_for(lambda: _ack_sent(engine, rows[0].id))
    await handle.terminate("test finished")


async def _ack_sent(engine, row_id: int) -> bool:  # noqa: ANN001
    with Session(engine) as session:
        return session.get(InboundMessage, row_id).ack_sent_at is not None


async def test_message_for_unknown_flow_is_held_for_triage(stack: Stack) -> None:
    """Matched to nothing: kept for a coordinator (who attaches, reprocesses or rejects it); the
    acknowledgement waits for that decision."""
    response = await post(stack, appointment(str(uuid.uuid4())))
    assert response.status_code == 202
    assert "held for a coordinator" in response.json()["issue"][0]["diagnostics"]
    engine = make_engine(stack.settings.sqlalchemy_url)
    with Session(engine) as session:
        row = session.exec(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
    assert (row.delivery_status, row.status_reason, row.ack_code, row.flow_id) == (
        "triage",
        "matches no flow careflow knows",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("body", "content_type", "status", "expected"),
    [
        (b'{"resourceType": "Bundle", "type": ', "application/fhir+json", 400, ""),
        (b"<not-json/>", "text/plain", 415, "content type"),
        (
            b'{"resourceType": "Bundle", "id": "x", "type": "message", '
            b'"entry": [{"resource": {"resourceType": "Patient", "id": "p"}}]}',
            "application/fhir+json",
            400,
            "",
        ),
        (b'{"resourceType": "Patient", "id": "p"}', "application/fhir+json", 400, ""),
    ],
    ids=["malformed-json", "wrong-content-type", "missing-messageheader", "not-a-bundle"],
)
async def test_bad_input_gets_operation_outcome(
    stack: Stack, body: bytes, content_type: str, status: int, expected: str
) -> None:
    response = await post(stack, body, content_type)
    assert response.status_code == status
    outcome = operation_outcome(response)
    assert expected.lower() in str(outcome).lower()


async def test_partner_cannot_send_as_another_organisation(stack: Stack) -> None:
    response = await post(stack, appointment(str(uuid.uuid4())), sor="300000000000001")
    assert response.status_code == 403
    assert "sender" in operation_outcome(response)["issue"][0]["diagnostics"]


async def test_xml_message_is_accepted_like_json(stack: Stack) -> None:
    accepted = await silent_referral(stack, "0505505123")
    import json as _json

    from messaging import from_xml, to_xml

    bundle = _json.loads(appointment(accepted["id"], cpr="0505505123"))
    xml = to_xml(bundle)
    assert from_xml(xml)["id"] == bundle["id"]
    response = await post(stack, xml, "application/fhir+xml; charset=utf-8")
    assert response.status_code == 202, response.text
    handle = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{accepted['id']}")

    async def applied() -> bool:
        return (await handle.query(ReferralPathwayWorkflow.pathway_state)).step == "test_result"

    await wait_for(applied)
    await handle.terminate("test finished")


async def test_a_message_for_an_organisation_careflow_does_not_act_for_is_refused(stack: Stack) -> None:
    """Misrouted: the lab's message to the municipality reached careflow, which does not act for it."""
    municipality = Organization(sor="400000000000001", ean="5790040000010", name="Demo Kommune Hjemmepleje")
    envelope = Envelope(
        message_header_id=str(uuid.uuid4()),
        bundle_id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        sender=HOSPITAL,
        receiver=municipality,
        patient=PatientData(cpr="0101505123", given_name="Testa", family_name="Syntetisk"),
    )
    content = AppointmentContent(service_request_id=str(uuid.uuid4()), start=datetime.now(UTC) + timedelta(days=3))
    response = await post(stack, to_json(build_message(MessageKind.APPOINTMENT, envelope, content)))
    assert response.status_code == 422
    assert "careflow does not receive messages for SOR 400000000000001" in response.text
    assert operation_outcome(response)["issue"][0]["expression"] == ["Bundle.entry[0].resource.destination[0].receiver"]
