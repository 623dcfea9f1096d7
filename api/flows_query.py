"""Read-model queries shared by the JSON API and the coordinator console."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from api.schemas import EscalationPublic, FlowDetail, FlowPublic, MessagePublic, PatientPublic, TimelineEntry
from api.scoping import restrict
from careflow.crypto import KeyRing
from messaging.model import PatientData
from store.models import Escalation, Flow, FlowEvent, InboundMessage, OutboundMessage, sealed_as, utcnow

SORTS = {
    "deadline": (col(Flow.next_deadline).is_(None), col(Flow.next_deadline).asc(), col(Flow.created_at).desc()),
    "newest": (col(Flow.created_at).desc(),),
    "oldest": (col(Flow.created_at).asc(),),
    "updated": (col(Flow.updated_at).desc(),),
}


@dataclass
class FlowFilter:
    status: str | None = None
    step: str | None = None
    pathway: str | None = None
    receiving_sor: str | None = None
    overdue: bool | None = None
    escalated: bool | None = None
    cpr_hash: str | None = None
    organisations: frozenset[str] | None = None  # the caller's scope (api/scoping.py); None: all

    def apply(self, query):  # noqa: ANN001, ANN201
        now = utcnow()
        query = restrict(query, self.organisations)
        for field in ("status", "step", "pathway", "receiving_sor", "cpr_hash"):
            value = getattr(self, field)
            if value:
                query = query.where(getattr(Flow, field) == value)
        if self.overdue is True:
            query = query.where(col(Flow.next_deadline) < now)
        elif self.overdue is False:
            query = query.where((col(Flow.next_deadline).is_(None)) | (col(Flow.next_deadline) >= now))
        if self.escalated is True:
            query = query.where(Flow.open_escalations > 0)
        return query


def list_flows(
    session: Session, flt: FlowFilter, *, limit: int, offset: int, sort: str = "deadline"
) -> tuple[list[FlowPublic], int]:
    total = session.exec(flt.apply(select(func.count()).select_from(Flow))).one()
    rows = session.exec(
        flt.apply(select(Flow)).order_by(*SORTS.get(sort, SORTS["deadline"])).offset(offset).limit(limit)
    ).all()
    return [flow_public(f) for f in rows], total


def flow_public(flow: Flow) -> FlowPublic:
    overdue = bool(
        flow.next_deadline and _aware(flow.next_deadline) < utcnow() and flow.status in ("active", "escalated")
    )
    return FlowPublic(**flow.model_dump(include=set(FlowPublic.model_fields) - {"overdue"}), overdue=overdue)


def flow_detail(session: Session, flow: Flow, key_ring: KeyRing) -> FlowDetail:
    now = utcnow()
    patient = PatientData.model_validate_json(
        key_ring.decrypt_text(flow.patient_enc, sealed_as(Flow, "patient_enc", flow.id))
    )
    events = session.exec(
        select(FlowEvent).where(FlowEvent.flow_id == flow.id).order_by(col(FlowEvent.at), col(FlowEvent.id))
    ).all()
    escalations = session.exec(
        select(Escalation).where(Escalation.flow_id == flow.id).order_by(col(Escalation.opened_at))
    ).all()
    outbound = session.exec(
        select(OutboundMessage).where(OutboundMessage.flow_id == flow.id).order_by(col(OutboundMessage.id))
    ).all()
    inbound = session.exec(
        select(InboundMessage).where(InboundMessage.flow_id == flow.id).order_by(col(InboundMessage.id))
    ).all()
    messages = [
        MessagePublic(
            direction="out",
            id=m.id,
            message_header_id=m.message_header_id,
            bundle_id=m.bundle_id,
            event_code=m.event_code,
            counterpart_sor=m.receiver_sor,
            at=m.sent_at or m.created_at,
            status=(f"acknowledged:{m.ack_code}" if m.ack_code else ("sent" if m.sent_at else "not-sent")),
            ack_code=m.ack_code,
            age_seconds=(now - _aware(m.created_at)).total_seconds(),
            waiting=m.ack_code is None,
            transport=m.transport,
            envelope_identifier=m.envelope_identifier,
            transport_receipt=m.transport_receipt,
        )
        for m in outbound
    ] + [
        MessagePublic(
            direction="in",
            id=m.id,
            message_header_id=m.message_header_id,
            bundle_id=m.bundle_id,
            event_code=m.event_code,
            counterpart_sor=m.sender_sor,
            at=m.received_at,
            status=m.delivery_status,
            ack_code=m.ack_code,
            age_seconds=(now - _aware(m.received_at)).total_seconds(),
            waiting=m.delivery_status == "received",
        )
        for m in inbound
    ]
    messages.sort(key=lambda m: m.at)
    deadlines = {step["name"]: step.get("deadline") for step in json.loads(flow.steps_json or "[]")}
    return FlowDetail(
        **flow_public(flow).model_dump(),
        patient=PatientPublic(cpr=patient.cpr, given_name=patient.given_name, family_name=patient.family_name),
        reason=key_ring.decrypt_text(flow.reason_enc, sealed_as(Flow, "reason_enc", flow.id)),
        deadlines=deadlines,
        timeline=[
            TimelineEntry(
                at=e.at, kind=e.kind, step=e.step, detail=e.detail, message_header_id=e.message_header_id, actor=e.actor
            )
            for e in events
        ],
        escalations=[
            EscalationPublic(
                id=e.id,
                step=e.step,
                reason=e.reason,
                opened_at=e.opened_at,
                resolved_at=e.resolved_at,
                resolved_by=e.resolved_by,
                resolution=e.resolution,
            )
            for e in escalations
        ],
        messages=messages,
    )


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
