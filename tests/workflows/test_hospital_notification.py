"""The hospital-notification pathway on the time-skipping server with the real activities: a stay's
events become HospitalNotifications in order (each with the whole Provenance history), refused
reports are refused, a late report and an unanswered municipality message escalate, and a
cancelled admission ends the pathway. The municipality is played by signals."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlmodel import Session, select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from careflow.crypto import KeyRing
from careflow.settings import Settings
from messaging.model import AckCode, MessageKind, Organization, PatientData
from messaging.validate import validate_message
from store.db import make_engine
from store.models import OutboundMessage, sealed_as
from tests.conftest import encrypted_client, record_history, silent_partners_worker, store_flow_row, wait_for
from workflows.hospital_notification import HospitalNotificationPathway as Pathway
from workflows.models import EventReport, InboundMessageSignal, PathwayInput, PathwayState, PathwayStatus

HOSPITAL = Organization(sor="200000000000001", ean="5790020000016", name="Kardiologisk afdeling, Demo Hospital")
MUNICIPALITY = Organization(sor="400000000000001", ean="5790040000010", name="Demo Kommune Hjemmepleje")
HN = MessageKind.HOSPITAL_NOTIFICATION.value


@pytest_asyncio.fixture
async def env_settings(
    time_skipping_server: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[WorkflowEnvironment, Settings]]:
    async with silent_partners_worker(time_skipping_server, tmp_path, [Pathway]) as settings:
        yield time_skipping_server, settings


class Stay:
    """One stay's pathway, with the municipality played by the test."""

    def __init__(self, env: WorkflowEnvironment, settings: Settings, handle: WorkflowHandle, flow_id: str) -> None:
        self.env, self.settings, self.handle, self.flow_id = env, settings, handle, flow_id

    @classmethod
    async def start(cls, env: WorkflowEnvironment, settings: Settings, **data: object) -> Stay:
        client = await encrypted_client(env, settings)
        flow_id = str(uuid.uuid4())
        store_flow_row(settings, Pathway.name, flow_id, HOSPITAL.sor, MUNICIPALITY.sor, cpr_hash="h1")
        now = await env.get_current_time()
        handle = await client.start_workflow(
            Pathway.run,
            PathwayInput(
                flow_id=flow_id,
                pathway=Pathway.name,
                patient=PatientData(cpr="0101505123", family_name="Syntetisk"),
                parties={"hospital": HOSPITAL, "municipality": MUNICIPALITY},
                data={"admitted_at": (now - timedelta(minutes=3)).isoformat(), **data},
                timings={},
                patient_hash="h1",
            ),
            id=Pathway.workflow_id(flow_id),
            task_queue=settings.task_queue,
        )
        return cls(env, settings, handle, flow_id)

    async def state_when(self, ready) -> PathwayState:  # noqa: ANN001
        async def check() -> PathwayState | None:
            state = await self.handle.query(Pathway.pathway_state)
            return state if ready(state) else None

        return await wait_for(check)

    async def ack(self, index: int, code: AckCode = AckCode.OK) -> str:
        state = await self.state_when(lambda s: len(s.outbound) > index and bool(s.outbound[index].bundle_ids))
        header_id = state.outbound[index].message_header_id
        await self.signal(MessageKind.ACKNOWLEDGEMENT, response_to=header_id, response_code=code)
        await self.state_when(lambda s: s.outbound[index].ack_code is code)
        return header_id

    async def signal(self, kind: MessageKind, **fields: object) -> InboundMessageSignal:
        message = InboundMessageSignal(
            message_header_id=str(uuid.uuid4()),
            kind=kind,
            sender_sor=MUNICIPALITY.sor,
            received_at=datetime.now(UTC),
            patient_hash="h1",
            **fields,
        )
        await self.handle.signal(Pathway.message_received, message)
        return message

    async def report(self, event: str, **data: object) -> None:
        await self.handle.execute_update(
            Pathway.report_event,
            EventReport(event=event, actor="test-clinician", role="clinician", data=data),
        )

    async def refused(self, event: str, reason: str, **data: object) -> None:
        """The report is refused, with the reason the API would answer 409 with."""
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await self.report(event, **data)
        assert reason in str(getattr(caught.value.cause, "message", caught.value.cause))

    def sent(self) -> list[dict]:
        """The Bundles careflow stored and sent, first attempts only, oldest first."""
        key_ring = KeyRing.parse(self.settings.codec_keys)
        with Session(make_engine(self.settings.sqlalchemy_url)) as session:
            rows = session.exec(
                select(OutboundMessage).where(OutboundMessage.flow_id == self.flow_id).order_by(OutboundMessage.id)
            ).all()
        return [
            json.loads(key_ring.decrypt_text(r.body_enc, sealed_as(OutboundMessage, "body_enc", r.bundle_id)))
            for r in rows
            if r.attempt == 0
        ]


