"""Engine words on the time-skipping server: events reported any number of times beside the steps
(in order, each sent and acknowledged, one ending the pathway), a dialogue whose messages must be
answered in time, a receiver forwarding a referral to another organisation, and legal deadlines
counted from the referral's receipt, pinned at start and re-pinned by a coordinator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from careflow.deadlines import RULES_2026_1, DeadlineRules, compute_deadline
from careflow.settings import Settings
from messaging.model import AckCode, MessageKind, Organization, PatientData
from tests.conftest import encrypted_client, record_history, silent_partners_worker, store_flow_row, wait_for
from tests.platform_pathways import ForwardingTestPathway, StayTestPathway
from workflows.models import (
    ApplyRulesRequest,
    EventReport,
    InboundMessageSignal,
    PathwayInput,
    PathwayState,
    PathwayStatus,
    StepStatus,
)

HOSPITAL = Organization(sor="200000000000001", ean="5790020000016", name="Kardiologisk afdeling, Demo Hospital")
MUNICIPALITY = Organization(sor="400000000000001", ean="5790040000010", name="Demo Kommune Hjemmepleje")
GP = Organization(sor="100000000000001", ean="5790010000019", name="Lægerne Nørrebro (demo GP)")
OTHER_HOSPITAL_SOR = "500407100001651"  # Kardiologisk afdeling, Rigshospitalet, in the demo directory
RULES = RULES_2026_1.model_copy(update={"valid_from": date(2000, 1, 1)})


@pytest_asyncio.fixture
async def env_settings(
    time_skipping_server: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[WorkflowEnvironment, Settings]]:
    async with silent_partners_worker(
        time_skipping_server, tmp_path, [StayTestPathway, ForwardingTestPathway]
    ) as settings:
        yield time_skipping_server, settings


async def _start(env: WorkflowEnvironment, settings: Settings, pathway: type, parties: dict, **data: object):
    client = await encrypted_client(env, settings)
    flow_id = str(uuid.uuid4())
    store_flow_row(settings, pathway.name, flow_id, parties["requester"].sor, parties["performer"].sor, cpr_hash="h1")
    return await client.start_workflow(
        pathway.run,
        PathwayInput(
            flow_id=flow_id,
            pathway=pathway.name,
            patient=PatientData(cpr="0101505123"),
            parties=parties,
            data=data,
            timings={},
            patient_hash="h1",
            rules=RULES.model_dump(mode="json") if pathway.legal_rules() else None,
        ),
        id=f"{pathway.name}-{flow_id}",
        task_queue=settings.task_queue,
    )


def _signal(kind: MessageKind, sender: Organization, **fields: object) -> InboundMessageSignal:
    return InboundMessageSignal(
        message_header_id=str(uuid.uuid4()),
        kind=kind,
        sender_sor=sender.sor,
        received_at=datetime.now(UTC),
        **{"patient_hash": "h1", **fields},
    )


async def _state_when(handle: WorkflowHandle, ready: Callable[[PathwayState], bool]) -> PathwayState:
    async def check() -> PathwayState | None:
        state = await handle.query(StayTestPathway.pathway_state)
        return state if ready(state) else None

    return await wait_for(check)


async def _ack_outbound(handle: WorkflowHandle, index: int, sender: Organization) -> str:
    """Acknowledge the index-th message the pathway sent, once it has been sent."""
    state = await _state_when(handle, lambda s: len(s.outbound) > index and bool(s.outbound[index].bundle_ids))
    header_id = state.outbound[index].message_header_id
    await handle.signal(
        StayTestPathway.message_received,
        _signal(MessageKind.ACKNOWLEDGEMENT, sender, response_to=header_id, response_code=AckCode.OK),
    )
    return header_id


def _report(event: str, **data: object) -> EventReport:
    return EventReport(event=event, actor="test-clinician", role="clinician", reason="", data=data)


async def test_events_beside_the_steps_are_sent_in_order_and_a_dialogue_awaits_its_answer(
    env_settings: tuple[WorkflowEnvironment, Settings],
) -> None:
    env, settings = env_settings
    handle = await _start(env, settings, StayTestPathway, {"requester": HOSPITAL, "performer": MUNICIPALITY})
    report: Callable[[EventReport], Awaitable] = lambda r: handle.execute_update(StayTestPathway.report_event, r)  # noqa: E731
    await _ack_outbound(handle, 0, MUNICIPALITY)

    with pytest.raises(WorkflowUpdateFailedError):
        await report(_report("end"))  # refused by the declaration: no update yet
    await report(_report("update", text="orlov"))
    await report(_report("update", text="retur"))  # reported while the first awaits its acknowledgement
    await _ack_outbound(handle, 1, MUNICIPALITY)
    await _ack_outbound(handle, 2, MUNICIPALITY)
    state = await _state_when(handle, lambda s: [o.ack_code for o in s.outbound] == [AckCode.OK] * 3)
    assert [o.step for o in state.outbound] == ["notice", "update", "update"]
    assert state.step == "closed", "the events do not move the main step"

    # the municipality asks; nobody answers within two days: an escalation names the message
    await handle.signal(StayTestPathway.message_received, _signal(MessageKind.CARE_COMMUNICATION, MUNICIPALITY))
    state = await _state_when(handle, lambda s: any(x.name == "question" and x.deadline for x in s.steps))
    await env.sleep(timedelta(days=3))
    state = await _state_when(handle, lambda s: bool(s.open_escalations))
    [escalation] = state.open_escalations
    assert escalation.step == "question" and "no answer to the care communication" in escalation.reason
    # an update answers it
    await report(_report("update", text="svar"))
    header = await _ack_outbound(handle, 3, MUNICIPALITY)
    state = await _state_when(handle, lambda s: not s.open_escalations and s.outbound[-1].ack_code is AckCode.OK)
    assert state.outbound[-1].message_header_id == header
    # the stay ends: its message is sent and acknowledged, then the pathway completes
    await report(_report("end", text="udskrevet"))
    await _ack_outbound(handle, 4, MUNICIPALITY)
    result = await handle.result()
    assert result.status is PathwayStatus.COMPLETED
    with pytest.raises(Exception):  # noqa: B017 - the workflow has ended: the update cannot be delivered
        await report(_report("update"))
    await record_history(await encrypted_client(env, settings), handle.id, "stay-alongside")


async def test_a_forwarded_referral_follows_the_new_receiver_with_legal_deadlines(
    env_settings: tuple[WorkflowEnvironment, Settings],
) -> None:
    env, settings = env_settings
    handle = await _start(
        env, settings, ForwardingTestPathway, {"requester": GP, "performer": HOSPITAL}, reason="Vurdering"
    )
    await _ack_outbound(handle, 0, HOSPITAL)
    received_at = await env.get_current_time()
    state = await _state_when(handle, lambda s: s.step == "triage" and _triage(s).legal_deadline is not None)
    assert state.rules_version == RULES.version
    due = compute_deadline(RULES, "patient-informed", received_at).due_at
    assert abs(_triage(state).legal_deadline - due) < timedelta(minutes=5), "8 working days from the receipt"

    # the hospital forwards it; the other hospital decides from then on
    await handle.signal(
        ForwardingTestPathway.message_received,
        _signal(MessageKind.REFERRAL, HOSPITAL, outcome="forwarded", forward_to=OTHER_HOSPITAL_SOR),
    )
    state = await _state_when(handle, lambda s: "performer" in s.party_changes)
    assert state.party_changes == {"performer": OTHER_HOSPITAL_SOR}

    # a coordinator applies a more lenient rule version: the deadline moves
    lenient = DeadlineRules(
        version="t-2",
        valid_from=date(2001, 1, 1),
        rules=tuple(r.model_copy(update={"amount": 20}) if r.id == "patient-informed" else r for r in RULES.rules),
    )
    await handle.execute_update(
        ForwardingTestPathway.apply_rules,
        ApplyRulesRequest(actor="test-coordinator", reason="ny vejledning", rules=lenient.model_dump(mode="json")),
    )
    new_due = compute_deadline(lenient, "patient-informed", received_at).due_at
    state = await _state_when(handle, lambda s: _triage(s).legal_deadline == new_due)
    assert state.rules_version == "t-2"
    await env.sleep(due - await env.get_current_time() + timedelta(hours=1))  # past the old deadline
    state = await handle.query(ForwardingTestPathway.pathway_state)
    assert not state.open_escalations, "the old version's deadline no longer applies"
    await env.sleep(new_due - await env.get_current_time() + timedelta(hours=1))
    state = await _state_when(handle, lambda s: bool(s.open_escalations))
    [escalation] = state.open_escalations
    assert "patient-informed" in escalation.reason and "rules t-2" in escalation.reason

    # the old receiver may no longer answer; the new one books
    stale = _signal(MessageKind.APPOINTMENT, HOSPITAL)
    await handle.signal(ForwardingTestPathway.message_received, stale)
    await handle.signal(
        ForwardingTestPathway.message_received,
        _signal(MessageKind.APPOINTMENT, Organization(sor=OTHER_HOSPITAL_SOR, ean="5790000000000", name="x")),
    )
    result = await handle.result()
    assert result.status is PathwayStatus.COMPLETED
    state = await handle.query(ForwardingTestPathway.pathway_state)
    assert stale.message_header_id in state.refused_header_ids
    assert _triage(state).status is StepStatus.DONE and not state.open_escalations
    await record_history(await encrypted_client(env, settings), handle.id, "forwarding-legal-deadlines")


def _triage(state: PathwayState):  # noqa: ANN202
    return next(s for s in state.steps if s.name == "triage")
