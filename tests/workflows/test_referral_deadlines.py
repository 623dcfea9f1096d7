"""Deadlines, resends and coordinator actions of the referral pathway, on the time-skipping test
server, with the real activities, a real SQLite store and the simulated hospital over HTTP."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from careflow.crypto import KeyRing
from careflow.settings import Settings
from messaging.model import AckCode, MessageKind, Organization, PatientData
from simulator.app import Behaviour, PartnerSimulator, create_simulator
from store.db import make_engine, migrate
from store.models import Escalation, Flow, FlowEvent, OutboundMessage, sealed_as
from tests.conftest import LoopbackServer, encrypted_client, free_port, record_history, wait_for, write_directory
from workers.main import build_worker
from workflows.models import (
    CancelRequest,
    CompleteStepRequest,
    ExtendDeadlineRequest,
    InboundMessageSignal,
    PathwayInput,
    PathwayState,
    PathwayStatus,
    ResendRequest,
    StepStatus,
)
from workflows.referral import ReferralPathwayWorkflow

GP = Organization(sor="100000000000001", ean="5790010000019", name="Lægerne Nørrebro (demo GP)")
HOSPITAL = Organization(sor="200000000000001", ean="5790020000016", name="Kardiologisk afdeling, Demo Hospital")


@dataclass
class Harness:
    env: WorkflowEnvironment
    client: Client
    settings: Settings
    simulator: PartnerSimulator
    started: list[WorkflowHandle]

    async def start(self) -> WorkflowHandle:
        flow_id = str(uuid.uuid4())
        key_ring = KeyRing.parse(self.settings.codec_keys)
        with Session(make_engine(self.settings.sqlalchemy_url)) as session:
            session.add(
                Flow(
                    id=flow_id,
                    workflow_id=f"referral-{flow_id}",
                    pathway="referral",
                    referring_sor=GP.sor,
                    receiving_sor=HOSPITAL.sor,
                    cpr_hash="h",
                    patient_enc=key_ring.encrypt_text("{}"),
                    reason_enc=key_ring.encrypt_text("r"),
                )
            )
            session.commit()
        handle = await self.client.start_workflow(
            ReferralPathwayWorkflow.run,
            PathwayInput(
                flow_id=flow_id,
                pathway="referral",
                patient=PatientData(cpr="0101505123"),
                referring=GP,
                receiving=HOSPITAL,
                reason="Brystsmerter",
            ),
            id=f"referral-{flow_id}",
            task_queue=self.settings.task_queue,
        )
        self.started.append(handle)
        return handle

    def outbound(self, flow_id: str) -> list[OutboundMessage]:
        with Session(make_engine(self.settings.sqlalchemy_url)) as session:
            return list(
                session.exec(
                    select(OutboundMessage).where(OutboundMessage.flow_id == flow_id).order_by(OutboundMessage.id)
                ).all()
            )

    def escalations(self, flow_id: str) -> list[Escalation]:
        with Session(make_engine(self.settings.sqlalchemy_url)) as session:
            return list(session.exec(select(Escalation).where(Escalation.flow_id == flow_id)).all())


async def state(handle: WorkflowHandle) -> PathwayState:
    return await handle.query(ReferralPathwayWorkflow.pathway_state)


def reply(kind: MessageKind, *, response_to: str | None = None, code: AckCode | None = None) -> InboundMessageSignal:
    return InboundMessageSignal(
        message_header_id=str(uuid.uuid4()),
        kind=kind,
        sender_sor=HOSPITAL.sor,
        received_at=datetime.now(UTC),
        response_to=response_to,
        response_code=code,
    )


async def acknowledge(handle: WorkflowHandle, code: AckCode = AckCode.OK) -> None:
    async def sent() -> str | None:
        current = await state(handle)
        return current.outbound[0].message_header_id if current.outbound else None

    header_id = await wait_for(sent)
    await handle.signal(
        ReferralPathwayWorkflow.message_received, reply(MessageKind.ACKNOWLEDGEMENT, response_to=header_id, code=code)
    )


@pytest_asyncio.fixture
async def harness(time_skipping_server: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Harness]:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path,
        task_queue=f"careflow-{uuid.uuid4()}",
        directory_path=write_directory(
            tmp_path / "directory.json", api_url="http://127.0.0.1:9", simulator_url=f"http://127.0.0.1:{port}"
        ),
    )
    migrate(settings.sqlalchemy_url)
    client = await encrypted_client(time_skipping_server, settings)
    # The hospital receives for real but stays silent: the tests play its acknowledgements and replies.
    app = create_simulator(settings, Behaviour(ack_code="none", reply=False))
    async with LoopbackServer(app, port), httpx.AsyncClient(timeout=10) as http:
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with build_worker(client, settings, http=http, executor=executor):
                harness = Harness(time_skipping_server, client, settings, app.state.simulator, [])
                yield harness
                # Leave nothing open on the shared server: open work would hold its clock. Let
                # in-flight activities finish first: the test server does not release its clock
                # for an activity whose workflow is terminated while it runs.
                await time_skipping_server.sleep(timedelta(seconds=1))
                for handle in harness.started:
                    with contextlib.suppress(RPCError):  # already closed
                        await handle.terminate("test finished")


async def test_no_acknowledgement_means_two_resends_then_escalation(harness: Harness) -> None:
    handle = await harness.start()
    await harness.env.sleep(timedelta(minutes=95))  # three 30-minute waits
    current = await state(handle)
    outbound = harness.outbound(current.flow_id)
    assert len(outbound) == 3, "the referral and exactly two resends"
    assert len({m.message_header_id for m in outbound}) == 1, "a resend keeps MessageHeader.id"
    assert len({m.bundle_id for m in outbound}) == 3, "a resend gets a new Bundle.id"
    assert all(m.http_status == 202 for m in outbound)
    assert harness.simulator.stats().resends_received == 2
    assert current.status is PathwayStatus.ESCALATED
    assert [e.reason for e in current.escalations] == [
        "no acknowledgement after 2 resends of the referral (henvisning)"
    ]
    assert [e.step for e in harness.escalations(current.flow_id)] == ["referral"]
    # The pathway goes on: it now waits for the appointment.
    assert current.step == "appointment"


async def test_fatal_error_acknowledgement_escalates_at_once(harness: Harness) -> None:
    handle = await harness.start()
    await acknowledge(handle, AckCode.FATAL_ERROR)
    await harness.env.sleep(timedelta(minutes=1))
    current = await state(handle)
    assert len(harness.outbound(current.flow_id)) == 1, "no resend after a fatal-error"
    assert current.escalations and "fatal-error" in current.escalations[0].reason


async def test_transient_error_follows_the_resend_rule(harness: Harness) -> None:
    handle = await harness.start()
    await acknowledge(handle, AckCode.TRANSIENT_ERROR)
    await harness.env.sleep(timedelta(minutes=1))
    assert len(harness.outbound((await state(handle)).flow_id)) == 2
    await acknowledge(handle, AckCode.OK)
    await harness.env.sleep(timedelta(minutes=1))
    current = await state(handle)
    assert current.outbound[0].ack_code is AckCode.OK and not current.escalations


async def test_late_appointment_escalates_then_completes(harness: Harness) -> None:
    handle = await harness.start()
    await acknowledge(handle)
    await harness.env.sleep(timedelta(days=31))
    current = await state(handle)
    assert current.step == "appointment"
    assert current.steps[1].status is StepStatus.OVERDUE
    assert len(current.open_escalations) == 1 and "appointment (indkaldelse)" in current.open_escalations[0].reason
    # Still waiting after the escalation: no second escalation for the same deadline.
    await harness.env.sleep(timedelta(days=5))
    assert len((await state(handle)).escalations) == 1
    for kind in (MessageKind.APPOINTMENT, MessageKind.TEST_RESULT, MessageKind.TREATMENT_PLAN):
        await handle.signal(ReferralPathwayWorkflow.message_received, reply(kind))
    result = await handle.result()
    assert result.status is PathwayStatus.COMPLETED and result.escalations == 1
    final = await state(handle)
    assert final.escalations[0].resolution == "appointment (indkaldelse) received"
    await record_history(harness.client, handle.id, "referral-late-appointment")
    assert [e.resolved_at is not None for e in harness.escalations(final.flow_id)] == [True]


async def test_out_of_order_reply_and_duplicate_signal(harness: Harness) -> None:
    handle = await harness.start()
    await acknowledge(handle)
    test_result = reply(MessageKind.TEST_RESULT)
    await handle.signal(ReferralPathwayWorkflow.message_received, test_result)  # before the appointment
    await handle.signal(ReferralPathwayWorkflow.message_received, test_result)  # and again: ignored
    await harness.env.sleep(timedelta(minutes=1))
    assert (await state(handle)).step == "appointment"
    await handle.signal(ReferralPathwayWorkflow.message_received, reply(MessageKind.APPOINTMENT))
    await harness.env.sleep(timedelta(minutes=1))
    current = await state(handle)
    assert current.step == "treatment_plan", "the early test result was kept and applied at its step"
    assert current.received_header_ids.count(test_result.message_header_id) == 1


async def test_extend_deadline_validates_and_resolves(harness: Harness) -> None:
    handle = await harness.start()
    await acknowledge(handle)
    await harness.env.sleep(timedelta(days=31))
    assert (await state(handle)).open_escalations
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            ReferralPathwayWorkflow.extend_deadline,
            ExtendDeadlineRequest(
                actor="coordinator-1",
                reason="phoned",
                step="appointment",
                new_deadline=datetime(2000, 1, 1, tzinfo=UTC),
            ),
        )
    assert "future" in str(refused.value.cause)
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            ReferralPathwayWorkflow.extend_deadline,
            ExtendDeadlineRequest(
                actor="coordinator-1",
                reason=" ",
                step="appointment",
                new_deadline=datetime.now(UTC) + timedelta(days=400),
            ),
        )
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            ReferralPathwayWorkflow.complete_step,
            CompleteStepRequest(actor="coordinator-1", reason="x", step="treatment_plan"),
        )
    assert len((await state(handle)).open_escalations) == 1, "a refused action changes nothing"
    now = (await harness.client.get_workflow_handle(handle.id).describe()).execution_time or datetime.now(UTC)
    new_deadline = now + timedelta(days=60)
    await handle.execute_update(
        ReferralPathwayWorkflow.extend_deadline,
        ExtendDeadlineRequest(
            actor="coordinator-1", reason="patient on holiday", step="appointment", new_deadline=new_deadline
        ),
    )
    current = await state(handle)
    assert not current.open_escalations and current.steps[1].deadline == new_deadline
    assert "patient on holiday" in current.escalations[0].resolution
    await handle.execute_update(
        ReferralPathwayWorkflow.complete_step,
        CompleteStepRequest(actor="coordinator-1", reason="booked by phone", step="appointment"),
    )
    await harness.env.sleep(timedelta(minutes=1))
    current = await state(handle)
    assert current.steps[1].status is StepStatus.DONE_OUTSIDE and current.step == "test_result"


async def test_cancel_sends_a_cancellation_to_the_receiver(harness: Harness) -> None:
    handle = await harness.start()
    await acknowledge(handle)
    await harness.env.sleep(timedelta(hours=1))
    await handle.execute_update(
        ReferralPathwayWorkflow.cancel, CancelRequest(actor="coordinator-1", reason="patient moved")
    )
    result = await handle.result()
    assert result.status is PathwayStatus.CANCELLED
    assert harness.simulator.received.get(MessageKind.CANCELLATION.value) == 1
    [cancellation] = [m for m in harness.outbound(result.flow_id) if m.event_code == MessageKind.CANCELLATION.value]
    key_ring = KeyRing.parse(harness.settings.codec_keys)
    body = key_ring.decrypt_text(cancellation.body_enc, sealed_as(OutboundMessage, "body_enc", cancellation.bundle_id))
    assert "patient moved" in body, "the cancellation carries the coordinator's reason"
    await record_history(harness.client, handle.id, "referral-cancelled")
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):  # a closed workflow takes no update
        await handle.execute_update(
            ReferralPathwayWorkflow.cancel, CancelRequest(actor="coordinator-1", reason="again")
        )


async def test_resend_is_refused_inside_the_acknowledgement_window_and_done_after(harness: Harness) -> None:
    handle = await harness.start()
    await wait_for(lambda: _has_sent(handle))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            ReferralPathwayWorkflow.resend, ResendRequest(actor="coordinator-1", reason="partner asked")
        )
    assert "acknowledgement window" in str(refused.value.cause)
    await acknowledge(handle)
    await harness.env.sleep(timedelta(minutes=1))
    assert (await state(handle)).step == "appointment"
    await handle.execute_update(
        ReferralPathwayWorkflow.resend, ResendRequest(actor="coordinator-1", reason="partner lost it")
    )
    outbound = harness.outbound((await state(handle)).flow_id)
    assert (
        len(outbound) == 2
        and len({m.message_header_id for m in outbound}) == 1
        and len({m.bundle_id for m in outbound}) == 2
    )
    # The update answers once the read model shows the resend: the console's next page is current.
    with Session(make_engine(harness.settings.sqlalchemy_url)) as session:
        details = session.exec(select(FlowEvent.detail).where(FlowEvent.flow_id == outbound[0].flow_id)).all()
    assert "resend requested: partner lost it" in details
    await handle.execute_update(
        ReferralPathwayWorkflow.cancel, CancelRequest(actor="coordinator-1", reason="test over")
    )
    await handle.result()
    await record_history(harness.client, handle.id, "referral-resent-then-cancelled")


async def _has_sent(handle: WorkflowHandle) -> bool:
    return bool((await state(handle)).outbound)
