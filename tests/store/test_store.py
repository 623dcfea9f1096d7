"""The store on SQLite and on PostgreSQL: schema by migration, projections idempotent, uniqueness enforced."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

from activities.flows import FlowActivities
from activities.models import ActivityErrors, RecordStateRequest, TimelineEvent
from api.flows_query import FlowFilter, list_flows
from careflow.crypto import KeyRing, cpr_lookup_hash
from careflow.settings import DEV_CODEC_KEYS
from store.models import Escalation, Flow, FlowEvent, InboundMessage
from workflows.models import EscalationState, PathwayState, PathwayStatus, StepState, StepStatus

KEYS = KeyRing.parse(DEV_CODEC_KEYS)


def make_flow(
    session: Session, *, step: str = "referral", deadline: datetime | None = None, cpr: str = "0101505123"
) -> Flow:
    flow_id = str(uuid.uuid4())
    flow = Flow(
        id=flow_id, workflow_id=f"referral-{flow_id}", pathway="referral", step=step, referring_sor="100000000000001",
        receiving_sor="200000000000001", cpr_hash=cpr_lookup_hash(cpr, "k"), patient_enc=KEYS.encrypt_text("{}"),
        reason_enc=KEYS.encrypt_text("reason"), next_deadline=deadline,
    )  # fmt: skip
    session.add(flow)
    session.commit()
    return flow


def state(
    flow_id: str, version: int, *, step: str = "appointment", escalations: list[EscalationState] | None = None
) -> PathwayState:
    return PathwayState(
        flow_id=flow_id,
        pathway="referral",
        step=step,
        status=PathwayStatus.ESCALATED if escalations else PathwayStatus.ACTIVE,
        steps=[
            StepState(name="referral", status=StepStatus.DONE),
            StepState(name=step, status=StepStatus.WAITING, deadline=datetime(2030, 1, 1, tzinfo=UTC)),
        ],
        escalations=escalations or [],
        version=version,
    )


def test_record_state_is_idempotent_and_ordered(engine) -> None:  # noqa: ANN001
    with Session(engine, expire_on_commit=False) as session:
        flow = make_flow(session)
    activities = FlowActivities(engine)
    now = datetime.now(UTC)
    escalation = EscalationState(key="appointment-1", step="appointment", reason="late", opened_at=now)
    request = RecordStateRequest(
        state=state(flow.id, 3, escalations=[escalation]),
        events=[TimelineEvent(key="escalated-1", at=now, kind="escalated", step="appointment", detail="late")],
    )
    activities.record_state(request)
    activities.record_state(request)  # a retried activity
    activities.record_state(RecordStateRequest(state=state(flow.id, 2, step="referral")))  # a stale projection
    with Session(engine, expire_on_commit=False) as session:
        stored = session.get(Flow, flow.id)
        assert (stored.step, stored.status, stored.state_version, stored.open_escalations) == (
            "appointment",
            "escalated",
            3,
            1,
        )
        assert stored.next_deadline.replace(tzinfo=UTC) == datetime(2030, 1, 1, tzinfo=UTC)
        assert len(session.exec(select(FlowEvent).where(FlowEvent.flow_id == flow.id)).all()) == 1
        assert len(session.exec(select(Escalation).where(Escalation.flow_id == flow.id)).all()) == 1
    resolved = escalation.model_copy(update={"resolved_at": now, "resolution": "extended"})
    activities.record_state(RecordStateRequest(state=state(flow.id, 4, escalations=[resolved])))
    with Session(engine, expire_on_commit=False) as session:
        row = session.exec(select(Escalation).where(Escalation.flow_id == flow.id)).one()
        assert row.resolution == "extended" and row.resolved_at is not None


def test_record_state_completes_a_flow_once_and_refuses_an_unknown_one(engine) -> None:  # noqa: ANN001
    with Session(engine, expire_on_commit=False) as session:
        flow = make_flow(session)
    activities = FlowActivities(engine)
    done = state(flow.id, 5, step="completed").model_copy(update={"status": PathwayStatus.COMPLETED})
    activities.record_state(RecordStateRequest(state=done))
    with Session(engine, expire_on_commit=False) as session:
        first = session.get(Flow, flow.id).completed_at
    assert first is not None
    activities.record_state(RecordStateRequest(state=done.model_copy(update={"version": 6})))  # a later projection
    with Session(engine, expire_on_commit=False) as session:
        stored = session.get(Flow, flow.id)
        assert (stored.status, stored.state_version, stored.completed_at) == ("completed", 6, first)
    with pytest.raises(ApplicationError) as refused:
        activities.record_state(RecordStateRequest(state=state(str(uuid.uuid4()), 1)))
    assert refused.value.type == ActivityErrors.FLOW_NOT_FOUND and refused.value.non_retryable


def test_inbound_message_header_id_is_unique(engine) -> None:  # noqa: ANN001
    def message() -> InboundMessage:
        return InboundMessage(
            message_header_id="same-header",
            bundle_id=str(uuid.uuid4()),
            event_code="careflow-appointment-message",
            sender_sor="200000000000001",
            content_type="application/fhir+json",
            body_enc="x",
        )

    with Session(engine, expire_on_commit=False) as session:
        session.add(message())
        session.commit()
    with Session(engine, expire_on_commit=False) as session:
        session.add(message())
        with pytest.raises(IntegrityError):
            session.commit()


def test_flow_list_filters_sorts_and_pages(engine) -> None:  # noqa: ANN001
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session:
        late = make_flow(session, step="appointment", deadline=now - timedelta(days=1))
        soon = make_flow(session, step="appointment", deadline=now + timedelta(days=1))
        other = make_flow(session, step="test_result", deadline=now + timedelta(days=5), cpr="0202505123")
        items, total = list_flows(session, FlowFilter(step="appointment"), limit=10, offset=0)
        assert total == 2 and [f.id for f in items] == [late.id, soon.id]
        assert items[0].overdue and not items[1].overdue
        items, total = list_flows(session, FlowFilter(overdue=True), limit=10, offset=0)
        assert [f.id for f in items] == [late.id]
        items, total = list_flows(session, FlowFilter(), limit=1, offset=1)
        assert total == 3 and [f.id for f in items] == [soon.id]
        items, _ = list_flows(session, FlowFilter(cpr_hash=cpr_lookup_hash("020250-5123", "k")), limit=10, offset=0)
        assert [f.id for f in items] == [other.id]
