"""The pathway platform on the real stack (dev server, worker, API, simulated partners over HTTP):
pathways declared outside careflow's core are listed, started through the generic API, answered by
the simulator from their declarations, and driven by events; inbound messages start pathways once;
partners are confined to their own flows; what matches nothing waits in the triage queue."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from careflow.auth import Role
from messaging import build_message, to_json
from messaging.model import AckCode, CareCommunicationContent, Envelope, MessageKind, Organization, PatientData
from store.db import make_engine
from store.models import AuditEntry, Flow, InboundMessage, OutboundMessage, sealed_as
from tests.api.test_inbound import GP, HOSPITAL, appointment, post, silent_referral
from tests.conftest import Stack, record_history, referral_payload, wait_for
from workflows.models import PathwayState

pytestmark = pytest.mark.e2e

LAB = Organization(sor="300000000000001", ean="5790030000013", name="Klinisk Biokemisk Afdeling, Demo Lab")


async def _state(stack: Stack, workflow_id: str) -> PathwayState:
    from workflows.steps import PathwayWorkflow

    return await stack.client.get_workflow_handle(workflow_id).query(PathwayWorkflow.pathway_state)


def _rows(stack: Stack, query):  # noqa: ANN001, ANN202
    engine = make_engine(stack.settings.sqlalchemy_url)
    try:
        with Session(engine) as session:
            return session.exec(query).all()
    finally:
        engine.dispose()


async def _flow_status(stack: Stack, flow_id: str, wanted: str, timeout: float = 40) -> dict:
    async def reached() -> dict | None:
        body = (await stack.api.get(f"/flows/{flow_id}", headers=stack.headers(Role.COORDINATOR))).json()
        return body if body.get("status") == wanted else None

    return await wait_for(reached, timeout=timeout, interval=0.3)


async def test_get_pathways_lists_every_declaration(stack: Stack) -> None:
    response = await stack.api.get("/pathways", headers=stack.headers(Role.CLINICIAN))
    assert response.status_code == 200
    pathways = {p["name"]: p for p in response.json()}
    assert {"referral", "lab-order", "consultation", "dialogue", "booking"} <= set(pathways)
    referral = pathways["referral"]
    assert [s["name"] for s in referral["steps"]] == ["referral", "appointment", "test_result", "treatment_plan"]
    assert referral["steps"][1] == {
        "name": "appointment",
        "kind": "await-reply",
        "message": "careflow-appointment-message",
        "message_label": "appointment (indkaldelse)",
        "party": "performer",
        "deadline": {"timing": "appointment_deadline", "seconds": 30 * 86400.0},
        "deadline_from": None,
        "legal": [],
    }
    assert pathways["stay"]["alongside"][0] == {
        "name": "update",
        "kind": "on-event",
        "event": "update",
        "title": "update",
        "roles": ["clinician", "coordinator"],
        "message": "care-communication-message",
        "message_label": "care communication (korrespondance)",
        "party": "performer",
        "after": None,
        "ends": False,
    }
    assert pathways["forwarding"]["legal_rules"] == ["cancer-assessment-start", "patient-informed"]
    assert (
        "receiving_sor" in referral["input_schema"]["properties"] and "patient" in referral["input_schema"]["required"]
    )
    assert pathways["dialogue"]["starts"] == [
        {"message": "care-communication-message", "message_label": "care communication (korrespondance)"}
    ]
    assert pathways["dialogue"]["api_start"] is False
    consultation = {s["name"]: s for s in pathways["consultation"]["steps"]}
    assert [o["outcome"] for o in consultation["decision"]["outcomes"]] == ["booked", "declined"]
    assert consultation["summary"]["roles"] == ["clinician"]


async def test_start_refusals_name_the_problem(stack: Stack) -> None:
    headers = stack.headers(Role.CLINICIAN)
    unknown = await stack.api.post("/pathways/no-such-pathway/flows", json={}, headers=headers)
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
    not_by_api = await stack.api.post("/pathways/dialogue/flows", json={}, headers=headers)
    assert not_by_api.status_code == 404
    body = {
        "patient": {"cpr": "0101505123"},
        "requester_sor": "100000000000001",
        "reason": "Lipidstatus",
    }  # lab_sor missing
    missing = await stack.api.post("/pathways/lab-order/flows", json=body, headers=headers)
    assert missing.status_code == 422
    issue = missing.json()["issue"][0]
    assert issue["expression"] == ["lab_sor"] and "lab_sor" in issue["diagnostics"]
    bad_cpr = await stack.api.post(
        "/pathways/lab-order/flows",
        json={**body, "lab_sor": LAB.sor, "patient": {"cpr": "3213505123"}},
        headers=headers,
    )
    assert bad_cpr.status_code == 422 and bad_cpr.json()["issue"][0]["expression"] == ["patient.cpr"]
    assert "3213505123" not in bad_cpr.text, "never echo a CPR"
    wrong_kind = await stack.api.post(
        "/pathways/lab-order/flows", json={**body, "lab_sor": HOSPITAL.sor}, headers=headers
    )
    assert wrong_kind.status_code == 422 and "must be a lab" in wrong_kind.text


async def test_a_pathway_declared_outside_the_core_runs_end_to_end(stack: Stack) -> None:
    """The tutorial's lab order: started through the generic API, answered by the simulated lab
    from the declaration alone (a test result, nothing else), shown in the console."""
    body = {
        "patient": {"cpr": "0202505123", "given_name": "Testa"},
        "requester_sor": GP.sor,
        "lab_sor": LAB.sor,
        "reason": "Lipidstatus",
    }
    response = await stack.api.post("/pathways/lab-order/flows", json=body, headers=stack.headers(Role.CLINICIAN))
    assert response.status_code == 202, response.text
    flow_id = response.json()["id"]
    assert response.headers["Location"].endswith(f"/flows/{flow_id}")
    detail = await _flow_status(stack, flow_id, "completed")
    state = await _state(stack, f"lab-order-{flow_id}")
    assert detail["pathway"] == "lab-order" and [(s.name, s.status.value) for s in state.steps] == [
        ("order", "done"),
        ("result", "done"),
    ]
    received = _rows(
        stack, select(InboundMessage.event_code, InboundMessage.sender_sor).where(InboundMessage.flow_id == flow_id)
    )
    assert sorted(received) == sorted([("acknowledgement-message", LAB.sor), ("careflow-test-result-message", LAB.sor)])
    sent = _rows(
        stack,
        select(OutboundMessage.event_code, OutboundMessage.receiver_sor).where(OutboundMessage.flow_id == flow_id),
    )
    assert sent == [("careflow-referral-message", LAB.sor)]


async def test_a_branch_and_an_event_drive_a_declared_pathway(stack: Stack) -> None:
    """consultation: the hospital books (the first outcome), the clinician reports the patient seen,
    the summary goes out and is acknowledged."""
    body = {"patient": {"cpr": "0303505124"}, "gp_sor": GP.sor, "hospital_sor": HOSPITAL.sor, "reason": "Vurdering"}
    flow_id = (
        await stack.api.post("/pathways/consultation/flows", json=body, headers=stack.headers(Role.CLINICIAN))
    ).json()["id"]
    workflow_id = f"consultation-{flow_id}"

    async def at_summary() -> bool:
        return (await _state(stack, workflow_id)).step == "summary"

    await wait_for(at_summary, timeout=40)
    as_partner = await stack.api.post(
        f"/flows/{flow_id}/events/patient-seen", json={}, headers=stack.headers(Role.PARTNER, HOSPITAL.sor)
    )
    assert as_partner.status_code == 403
    unknown = await stack.api.post(
        f"/flows/{flow_id}/events/discharged", json={}, headers=stack.headers(Role.CLINICIAN)
    )
    assert unknown.status_code == 404 and "patient-seen" in unknown.text
    seen = await stack.api.post(
        f"/flows/{flow_id}/events/patient-seen",
        json={"reason": "set i ambulatoriet", "data": {"text": "Patienten er set, ingen fund."}},
        headers=stack.headers(Role.CLINICIAN),
    )
    assert seen.status_code == 200, seen.text
    again = await stack.api.post(
        f"/flows/{flow_id}/events/patient-seen", json={}, headers=stack.headers(Role.CLINICIAN)
    )
    assert again.status_code == 409
    detail = await _flow_status(stack, flow_id, "completed")
    kinds = [e["kind"] for e in detail["timeline"]]
    assert "branch" in kinds and "event" in kinds
    sent = _rows(stack, select(OutboundMessage.event_code).where(OutboundMessage.flow_id == flow_id))
    assert sent == ["careflow-referral-message", "care-communication-message"]
    await record_history(stack.client, workflow_id, "consultation-booked-seen")


def _care_communication(header_id: str, cpr: str, thread_id: str | None = None) -> bytes:
    envelope = Envelope(
        message_header_id=header_id,
        bundle_id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        sender=HOSPITAL,
        receiver=GP,
        patient=PatientData(cpr=cpr, given_name="Testa"),
    )
    content = CareCommunicationContent(
        communication_id=thread_id or str(uuid.uuid4()), text="Patienten er udskrevet i dag."
    )
    return to_json(build_message(MessageKind.CARE_COMMUNICATION, envelope, content))


async def test_an_inbound_trigger_posted_three_times_at_once_starts_one_pathway(stack: Stack) -> None:
    header_id = str(uuid.uuid4())
    body = _care_communication(header_id, "0404505125")
    answers = await asyncio.gather(*(post(stack, body) for _ in range(3)))
    assert [a.status_code for a in answers] == [202, 202, 202]
    flows = _rows(stack, select(Flow).where(Flow.pathway == "dialogue"))
    [flow] = [
        f
        for f in flows
        if _rows(stack, select(InboundMessage.flow_id).where(InboundMessage.message_header_id == header_id)) == [f.id]
    ]
    state = await wait_for(lambda: _state_or_none(stack, flow.workflow_id), timeout=30)
    assert state.received_header_ids == [header_id] and state.step == "answer"
    listed = (
        await stack.api.get("/flows", params={"pathway": "dialogue"}, headers=stack.headers(Role.COORDINATOR))
    ).json()
    assert flow.id in [f["id"] for f in listed["items"]]
    answered = await stack.api.post(
        f"/flows/{flow.id}/events/answered",
        json={"data": {"text": "Tak, vi følger op."}},
        headers=stack.headers(Role.CLINICIAN),
    )
    assert answered.status_code == 200
    await _flow_status(stack, flow.id, "completed")
    await record_history(stack.client, flow.workflow_id, "dialogue-started-by-message")


async def _state_or_none(stack: Stack, workflow_id: str) -> PathwayState | None:
    try:
        return await _state(stack, workflow_id)
    except Exception:  # not started yet
        return None


async def test_partners_are_confined_to_their_own_flows(stack: Stack) -> None:
    accepted = await silent_referral(stack, "0505505126")
    flow_id = accepted["id"]
    # the lab posts an appointment the referral awaits from the hospital
    from_lab = await post(stack, appointment(flow_id, cpr="0505505126", sender=LAB), sor=LAB.sor)
    assert from_lab.status_code == 422
    assert f"expected from SOR {HOSPITAL.sor}, not SOR {LAB.sor}" in from_lab.json()["issue"][0]["diagnostics"]
    # the hospital posts an appointment for another patient
    other_patient = await post(stack, appointment(flow_id, cpr="0606505127"))
    assert other_patient.status_code == 422 and "another patient" in other_patient.text
    # the lab acknowledges the referral that went to the hospital
    not_receiver = await post(stack, _acknowledgement_by(stack, flow_id, LAB), sor=LAB.sor)
    assert (
        not_receiver.status_code == 422
        and "only the receiver of message" in not_receiver.text
        and f"SOR {HOSPITAL.sor}" in not_receiver.text
    )
    rows = _rows(
        stack,
        select(InboundMessage).where(InboundMessage.flow_id == flow_id, InboundMessage.delivery_status == "rejected"),
    )
    assert len(rows) == 3, "stored, kept with their flow, never applied"
    assert all(r.status_reason for r in rows)
    clinical = [r for r in rows if r.event_code != "acknowledgement-message"]
    assert all(r.ack_code == "fatal-error" for r in clinical)
    state = await _state(stack, f"referral-{flow_id}")
    assert not set(state.received_header_ids) & {r.message_header_id for r in rows}
    await stack.client.get_workflow_handle(f"referral-{flow_id}").terminate("test finished")


def _acknowledgement_by(stack: Stack, flow_id: str, organisation: Organization) -> bytes:
    """An ok acknowledgement of the flow's referral, as if `organisation` (not its receiver) sent it."""
    import json

    from careflow.crypto import KeyRing
    from messaging import build_acknowledgement

    [sent] = _rows(stack, select(OutboundMessage).where(OutboundMessage.flow_id == flow_id))
    referral = json.loads(
        KeyRing.parse(stack.settings.codec_keys).decrypt_text(
            sent.body_enc, sealed_as(OutboundMessage, "body_enc", sent.bundle_id)
        )
    )
    ack = build_acknowledgement(
        referral,
        code=AckCode.OK,
        message_header_id=str(uuid.uuid4()),
        bundle_id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
    )
    text = json.dumps(ack).replace(HOSPITAL.sor, organisation.sor).replace(HOSPITAL.ean, organisation.ean)
    return text.encode()


