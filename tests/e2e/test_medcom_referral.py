"""The referral on MedCom's draft model, end to end on a real dev server, worker, API and simulated
hospitals, over both transports (FHIR $process-message and VANSEnvelopes): accepted, rejected,
forwarded and reprioritised triage, a rescheduled booking, a regarding-referral question each way,
the referral updated and cancelled."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlmodel import Session, select

from careflow.auth import Role
from messaging import parse_message
from messaging import referral_draft as draft
from store.db import make_engine
from store.models import InboundMessage
from tests.conftest import Stack, record_history
from tests.e2e.flows import sent_bundles, view_when
from workflows.medcom_referral import MedcomReferralPathway

pytestmark = pytest.mark.e2e

GP, HOSPITAL, SECOND_HOSPITAL = "100000000000001", "200000000000001", "200000000000003"


@pytest_asyncio.fixture
async def partners(any_stack: Stack) -> AsyncIterator[Stack]:
    """The session's stack over each transport (FHIR $process-message, VANSEnvelopes), its simulated
    partners' behaviour restored after the test."""
    simulator = any_stack.simulator_app.state.simulator
    before = simulator.behaviour
    envelopes = simulator.stats().envelopes_received
    try:
        yield any_stack
    finally:
        simulator.behaviour = before
    if any_stack.transport == "vans":
        assert simulator.stats().envelopes_received > envelopes, "the partners received VANSEnvelopes"


def behave(stack: Stack, **changes: object) -> None:
    simulator = stack.simulator_app.state.simulator
    simulator.behaviour = simulator.behaviour.model_copy(update=changes)


async def start(stack: Stack, cpr: str, track: str = "standard") -> str:
    body = {
        "patient": {"cpr": cpr},
        "referring_sor": GP,
        "receiving_sor": HOSPITAL,
        "reason": "Brystsmerter ved anstrengelse",
        "priority": "routine",
        "track": track,
    }
    response = await stack.api.post("/pathways/medcom-referral/flows", json=body, headers=stack.headers(Role.CLINICIAN))
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def report(stack: Stack, flow_id: str, event: str, data: dict | None = None) -> None:
    response = await stack.api.post(
        f"/flows/{flow_id}/events/{event}",
        json={"reason": "test", "data": data or {}},
        headers=stack.headers(Role.CLINICIAN),
    )
    assert response.status_code == 200, response.text


async def treated(stack: Stack, flow_id: str) -> dict:
    await view_when(stack, flow_id, lambda f: f["step"] == "treatment_started")
    await report(stack, flow_id, "treatment-started")
    return await view_when(stack, flow_id, lambda f: f["status"] == "completed")


def thread_of(stack: Stack, header_id: str) -> str | None:
    with Session(make_engine(stack.settings.sqlalchemy_url)) as session:
        row = session.exec(select(InboundMessage).where(InboundMessage.message_header_id == header_id)).one()
        return row.thread_id


def communication(bundle: dict) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Communication")


def received_questions(found: dict) -> int:
    return sum(1 for code, _ in inbound(found) if code == "care-communication-message")


def inbound(found: dict) -> list[tuple[str, str]]:
    return [(m["event_code"], m["counterpart_sor"]) for m in found["messages"] if m["direction"] == "in"]


