"""Step semantics on the time-skipping server: a rescheduled appointment (a second reply of the same
type) replaces the first and re-arms the deadline counted from it; a reply from the wrong party or
about another patient is refused by the workflow itself, whatever way it came in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from careflow.settings import Settings
from messaging.model import AckCode, MessageKind, Organization, PatientData
from tests.conftest import encrypted_client, record_history, silent_partners_worker, store_flow_row, wait_for
from tests.platform_pathways import BookingPathway, BookingTimings
from workflows.models import InboundMessageSignal, PathwayInput, StepStatus

GP = Organization(sor="100000000000001", ean="5790010000019", name="Lægerne Nørrebro (demo GP)")
HOSPITAL = Organization(sor="200000000000001", ean="5790020000016", name="Kardiologisk afdeling, Demo Hospital")
LAB = Organization(sor="300000000000001", ean="5790030000013", name="Klinisk Biokemisk Afdeling, Demo Lab")


@pytest_asyncio.fixture
async def booking(
    time_skipping_server: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[WorkflowEnvironment, Settings]]:
    async with silent_partners_worker(time_skipping_server, tmp_path, [BookingPathway]) as settings:
        yield time_skipping_server, settings


async def _start(env: WorkflowEnvironment, settings: Settings) -> WorkflowHandle:
    client = await encrypted_client(env, settings)
    flow_id = str(uuid.uuid4())
    store_flow_row(settings, "booking", flow_id, GP.sor, HOSPITAL.sor, cpr_hash="h1")
    return await client.start_workflow(
        BookingPathway.run,
        PathwayInput(
            flow_id=flow_id,
            pathway="booking",
            patient=PatientData(cpr="0101505123"),
            parties={"requester": GP, "performer": HOSPITAL},
            data={"reason": "Vurdering"},
            timings=BookingTimings(result_deadline=timedelta(days=10)),
            patient_hash="h1",
        ),
        id=f"booking-{flow_id}",
        task_queue=settings.task_queue,
    )


def _signal(kind: MessageKind, sender: Organization = HOSPITAL, **fields: object) -> InboundMessageSignal:
    return InboundMessageSignal(
        message_header_id=str(uuid.uuid4()),
        kind=kind,
        sender_sor=sender.sor,
        received_at=datetime.now(UTC),
        **{"patient_hash": "h1", **fields},
    )


async def _acknowledged(handle: WorkflowHandle) -> None:
    async def sent() -> str | None:
        state = await handle.query(BookingPathway.pathway_state)
        return state.outbound[0].message_header_id if state.outbound else None

    header_id = await wait_for(sent)
    await handle.signal(
        BookingPathway.message_received,
        _signal(MessageKind.ACKNOWLEDGEMENT, response_to=header_id, response_code=AckCode.OK),
    )


async def test_a_rescheduled_appointment_re_arms_the_deadline_counted_from_it(
    booking: tuple[WorkflowEnvironment, Settings],
) -> None:
    env, settings = booking
    handle = await _start(env, settings)
    await _acknowledged(handle)
    first = _signal(MessageKind.APPOINTMENT)
    await handle.signal(BookingPathway.message_received, first)

    async def waiting_for_result():  # noqa: ANN202
        state = await handle.query(BookingPathway.pathway_state)
        return state if state.step == "result" else None

    state = await wait_for(waiting_for_result)
    [result] = [s for s in state.steps if s.name == "result"]
    first_deadline = result.deadline
    await env.sleep(timedelta(days=7))  # 3 days before the result is due, the hospital moves the appointment
    second = _signal(MessageKind.APPOINTMENT)
    await handle.signal(BookingPathway.message_received, second)

    async def re_armed():  # noqa: ANN202
        state = await handle.query(BookingPathway.pathway_state)
        [step] = [s for s in state.steps if s.name == "result"]
        return state if step.deadline and step.deadline > first_deadline else None

    state = await wait_for(re_armed)
    [step] = [s for s in state.steps if s.name == "result"]
    assert timedelta(days=6, hours=23) < step.deadline - first_deadline <= timedelta(days=7, hours=1), (
        "ten days from the new appointment"
    )
    assert state.received_header_ids[-2:] == [first.message_header_id, second.message_header_id]
    await env.sleep(timedelta(days=5))  # past the first deadline, before the new one: nothing overdue
    state = await handle.query(BookingPathway.pathway_state)
    assert step.status is StepStatus.WAITING and not state.open_escalations
    await env.sleep(timedelta(days=6))  # past the new one
    state = await handle.query(BookingPathway.pathway_state)
    assert [e.step for e in state.open_escalations] == ["result"]
    await handle.signal(BookingPathway.message_received, _signal(MessageKind.TREATMENT_PLAN))
    assert (await handle.result()).status.value == "completed"
    await record_history(await encrypted_client(env, settings), handle.id, "booking-rescheduled-appointment")


async def test_the_workflow_refuses_a_reply_from_the_wrong_party_or_patient(
    booking: tuple[WorkflowEnvironment, Settings],
) -> None:
    env, settings = booking
    handle = await _start(env, settings)
    await _acknowledged(handle)
    from_lab = _signal(MessageKind.APPOINTMENT, sender=LAB)
    other_patient = _signal(MessageKind.APPOINTMENT, patient_hash="another")
    for signal in (from_lab, other_patient):
        await handle.signal(BookingPathway.message_received, signal)
    right = _signal(MessageKind.APPOINTMENT)
    await handle.signal(BookingPathway.message_received, right)

    async def at_result():  # noqa: ANN202
        state = await handle.query(BookingPathway.pathway_state)
        return state if state.step == "result" else None

    state = await wait_for(at_result)
    assert state.refused_header_ids == [from_lab.message_header_id, other_patient.message_header_id]
    assert (
        right.message_header_id in state.received_header_ids
        and from_lab.message_header_id not in state.received_header_ids
    )
    [appointment] = [s for s in state.steps if s.name == "appointment"]
    assert appointment.message_header_id == right.message_header_id
    # Let the projection (a local activity, inside the workflow task) finish first: the test server
    # keeps its clock held by a workflow task whose workflow is terminated while it runs.
    await env.sleep(timedelta(seconds=1))
    await handle.terminate("test finished")