async def test_triage_attach_reprocess_and_reject(stack: Stack) -> None:
    coordinator = stack.headers(Role.COORDINATOR)
    accepted = await silent_referral(stack, "0707505128")
    flow_id = accepted["id"]
    # an appointment for a ServiceRequest careflow does not know: held, not answered yet
    stray = appointment(str(uuid.uuid4()), cpr="0707505128")
    assert (await post(stack, stray)).status_code == 202
    listed = (await stack.api.get("/triage", headers=coordinator)).json()
    held = [
        m
        for m in listed
        if m["event_code"] == "careflow-appointment-message" and m["reason"] == "matches no flow careflow knows"
    ]
    assert held
    message_id = held[-1]["id"]
    still = await stack.api.post(f"/triage/{message_id}/reprocess", headers=coordinator)
    assert still.status_code == 409 and "matches no running flow" in still.text
    as_clinician = await stack.api.post(
        f"/triage/{message_id}/attach", json={"flow_id": flow_id, "reason": "x"}, headers=stack.headers(Role.CLINICIAN)
    )
    assert as_clinician.status_code == 403
    attached = await stack.api.post(
        f"/triage/{message_id}/attach",
        json={"flow_id": flow_id, "reason": "the hospital used an old order number"},
        headers=coordinator,
    )
    assert attached.status_code == 200, attached.text

    async def applied() -> bool:
        return (await _state(stack, f"referral-{flow_id}")).step == "test_result"

    await wait_for(applied)
    # another stray message, rejected: the sender gets a fatal-error acknowledgement
    assert (await post(stack, appointment(str(uuid.uuid4()), cpr="0707505128"))).status_code == 202
    second = [m for m in (await stack.api.get("/triage", headers=coordinator)).json() if m["id"] != message_id][-1]
    rejected = await stack.api.post(
        f"/triage/{second['id']}/reject", json={"reason": "unknown order"}, headers=coordinator
    )
    assert rejected.status_code == 200
    assert second["id"] not in [m["id"] for m in (await stack.api.get("/triage", headers=coordinator)).json()]

    async def acknowledged() -> InboundMessage | None:
        [row] = _rows(stack, select(InboundMessage).where(InboundMessage.id == second["id"]))
        return row if row.ack_sent_at is not None else None

    row = await wait_for(acknowledged, timeout=20)
    assert (row.delivery_status, row.ack_code, row.triaged_by) == ("rejected", "fatal-error", "test-coordinator")
    audit = _rows(
        stack,
        select(AuditEntry.action, AuditEntry.detail).where(AuditEntry.action.in_(["triage-attach", "triage-reject"])),
    )
    assert any(a == "triage-attach" and "attached to flow" in d for a, d in audit) and any(
        a == "triage-reject" and "unknown order" in d for a, d in audit
    )
    await stack.client.get_workflow_handle(f"referral-{flow_id}").terminate("test finished")