def _provenances(bundle: dict) -> dict[str, dict]:
    """The Bundle's Provenances by the MessageHeader id they target."""
    return {
        e["resource"]["target"][0]["reference"].split("/")[1]: e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Provenance"
    }


def _current(bundle: dict) -> tuple[str, list[tuple[str, str]], str]:
    """(activity, entity (role, what), Encounter status) of the message's own Provenance."""
    resources = [e["resource"] for e in bundle["entry"]]
    header_id = resources[0]["id"]
    provenance = next(
        r
        for r in resources
        if r["resourceType"] == "Provenance" and r["target"][0]["reference"] == f"MessageHeader/{header_id}"
    )
    encounter = next((r for r in resources if r["resourceType"] == "Encounter"), {})
    return (
        provenance["activity"]["coding"][0]["code"],
        [(e["role"], e["what"]["reference"].split("/")[1]) for e in provenance.get("entity", [])],
        encounter.get("status", ""),
    )


async def test_admit_leave_return_revise_dialogue_discharge_close(
    env_settings: tuple[WorkflowEnvironment, Settings],
) -> None:
    env, settings = env_settings
    stay = await Stay.start(env, settings, report_of_admission=True)
    # nothing but the admission until it is acknowledged
    await stay.refused("leave-start", "once 'admission' is done")
    admission = await stay.ack(0)
    await stay.refused("leave-end", "only end while the patient is on leave")
    await stay.report("leave-start")
    await stay.report("leave-end")  # taken while the leave's notification awaits its acknowledgement
    leave = await stay.ack(1)
    back = await stay.ack(2)
    await stay.report("revise")  # the return's time corrected: RE_SLOR
    revised = await stay.ack(3)

    # the municipality writes (a new thread about the stay); the department answers in its thread
    await stay.refused("reply", "nothing to answer")
    await stay.refused("write", "needs a topic", category="other")
    await stay.refused("write", "MedCom's CareCommunication categories", category="gossip")
    question = await stay.signal(MessageKind.CARE_COMMUNICATION, thread_id="0c6d3ad4-8f5a-4c3e-9a57-0c1c4f2e9b10")
    await stay.state_when(lambda s: any(x.name == "municipality-writes" and x.deadline for x in s.steps))
    await stay.report("reply", text="Udskrivelse forventes i morgen.")
    await stay.ack(4)
    await stay.report("discharge")
    discharged = await stay.ack(5)
    await stay.refused("leave-start", "already ended")
    await stay.report("close")
    result = await stay.handle.result()
    assert result.status is PathwayStatus.COMPLETED and result.escalations == 0

    bundles = stay.sent()
    assert [b["entry"][0]["resource"]["eventCoding"]["code"] for b in bundles] == [HN] * 4 + [
        MessageKind.CARE_COMMUNICATION.value,
        HN,
    ]
    for bundle in bundles:
        assert validate_message(bundle) == []
    notices = [b for b in bundles if b["entry"][0]["resource"]["eventCoding"]["code"] == HN]
    assert [_current(b) for b in notices] == [
        ("admit-inpatient", [], "in-progress"),
        ("start-leave-inpatient", [("revision", admission)], "onleave"),
        ("end-leave-inpatient", [("revision", leave)], "in-progress"),
        ("revise-end-leave-inpatient", [("revision", back)], "in-progress"),
        ("discharge-inpatient-home", [("revision", revised)], "finished"),
    ]
    assert [sum(r["resource"]["resourceType"] == "Provenance" for r in b["entry"]) for b in notices] == [1, 2, 3, 4, 5]
    assert "extension" in notices[0]["entry"][0]["resource"], "the report of admission is asked for"
    # each notice restates every earlier one's Provenance: the same target, activity and entity
    own = [_provenances(b)[b["entry"][0]["resource"]["id"]] for b in notices]
    for k, bundle in enumerate(notices):
        restated = _provenances(bundle)
        for earlier in own[:k]:
            again = restated[earlier["target"][0]["reference"].split("/")[1]]
            assert [again.get(x) for x in ("activity", "entity")] == [earlier.get(x) for x in ("activity", "entity")]
    answer = bundles[4]
    communication = next(e["resource"] for e in answer["entry"] if e["resource"]["resourceType"] == "Communication")
    assert communication["identifier"] == [{"value": "urn:uuid:0c6d3ad4-8f5a-4c3e-9a57-0c1c4f2e9b10"}]
    assert _current(answer)[:2] == ("reply-message", [("revision", question.message_header_id)])
    assert discharged == notices[-1]["entry"][0]["resource"]["id"]
    await record_history(await encrypted_client(env, settings), stay.handle.id, "hospital-notification-stay")


