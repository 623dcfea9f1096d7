"""The tutorial's pathways (docs/adding-a-pathway.md, examples/pathways/) run on the time-skipping
server with the real activities and the simulated lab over HTTP: declarations only, no `run`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from careflow.settings import Settings
from examples.pathways.home_care_request import HomeCareRequestPathway
from examples.pathways.lab_order import LabOrderPathway, LabOrderTimings
from messaging.model import AckCode, MessageKind, Organization, PatientData
from store.db import make_engine
from store.models import Escalation, Flow
from tests.conftest import encrypted_client, record_history, silent_partners_worker, store_flow_row, wait_for
from workflows.models import InboundMessageSignal, PathwayInput, PathwayState, PathwayStatus

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


@dataclass
class Running:
    """A tutorial pathway started for one flow, its first message sent to the performer."""

    env: WorkflowEnvironment
    client: Client
    pathway: type
    performer: Organization
    flow_id: str
    engine: Engine
    handle: WorkflowHandle
    header_id: str  # of the first message sent

    async def receive(self, kind: MessageKind, **fields: object) -> None:
        """A message of `kind` from the performer."""
        await self.handle.signal(
            self.pathway.message_received,
            InboundMessageSignal(
                message_header_id=str(uuid.uuid4()),
                kind=kind,
                sender_sor=self.performer.sor,
                received_at=datetime.now(UTC),
                **fields,
            ),
        )

    async def state_after(self, wait: timedelta) -> PathwayState:
        """The first message acknowledged ok, then `wait` on the time-skipping server."""
        await self.receive(MessageKind.ACKNOWLEDGEMENT, response_to=self.header_id, response_code=AckCode.OK)
        await self.env.sleep(wait)
        return await self.handle.query(self.pathway.pathway_state)

    async def completes_on(self, kind: MessageKind, history: str) -> None:
        """The answer of `kind` completes the pathway, after its one escalation; its history kept as `history`."""
        await self.receive(kind)
        result = await self.handle.result()
        assert result.status is PathwayStatus.COMPLETED and result.escalations == 1
        await record_history(self.client, self.handle.id, history)


async def start_pathway(
    tutorial: tuple[WorkflowEnvironment, Settings],
    pathway: type,
    performer: Organization,
    data: dict[str, str],
    timings: object,
) -> Running:
    """`pathway` started from the GP to `performer` (its flow row stored first, as the API does), and
    running once it has sent its first message."""
    env, settings = tutorial
    client = await encrypted_client(env, settings)
    flow_id = str(uuid.uuid4())
    engine = make_engine(settings.sqlalchemy_url)
    store_flow_row(settings, pathway.name, flow_id, GP.sor, performer.sor, cpr_hash="h")
    handle = await client.start_workflow(
        pathway.run,
        PathwayInput(
            flow_id=flow_id,
            pathway=pathway.name,
            patient=PatientData(cpr="0101505123"),
            parties={"requester": GP, "performer": performer},
            data=data,
            timings=timings,
        ),
        id=pathway.workflow_id(flow_id),
        task_queue=settings.task_queue,
    )

    async def sent() -> str | None:
        # Sent, not only begun: a Bundle.id is on the outbound state once the send activity returned
        # (the message is stored by then).
        state = await handle.query(pathway.pathway_state)
        return state.outbound[0].message_header_id if state.outbound and state.outbound[0].bundle_ids else None

    header_id = await wait_for(sent)
    return Running(env, client, pathway, performer, flow_id, engine, handle, header_id)


async def test_a_declared_pathway_runs_escalates_and_completes(lab_order: tuple[WorkflowEnvironment, Settings]) -> None:
    running = await start_pathway(
        lab_order,
        LabOrderPathway,
        LAB,
        {"reason": "Lipidstatus", "priority": "routine"},
        LabOrderTimings(result_deadline=timedelta(days=3)),
    )
    state = await running.state_after(timedelta(days=4))
    assert state.step == "result" and [e.step for e in state.open_escalations] == ["result"]
    await running.completes_on(MessageKind.TEST_RESULT, "lab-order-escalated-then-completed")
    with Session(running.engine) as session:
        flow = session.get(Flow, running.flow_id)
        assert (flow.status, flow.step) == ("completed", "completed")
        assert [
            e.resolved_at is not None
            for e in session.exec(select(Escalation).where(Escalation.flow_id == running.flow_id)).all()
        ] == [True]


async def test_a_pathway_with_a_message_type_of_its_own(lab_order: tuple[WorkflowEnvironment, Settings]) -> None:
    """Part 2: the home-care request builds a message type declared in its own module (stored and
    sent as careflow built it), escalates when the municipality does not answer in five days, and
    completes on its CareCommunication."""
    from examples.pathways.home_care_request import HOME_CARE_REQUEST, HomeCareRequestTimings
    from store.models import OutboundMessage

    running = await start_pathway(
        lab_order,
        HomeCareRequestPathway,
        MUNICIPALITY,
        {"need": "Hjælp til medicin", "start": "2026-12-01"},
        HomeCareRequestTimings(),
    )
    with Session(running.engine) as session:
        [stored] = session.exec(select(OutboundMessage).where(OutboundMessage.flow_id == running.flow_id)).all()
    assert (stored.event_code, stored.receiver_sor) == (HOME_CARE_REQUEST, MUNICIPALITY.sor)
    state = await running.state_after(timedelta(days=6))
    assert state.step == "answer" and [e.reason for e in state.open_escalations] == [
        "no care communication (korrespondance) by its deadline"
    ]
    await running.completes_on(MessageKind.CARE_COMMUNICATION, "home-care-request-escalated-then-answered")