async def test_referrals_alias_still_starts_the_referral_pathway(stack: Stack) -> None:
    response = await stack.api.post(
        "/referrals", json=referral_payload("0808505129"), headers=stack.headers(Role.CLINICIAN)
    )
    assert response.status_code == 202
    flow = (await stack.api.get(f"/flows/{response.json()['id']}", headers=stack.headers(Role.COORDINATOR))).json()
    assert flow["pathway"] == "referral"
    wrong = await stack.api.post(
        "/referrals",
        json={**referral_payload("0808505129"), "pathway": "consultation"},
        headers=stack.headers(Role.CLINICIAN),
    )
    assert wrong.status_code == 422 and "takes a referral" in wrong.text


async def test_the_tutorials_own_message_type_travels_end_to_end(stack: Stack) -> None:
    """Part 2 of the tutorial: the home-care request (a message type declared in the pathway's own
    module) is built, sent to the directory's municipality, acknowledged, and answered with a
    CareCommunication by the simulated municipality, which read the declaration."""
    body = {
        "patient": {"cpr": "1312505132"},
        "gp_sor": GP.sor,
        "need": "Hjælp til medicin morgen og aften",
        "start": "2026-12-01",
    }
    response = await stack.api.post(
        "/pathways/home-care-request/flows", json=body, headers=stack.headers(Role.CLINICIAN)
    )
    assert response.status_code == 202, response.text
    flow_id = response.json()["id"]
    await _flow_status(stack, flow_id, "completed")
    sent = _rows(
        stack,
        select(OutboundMessage.event_code, OutboundMessage.receiver_sor).where(OutboundMessage.flow_id == flow_id),
    )
    assert sent == [("careflow-home-care-request-message", "400000000000001")]
    received = _rows(stack, select(InboundMessage.event_code).where(InboundMessage.flow_id == flow_id))
    assert sorted(received) == ["acknowledgement-message", "care-communication-message"]
    pathways = {p["name"]: p for p in (await stack.api.get("/pathways", headers=stack.headers(Role.CLINICIAN))).json()}
    assert pathways["home-care-request"]["steps"][0]["message_label"] == "home-care request (anmodning om hjemmepleje)"