async def test_late_report_and_unanswered_municipality_escalate_and_cancelled_admission_ends(
    env_settings: tuple[WorkflowEnvironment, Settings],
) -> None:
    env, settings = env_settings
    now = await env.get_current_time()
    stay = await Stay.start(env, settings, admitted_at=(now - timedelta(hours=5)).isoformat())
    await stay.ack(0)
    state = await stay.state_when(lambda s: bool(s.open_escalations))
    [late] = state.open_escalations
    assert late.step == "admission" and "reported 300 minutes after it happened" in late.reason
    await stay.report("leave-start", at=(now - timedelta(hours=2)).isoformat())
    state = await stay.state_when(lambda s: len(s.open_escalations) == 2)
    late = state.open_escalations[1]
    assert late.step == "leave-start" and "reported 120 minutes after it happened" in late.reason
    await stay.ack(1)
    # the municipality writes; a day passes without an answer
    await stay.signal(MessageKind.CARE_COMMUNICATION)
    await stay.state_when(lambda s: any(x.name == "municipality-writes" and x.deadline for x in s.steps))
    await env.sleep(timedelta(hours=25))
    state = await stay.state_when(lambda s: len(s.open_escalations) == 3)
    assert "no answer to the care communication" in state.open_escalations[2].reason
    # cancelling the admission is refused while a later notice is in force; then AN_STOR, AN_STIN
    await stay.refused("cancel-admission", "cancel the later ones first")
    await stay.report("cancel")
    await stay.ack(2)
    await stay.refused("cancel", "report cancel-admission")
    await stay.report("cancel-admission")
    await stay.ack(3)
    result = await stay.handle.result()
    assert result.status is PathwayStatus.COMPLETED
    notices = stay.sent()
    assert [_current(b)[0] for b in notices] == [
        "admit-inpatient",
        "start-leave-inpatient",
        "cancel-start-leave-inpatient",
        "cancel-admit-inpatient",
    ]
    assert _current(notices[-1])[1][0][0] == "removal" and _current(notices[-1])[2] == "entered-in-error"
    await record_history(await encrypted_client(env, settings), stay.handle.id, "hospital-notification-cancelled")


async def test_a_death_notice_is_resent_until_acknowledged_and_can_be_cancelled(
    env_settings: tuple[WorkflowEnvironment, Settings],
) -> None:
    """MORS under MedCom's resend rule (same MessageHeader.id, a new Bundle.id after 30 minutes);
    after it only the death notice may be corrected or cancelled (AN_MORS: Patient.deceased false)."""
    env, settings = env_settings
    stay = await Stay.start(env, settings)
    await stay.ack(0)
    await stay.report("death")
    await stay.state_when(lambda s: len(s.outbound) == 2 and len(s.outbound[1].bundle_ids) == 1)
    await env.sleep(timedelta(minutes=31))
    state = await stay.state_when(lambda s: len(s.outbound[1].bundle_ids) == 2)
    assert not state.open_escalations, "one resend is within the rule"
    await stay.ack(1)
    await stay.refused("discharge", "the patient has died")
    await stay.report("cancel")
    await stay.ack(2)
    await stay.report("close")
    assert (await stay.handle.result()).status is PathwayStatus.COMPLETED
    death, cancelled = stay.sent()[1:]
    patients = [
        next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
        for b in (death, cancelled)
    ]
    assert [p.get("deceasedBoolean") for p in patients] == [True, False]
    assert _current(death) == (
        "admit-inpatient",
        [("revision", stay.sent()[0]["entry"][0]["resource"]["id"])],
        "finished",
    )
    assert _current(cancelled)[0] == "admit-inpatient" and _current(cancelled)[1][0][0] == "removal"
    assert _current(cancelled)[2] == "in-progress"