async def test_accepted_with_a_rescheduled_booking_runs_to_treatment(partners: Stack) -> None:
    behave(partners, outcome="accepted", reschedule=True)
    flow_id = await start(partners, "0505505125", track="cancer")
    done = await treated(partners, flow_id)
    timeline = [(e["kind"], e["step"], e["detail"]) for e in done["timeline"]]
    assert ("branch", "triage") in [(k, s) for k, s, _ in timeline]
    assert any(k == "branch" and "accepted" in d for k, s, d in timeline)
    bookings = [d for k, s, d in timeline if k == "received" and s == "booking"]
    assert len(bookings) == 2 and "replaces the earlier one" in bookings[1] and "rescheduled" in bookings[1]
    out = [m for m in done["messages"] if m["direction"] == "out"]
    assert [m["event_code"] for m in out] == [draft.NEW_REFERRAL] and out[0]["ack_code"] == "ok"
    assert (draft.TRIAGE, HOSPITAL) in inbound(done) and (draft.BOOKING, HOSPITAL) in inbound(done)
    assert all(
        m["ack_code"] == "ok"
        for m in done["messages"]
        if m["direction"] == "in" and m["event_code"] != "acknowledgement-message"
    )
    assert done["open_escalations"] == 0
    handle = partners.client.get_workflow_handle_for(MedcomReferralPathway.run, f"medcom-referral-{flow_id}")
    state = await handle.query(MedcomReferralPathway.pathway_state)
    assert state.rules_version == "2026-1" and state.status.value == "completed"
    if partners.transport == "process-message":
        await record_history(partners.client, handle.id, "medcom-referral-accepted-rescheduled")


async def test_rejected_triage_escalates_with_the_receivers_reason_and_ends(partners: Stack) -> None:
    behave(partners, outcome="rejected")
    flow_id = await start(partners, "0606505126")
    done = await view_when(partners, flow_id, lambda f: f["status"] == "completed" or f["step"] == "completed")
    escalation = next(e for e in done["timeline"] if e["kind"] == "escalated")
    assert escalation["step"] == "triage" and "rejected" in escalation["detail"]
    assert "opfylder ikke visitationskriterierne" in escalation["detail"], "the receiver's reason is named"
    assert not any(code == draft.BOOKING for code, _ in inbound(done))
    if partners.transport == "process-message":
        workflow_id = f"medcom-referral-{flow_id}"
        await partners.client.get_workflow_handle(workflow_id).result()
        await record_history(partners.client, workflow_id, "medcom-referral-rejected")


async def test_forwarded_triage_follows_the_referral_to_the_new_receiver(partners: Stack) -> None:
    behave(partners, outcome="forwarded", forward_to=SECOND_HOSPITAL)
    flow_id = await start(partners, "0707505127")
    done = await treated(partners, flow_id)
    forwarded = next(e for e in done["timeline"] if e["kind"] == "forwarded")
    assert f"SOR {HOSPITAL}" in forwarded["detail"] and SECOND_HOSPITAL in forwarded["detail"]
    # the new receiver decides, books and plans; careflow accepted it from then on
    messages = inbound(done)
    assert (draft.TRIAGE, HOSPITAL) in messages and (draft.TRIAGE, SECOND_HOSPITAL) in messages
    assert (draft.BOOKING, SECOND_HOSPITAL) in messages and (draft.BOOKING, HOSPITAL) not in messages
    assert all(m["status"] == "delivered" for m in done["messages"] if m["direction"] == "in")
    assert done["open_escalations"] == 0
    # an update after the forward goes to the new receiver
    handle = partners.client.get_workflow_handle_for(MedcomReferralPathway.run, f"medcom-referral-{flow_id}")
    state = await handle.query(MedcomReferralPathway.pathway_state)
    assert state.party_changes == {"performer": SECOND_HOSPITAL}
    if partners.transport == "process-message":
        await record_history(partners.client, handle.id, "medcom-referral-forwarded")