async def test_a_message_in_the_same_thread_goes_to_the_flow_it_continues(stack: Stack) -> None:
    """A second CareCommunication in a thread careflow knows continues that flow (correlated by the
    thread id), instead of starting another."""
    thread = str(uuid.uuid4())
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert (await post(stack, _care_communication(first, "1412505133", thread))).status_code == 202
    [flow_id] = _rows(stack, select(InboundMessage.flow_id).where(InboundMessage.message_header_id == first))
    dialogues = len(_rows(stack, select(Flow.id).where(Flow.pathway == "dialogue")))
    assert (await post(stack, _care_communication(second, "1412505133", thread))).status_code == 202
    assert _rows(stack, select(InboundMessage.flow_id).where(InboundMessage.message_header_id == second)) == [flow_id]
    assert len(_rows(stack, select(Flow.id).where(Flow.pathway == "dialogue"))) == dialogues, "no second flow"

    async def both_applied() -> bool:
        state = await _state_or_none(stack, f"dialogue-{flow_id}")
        return state is not None and {first, second} <= set(state.received_header_ids)

    await wait_for(both_applied, timeout=30)


async def test_legal_rules_are_pinned_at_start_and_a_coordinator_applies_another_version(stack: Stack) -> None:
    """forwarding keeps legal deadlines: the version in force at start stays with the flow; applying
    a version is a coordinator's, audited, and refused when it is no change or unknown."""
    body = {"patient": {"cpr": "0303505124"}, "gp_sor": GP.sor, "hospital_sor": HOSPITAL.sor, "track": "cancer"}
    started = await stack.api.post("/pathways/forwarding/flows", json=body, headers=stack.headers(Role.CLINICIAN))
    assert started.status_code == 202, started.text
    flow_id = started.json()["id"]
    state = await _state(stack, f"forwarding-{flow_id}")
    assert state.rules_version == "2026-1"
    as_clinician = await stack.api.post(
        f"/flows/{flow_id}/rules", json={"version": "2026-1", "reason": "x"}, headers=stack.headers(Role.CLINICIAN)
    )
    assert as_clinician.status_code == 403
    coordinator = stack.headers(Role.COORDINATOR)
    unknown = await stack.api.post(
        f"/flows/{flow_id}/rules", json={"version": "1999-9", "reason": "x"}, headers=coordinator
    )
    assert unknown.status_code == 404 and "1999-9" in unknown.text
    same = await stack.api.post(
        f"/flows/{flow_id}/rules", json={"version": "2026-1", "reason": "x"}, headers=coordinator
    )
    assert same.status_code == 409 and "already keeps rules 2026-1" in same.text
    audited = _rows(stack, select(AuditEntry.action).where(AuditEntry.flow_id == flow_id))
    assert "apply-rules:2026-1" in audited


