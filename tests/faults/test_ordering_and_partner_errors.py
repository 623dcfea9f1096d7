"""Messages out of order and partners that fail, on the real stack (dev server, worker, API, partners
over HTTP): an early reply or acknowledgement is kept and applied at its step; a 4xx escalates with the
partner's reason and is not retried; a 5xx is retried with the same message, never a second one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType

from careflow.auth import Role
from messaging import Directory, build_message
from messaging import model as messages  # TestResultContent by module: pytest would try to collect it
from messaging.model import (
    AppointmentContent,
    Envelope,
    MessageKind,
    ObservationValue,
    PatientData,
    TreatmentPlanContent,
)
from store.db import make_engine
from store.models import OutboundMessage
from tests.conftest import Stack, referral_payload, wait_for
from workflows.models import PathwayState, StepStatus
from workflows.referral import ReferralPathwayWorkflow

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

HOSPITAL, LAB, GP = "200000000000001", "300000000000001", "100000000000001"
REFERRAL = "careflow-referral-message"


@contextmanager
def partners(stack: Stack, **changes: object) -> Iterator[object]:
    """The simulated partners with changed behaviour for one test, restored afterwards."""
    simulator = stack.simulator_app.state.simulator
    before = simulator.behaviour
    simulator.behaviour = before.model_copy(update=changes)
    try:
        yield simulator
    finally:
        simulator.behaviour = before


async def _start(stack: Stack, cpr: str) -> str:
    response = await stack.api.post("/referrals", json=referral_payload(cpr), headers=stack.headers(Role.CLINICIAN))
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def _state(stack: Stack, flow_id: str) -> PathwayState:
    return await stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{flow_id}").query(
        ReferralPathwayWorkflow.pathway_state
    )


async def _until_state(stack: Stack, flow_id: str, predicate, timeout: float = 30) -> PathwayState:  # noqa: ANN001
    async def check() -> PathwayState | None:
        state = await _state(stack, flow_id)
        return state if predicate(state) else None

    return await wait_for(check, timeout=timeout, interval=0.2)


async def _post_reply(
    stack: Stack, flow_id: str, kind: MessageKind, sender_sor: str, previous_header_id: str, cpr: str
) -> str:
    """Post a partner's clinical reply as the partner system would, and return its MessageHeader.id."""
    directory = Directory.load(stack.settings.directory_path)
    contents = {
        MessageKind.APPOINTMENT: AppointmentContent(
            service_request_id=flow_id,
            start=datetime.now(UTC) + timedelta(days=7),
            description="Ambulant forundersøgelse",
        ),
        MessageKind.TEST_RESULT: messages.TestResultContent(
            service_request_id=flow_id,
            code="NPU02319",
            display="Hæmoglobin;B",
            conclusion="Normal",
            observations=[ObservationValue(code="NPU02319", display="Hæmoglobin;B", value=8.9, unit="mmol/L")],
        ),
        MessageKind.TREATMENT_PLAN: TreatmentPlanContent(
            service_request_id=flow_id, description="Kontrol om 3 måneder"
        ),
    }
    header_id = str(uuid.uuid4())
    envelope = Envelope(
        message_header_id=header_id,
        bundle_id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        sender=directory.get(sender_sor).organization,
        receiver=directory.get(GP).organization,
        patient=PatientData(cpr=cpr, given_name="Testa", family_name="Syntetisk"),
        previous_header_id=previous_header_id,
    )
    response = await stack.api.post(
        "/fhir/$process-message",
        json=build_message(kind, envelope, contents[kind]),
        headers={**stack.headers(Role.PARTNER, sor=sender_sor), "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 202, response.text
    return header_id


def _outbound(stack: Stack, flow_id: str) -> list[OutboundMessage]:
    engine = make_engine(stack.settings.sqlalchemy_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(OutboundMessage).where(OutboundMessage.flow_id == flow_id)).all())
    finally:
        engine.dispose()


async def _send_attempts(stack: Stack, flow_id: str) -> list[tuple[str, int, bool]]:
    """(how, attempt, failed) of every send_message in the workflow's history, in order: "local" for
    a local activity's marker (its last attempt), "activity" for a regular activity task."""
    history = await stack.client.get_workflow_handle(f"referral-{flow_id}").fetch_history()
    sends: list[tuple[str, int, bool]] = []
    scheduled: set[int] = set()
    started: dict[int, int] = {}  # started event id -> index in sends
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = e.marker_recorded_event_attributes
            if marker.marker_name != "core_local_activity":
                continue
            data = json.loads(marker.details["data"].payloads[0].data)  # Core's bookkeeping, plain JSON
            if data["activity_type"] == "send_message":
                sends.append(("local", data["attempt"], marker.HasField("failure")))
        elif (
            e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == "send_message"
        ):
            scheduled.add(e.event_id)
        elif (
            e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
        ):
            started[e.event_id] = len(sends)
            sends.append(("activity", e.activity_task_started_event_attributes.attempt, False))
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            index = started.get(e.activity_task_failed_event_attributes.started_event_id)
            if index is not None:
                sends[index] = (*sends[index][:2], True)
    return sends


async def test_test_result_before_appointment_is_kept_and_applied_at_its_step(stack: Stack) -> None:
    with partners(stack, reply=False):  # the partners acknowledge, the test posts the replies
        flow_id = await _start(stack, "0303505111")
        state = await _until_state(stack, flow_id, lambda s: s.step == "appointment")
    referral_header = state.outbound[0].message_header_id

    test_result = await _post_reply(stack, flow_id, MessageKind.TEST_RESULT, LAB, referral_header, "0303505111")
    state = await _until_state(stack, flow_id, lambda s: test_result in s.received_header_ids)
    steps = {s.name: s for s in state.steps}
    assert state.step == "appointment" and steps["appointment"].status is StepStatus.WAITING
    assert steps["test_result"].status is StepStatus.PENDING  # kept, not yet applied

    appointment = await _post_reply(stack, flow_id, MessageKind.APPOINTMENT, HOSPITAL, referral_header, "0303505111")
    state = await _until_state(stack, flow_id, lambda s: s.step == "treatment_plan")
    steps = {s.name: s for s in state.steps}
    assert (steps["appointment"].status, steps["appointment"].message_header_id) == (StepStatus.DONE, appointment)
    assert (steps["test_result"].status, steps["test_result"].message_header_id) == (StepStatus.DONE, test_result)
    assert steps["appointment"].completed_at <= steps["test_result"].completed_at

    plan = await _post_reply(stack, flow_id, MessageKind.TREATMENT_PLAN, HOSPITAL, referral_header, "0303505111")
    state = await _until_state(stack, flow_id, lambda s: s.status.value == "completed")
    assert {s.name: s.message_header_id for s in state.steps}["treatment_plan"] == plan
    assert len(state.received_header_ids) == len(set(state.received_header_ids))


async def test_acknowledgement_before_the_send_returned_ends_the_wait(stack: Stack) -> None:
    """The partner acknowledges before it answers the POST: the workflow already holds the ack when
    the send activity returns, and must not wait out the acknowledgement timeout (30 min here)."""
    with partners(stack, reply=False, ack_delay=0.0, answer_delay=2.0):
        flow_id = await _start(stack, "0404505222")
        state = await _until_state(stack, flow_id, lambda s: s.step == "appointment", timeout=20)
    assert state.outbound[0].ack_code is not None and state.outbound[0].ack_code.value == "ok"
    assert len(state.outbound[0].bundle_ids) == 1  # no resend
    assert not state.escalations


async def test_partner_4xx_escalates_with_its_reason_and_is_not_retried(stack: Stack) -> None:
    reason = "afdelingen modtager ikke henvisninger af denne type"
    with partners(stack, failure="reject", reject_reason=reason) as simulator:
        refused_before = simulator.refused
        flow_id = await _start(stack, "0505505333")
        state = await _until_state(stack, flow_id, lambda s: bool(s.open_escalations))
        escalation = state.open_escalations[0]
        assert escalation.step == "referral" and reason in escalation.reason and "422" in escalation.reason
        assert simulator.refused - refused_before == 1
    # One attempt (the local one), failed for good: not handed on to Temporal's retries.
    assert await _send_attempts(stack, flow_id) == [("local", 1, True)]
    rows = _outbound(stack, flow_id)
    assert [(r.event_code, r.http_status, r.sent_at) for r in rows] == [(REFERRAL, 422, None)]
    assert state.outbound[0].bundle_ids == []


async def test_partner_5xx_is_retried_and_builds_one_message(stack: Stack) -> None:
    with partners(stack, failure="503", reply=False) as simulator:
        refused_before = simulator.refused
        flow_id = await _start(stack, "0606505444")

        async def refused_twice() -> bool:
            return simulator.refused - refused_before >= 2

        await wait_for(refused_twice, timeout=20)
        simulator.behaviour = simulator.behaviour.model_copy(update={"failure": "none"})
        state = await _until_state(stack, flow_id, lambda s: s.step == "appointment", timeout=30)
    attempts = await _send_attempts(stack, flow_id)
    # Two refusals, then accepted by the third local attempt (or, on a machine too slow to switch the
    # partner back within its 2 s, by the regular activity after them): the same message either way.
    assert attempts == [("local", 3, False)] or [(how, failed) for how, _, failed in attempts] == [
        ("local", True),
        ("activity", False),
    ], attempts
    rows = _outbound(stack, flow_id)
    assert len(rows) == 1 and rows[0].http_status == 202 and rows[0].sent_at is not None
    assert state.outbound[0].bundle_ids == [rows[0].bundle_id]
    assert {r.message_header_id for r in rows} == {state.outbound[0].message_header_id}
    # The partner saw one message: one MessageHeader.id, one Bundle.id (Temporal's retries re-sent it).
    assert simulator.headers_per_step[(flow_id, REFERRAL)] == {rows[0].message_header_id}
    assert simulator.headers_seen[rows[0].message_header_id] == {rows[0].bundle_id}


async def test_a_partner_down_past_the_local_attempts_is_retried_by_temporal(stack: Stack) -> None:
    """A send's first attempts run in the workflow task (a local activity); a partner still down after
    them gets the regular activity and Temporal's retries, with the same message."""
    with partners(stack, failure="503", reply=False) as simulator:
        refused_before = simulator.refused
        flow_id = await _start(stack, "0707505555")

        async def refused_past_the_local_attempts() -> bool:
            return simulator.refused - refused_before >= 4  # three local attempts, then the activity's first

        await wait_for(refused_past_the_local_attempts, timeout=30)
        simulator.behaviour = simulator.behaviour.model_copy(update={"failure": "none"})
        state = await _until_state(stack, flow_id, lambda s: s.step == "appointment", timeout=30)
    attempts = await _send_attempts(stack, flow_id)
    assert attempts[0] == ("local", 3, True)
    assert [how for how, _, _ in attempts[1:]] == ["activity"] and attempts[1][1] >= 2 and not attempts[1][2]
    rows = _outbound(stack, flow_id)
    assert len(rows) == 1 and rows[0].http_status == 202 and rows[0].sent_at is not None
    assert state.outbound[0].bundle_ids == [rows[0].bundle_id] and not state.escalations
    assert simulator.headers_per_step[(flow_id, REFERRAL)] == {rows[0].message_header_id}
    assert simulator.headers_seen[rows[0].message_header_id] == {rows[0].bundle_id}
