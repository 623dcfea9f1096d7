"""The tutorial's pathways (docs/adding-a-pathway.md, examples/pathways/) run on the time-skipping
server with the real activities and the simulated lab over HTTP: declarations only, no `run`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from careflow.settings import Settings
from examples.pathways.home_care_request import HomeCareRequestPathway
from examples.pathways.lab_order import LabOrderPathway, LabOrderTimings
from messaging.model import AckCode, MessageKind, Organization, PatientData
from store.db import make_engine
from store.models import Escalation, Flow
from tests.conftest import encrypted_client, record_history, silent_partners_worker, store_flow_row, wait_for
from workflows.models import InboundMessageSignal, PathwayInput, PathwayStatus

GP = Organization(sor="100000000000001", ean="5790010000019", name="Lægerne Nørrebro (demo GP)")
LAB = Organization(sor="300000000000001", ean="5790030000013", name="Klinisk Biokemisk Afdeling, Demo Lab")
MUNICIPALITY = Organization(sor="400000000000001", ean="5790040000010", name="Demo Kommune Hjemmepleje")


@pytest_asyncio.fixture
async def lab_order(
    time_skipping_server: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[WorkflowEnvironment, Settings]]:
    async with silent_partners_worker(
        time_skipping_server, tmp_path, [LabOrderPathway, HomeCareRequestPathway]
    ) as settings:
        yield time_skipping_server, settings


async def test_a_declared_pathway_runs_escalates_and_completes(lab_order: tuple[WorkflowEnvironment, Settings]) -> None:
    env, settings = lab_order
    client = await encrypted_client(env, settings)
    flow_id = str(uuid.uuid4())
    engine = make_engine(settings.sqlalchemy_url)
    store_flow_row(settings, "lab-order", flow_id, GP.sor, LAB.sor, cpr_hash="h")
    handle = await client.start_workflow(
        LabOrderPathway.run,
        PathwayInput(
            flow_id=flow_id,
            pathway="lab-order",
            patient=PatientData(cpr="0101505123"),
            parties={"requester": GP, "performer": LAB},
            data={"reason": "Lipidstatus", "priority": "routine"},
            timings=LabOrderTimings(result_deadline=timedelta(days=3)),
        ),
        id=f"lab-order-{flow_id}",
        task_queue=settings.task_queue,
    )

    async def sent() -> str | None:
        state = await handle.query(LabOrderPathway.pathway_state)
        return state.outbound[0].message_header_id if state.outbound else None

    header_id = await wait_for(sent)

    def signal(kind: MessageKind, **fields: object) -> InboundMessageSignal:
        return InboundMessageSignal(
            message_header_id=str(uuid.uuid4()), kind=kind, sender_sor=LAB.sor, received_at=datetime.now(UTC), **fields
        )

    await handle.signal(
        LabOrderPathway.message_received,
        signal(MessageKind.ACKNOWLEDGEMENT, response_to=header_id, response_code=AckCode.OK),
    )
    await env.sleep(timedelta(days=4))
    state = await handle.query(LabOrderPathway.pathway_state)
    assert state.step == "result" and [e.step for e in state.open_escalations] == ["result"]
    await handle.signal(LabOrderPathway.message_received, signal(MessageKind.TEST_RESULT))
    result = await handle.result()
    assert result.status is PathwayStatus.COMPLETED and result.escalations == 1
    await record_history(client, handle.id, "lab-order-escalated-then-completed")
    with Session(engine) as session:
        flow = session.get(Flow, flow_id)
        assert (flow.status, flow.step) == ("completed", "completed")
        assert [
            e.resolved_at is not None
            for e in session.exec(select(Escalation).where(Escalation.flow_id == flow_id)).all()
        ] == [True]


async def test_a_pathway_with_a_message_type_of_its_own(lab_order: tuple[WorkflowEnvironment, Settings]) -> None:
    """Part 2: the home-care request builds a message type declared in its own module (stored and
    sent as careflow built it), escalates when the municipality does not answer in five days, and
    completes on its CareCommunication."""
    from examples.pathways.home_care_request import HOME_CARE_REQUEST, HomeCareRequestPathway, HomeCareRequestTimings
    from store.models import OutboundMessage

    env, settings = lab_order
    client = await encrypted_client(env, settings)
    flow_id = str(uuid.uuid4())
    engine = make_engine(settings.sqlalchemy_url)
    store_flow_row(settings, "home-care-request", flow_id, GP.sor, MUNICIPALITY.sor, cpr_hash="h")
    handle = await client.start_workflow(
        HomeCareRequestPathway.run,
        PathwayInput(
            flow_id=flow_id,
            pathway="home-care-request",
            patient=PatientData(cpr="0101505123"),
            parties={"requester": GP, "performer": MUNICIPALITY},
            data={"need": "Hjælp til medicin", "start": "2026-12-01"},
            timings=HomeCareRequestTimings(),
        ),
        id=f"home-care-request-{flow_id}",
        task_queue=settings.task_queue,
    )

    async def sent() -> str | None:
        state = await handle.query(HomeCareRequestPathway.pathway_state)
        return state.outbound[0].message_header_id if state.outbound else None

    header_id = await wait_for(sent)
    with Session(engine) as session:
        [stored] = session.exec(select(OutboundMessage).where(OutboundMessage.flow_id == flow_id)).all()
    assert (stored.event_code, stored.receiver_sor) == (HOME_CARE_REQUEST, MUNICIPALITY.sor)

    def signal(kind: MessageKind, **fields: object) -> InboundMessageSignal:
        return InboundMessageSignal(
            message_header_id=str(uuid.uuid4()),
            kind=kind,
            sender_sor=MUNICIPALITY.sor,
            received_at=datetime.now(UTC),
            **fields,
        )

    await handle.signal(
        HomeCareRequestPathway.message_received,
        signal(MessageKind.ACKNOWLEDGEMENT, response_to=header_id, response_code=AckCode.OK),
    )
    await env.sleep(timedelta(days=6))
    state = await handle.query(HomeCareRequestPathway.pathway_state)
    assert state.step == "answer" and [e.reason for e in state.open_escalations] == [
        "no care communication (korrespondance) by its deadline"
    ]
    await handle.signal(HomeCareRequestPathway.message_received, signal(MessageKind.CARE_COMMUNICATION))
    result = await handle.result()
    assert result.status is PathwayStatus.COMPLETED and result.escalations == 1
    await record_history(client, handle.id, "home-care-request-escalated-then-answered")