async def test_an_event_beside_the_steps_is_refused_with_the_declarations_reason(stack: Stack) -> None:
    # careflow speaks for the demo GP (acknowledgements to it reach careflow's endpoint)
    body = {"patient": {"cpr": "0303505124"}, "hospital_sor": GP.sor, "municipality_sor": "400000000000001"}
    headers = stack.headers(Role.CLINICIAN, GP.sor)
    started = await stack.api.post("/pathways/stay/flows", json=body, headers=headers)
    assert started.status_code == 202, started.text
    flow_id = started.json()["id"]

    async def noticed() -> bool:
        state = await _state(stack, f"stay-{flow_id}")
        return state.step == "closed"

    await wait_for(noticed, timeout=40)
    end = await stack.api.post(f"/flows/{flow_id}/events/end", json={}, headers=headers)
    assert end.status_code == 409 and "a stay ends after an update" in end.text
    too_long = await stack.api.post(
        f"/flows/{flow_id}/events/update", json={"data": {"text": "x" * 101}}, headers=headers
    )
    assert too_long.status_code == 409
    assert "can be built from this report: an update is at most 100 characters" in too_long.text
    update = await stack.api.post(f"/flows/{flow_id}/events/update", json={"data": {"text": "orlov"}}, headers=headers)
    assert update.status_code == 200, update.text
    end = await stack.api.post(f"/flows/{flow_id}/events/end", json={}, headers=headers)
    assert end.status_code == 200, end.text
    detail = await _flow_status(stack, flow_id, "completed")
    assert [e["detail"] for e in detail["timeline"] if e["kind"] == "event"][:2] == ["update reported", "end reported"]
    sent = _rows(stack, select(OutboundMessage.event_code).where(OutboundMessage.flow_id == flow_id))
    assert sent == ["care-communication-message"] * 3