async def test_regarding_referral_questions_both_ways_are_answered(partners: Stack) -> None:
    behave(partners, outcome="accepted", ask_question=True)
    flow_id = await start(partners, "0808505128")
    # the receiver's question arrives and waits for careflow's answer
    asked = await view_when(partners, flow_id, lambda f: received_questions(f) == 1)
    assert asked["open_escalations"] == 0
    await report(partners, flow_id, "answer-question", {"text": "Ja, patienten møder fastende."})
    # careflow's own question: the receiver answers in the same thread, which awaits no answer
    await report(partners, flow_id, "ask-question", {"text": "Hvornår forventes svar?", "priority": "asap"})

    await view_when(partners, flow_id, lambda f: received_questions(f) == 2)
    done = await treated(partners, flow_id)
    out = [m["event_code"] for m in done["messages"] if m["direction"] == "out"]
    assert out.count("care-communication-message") == 2 and all(
        m["ack_code"] == "ok" for m in done["messages"] if m["direction"] == "out"
    )
    handle = partners.client.get_workflow_handle_for(MedcomReferralPathway.run, f"medcom-referral-{flow_id}")
    state = await handle.query(MedcomReferralPathway.pathway_state)
    question = next(s for s in state.steps if s.name == "question")
    # careflow's answer keeps the receiver's thread and is recorded as a reply to its question;
    # its own question starts a thread of its own
    sent = [bundle for _, bundle in sent_bundles(partners, flow_id, "care-communication-message")]
    asked_by_receiver = next(
        m for m in done["messages"] if m["direction"] == "in" and m["event_code"] == "care-communication-message"
    )
    answer, own = sent
    assert parse_message(answer).correlation.thread_id == thread_of(partners, asked_by_receiver["message_header_id"])
    assert [(p.activity, p.previous_header_id) for p in parse_message(answer).provenance] == [
        ("reply-message", asked_by_receiver["message_header_id"])
    ]
    assert [p.activity for p in parse_message(own).provenance] == ["new-message"]
    assert uuid.UUID(parse_message(own).correlation.thread_id).version == 4, "a new thread's id is a UUID v4"
    assert communication(own)["priority"] == "asap" and communication(answer).get("priority") is None
    assert question.status.value == "done", "every question the receiver asked is answered"
    assert not state.escalations
    if partners.transport == "process-message":
        await record_history(partners.client, handle.id, "medcom-referral-questions")


async def test_reprioritised_triage_awaits_the_decision_still(partners: Stack) -> None:
    behave(partners, outcome="reprioritised")
    flow_id = await start(partners, "0909505129")
    done = await treated(partners, flow_id)
    branches = [e["detail"] for e in done["timeline"] if e["kind"] == "branch"]
    assert branches[0].startswith("outcome: reprioritised") and "priority urgent" in branches[0]
    assert branches[1].startswith("outcome: accepted")
    assert done["open_escalations"] == 0


async def test_the_referral_is_updated_then_cancelled_by_the_referrer(partners: Stack) -> None:
    behave(partners, quiet_partners=[HOSPITAL], quiet_in=["medcom-referral"])  # acknowledges, never decides
    flow_id = await start(partners, "1010505130")
    await view_when(partners, flow_id, lambda f: f["step"] == "triage")
    refused = await partners.api.post(
        f"/flows/{flow_id}/events/update-referral", json={"data": {}}, headers=partners.headers(Role.CLINICIAN)
    )
    assert refused.status_code == 409 and "an update names what changed" in refused.text
    await report(partners, flow_id, "update-referral", {"priority": "urgent", "note": "Forværring"})
    await view_when(partners, flow_id, lambda f: len([m for m in f["messages"] if m["direction"] == "out"]) == 2)
    await report(partners, flow_id, "cancel-referral", {"reason": "Patienten ønsker ikke udredning"})
    done = await view_when(partners, flow_id, lambda f: f["status"] in ("completed", "cancelled"))
    out = [(m["event_code"], m["counterpart_sor"], m["ack_code"]) for m in done["messages"] if m["direction"] == "out"]
    assert out == [
        (draft.NEW_REFERRAL, HOSPITAL, "ok"),
        (draft.UPDATE_REFERRAL, HOSPITAL, "ok"),
        (draft.CANCEL_REFERRAL, HOSPITAL, "ok"),
    ]
    assert partners.simulator_app.state.simulator.received[draft.CANCEL_REFERRAL] >= 1
