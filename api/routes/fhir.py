"""Inbound MedCom messages from partner systems: `POST /fhir/$process-message`."""

from __future__ import annotations

import json
import logging
import os
import random
import uuid

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from api.deps import KeyRingDep, Partner, SessionDep
from api.errors import FHIR_JSON, operation_outcome, outcome_response
from careflow.crypto import KeyRing
from careflow.delivery import DeliveryStatus
from careflow.settings import Settings
from messaging import MessageError, build_acknowledgement, decode_body, needs_acknowledgement, parse_message, validate_message
from messaging.model import AckCode, MessageKind, ParsedMessage, ValidationIssue
from store.models import Flow, InboundMessage, OutboundMessage, utcnow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/fhir", tags=["inbound messages"])

ACCEPTED_TYPES = ("application/fhir+json", "application/json", "application/fhir+xml", "application/xml", "text/xml")
MAX_BODY = 5 * 1024 * 1024


@router.post(
    "/$process-message",
    status_code=202,
    responses={400: {"description": "unreadable message"}, 403: {"description": "sender is not the authenticated partner"}, 415: {"description": "unsupported content type"}, 422: {"description": "invalid message; a fatal-error acknowledgement follows"}},
    # The body is read raw (JSON or XML), so describe it for partner developers here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A MedCom FHIR message: a Bundle of type `message` whose first entry is the MessageHeader. "
            "The MessageHeader's sender must be the authenticated partner's organisation (SOR).",
            "content": {
                "application/fhir+json": {"schema": {"type": "object", "required": ["resourceType", "type", "entry"]}},
                "application/fhir+xml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def process_message(request: Request, partner: Partner, session: SessionDep, key_ring: KeyRingDep) -> Response:
    """Receive a message: store it durably, deliver it to its pathway, acknowledge it to the sender."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        return outcome_response(415, f"content type {content_type or '(none)'!r} not supported: send application/fhir+json or application/fhir+xml")
    body = await request.body()
    if len(body) > MAX_BODY:
        return outcome_response(413, "message too large")
    try:
        as_json = decode_body(body, content_type)  # once: XML conversion is the costly part
        parsed = parse_message(as_json)
    except MessageError as err:
        return outcome_response(400, [f"{i.rule}: {i.message}" for i in err.issues] or [str(err)], expression=[i.path for i in err.issues])
    if parsed.sender is None or (partner.sor and parsed.sender.sor != partner.sor):
        return outcome_response(403, f"the MessageHeader sender must be the authenticated organisation (SOR {partner.sor})")

    row, stored_now = await run_in_threadpool(_store, session, key_ring, parsed, as_json, body, content_type)
    request.app.state.metrics.observe_inbound(row.event_code, row.delivery_status, row.response_code, duplicate=not stored_now)
    if stored_now:
        _maybe_crash_after_store(request.app.state.settings)
        log.info("stored message %s (%s) from %s as %s", parsed.message_header_id, parsed.event_code, parsed.sender.sor, row.delivery_status)
        request.app.state.after_store(row.id)
    else:
        log.info("duplicate message %s: answering as the first time", parsed.message_header_id)
    return _stored_answer(row)


def _store(session: Session, key_ring: KeyRing, parsed: ParsedMessage, as_json: dict, body: bytes, content_type: str) -> tuple[InboundMessage, bool]:
    """Validate, correlate and commit the message with its answer and acknowledgement (in a worker
    thread: database I/O stays off the event loop). Returns the row and whether it is new; a
    duplicate returns the row stored the first time."""
    existing = _existing(session, parsed.message_header_id)
    if existing is not None:
        return existing, False
    issues = validate_message(as_json)
    row = InboundMessage(
        message_header_id=parsed.message_header_id,
        bundle_id=parsed.bundle_id,
        event_code=parsed.event_code,
        sender_sor=parsed.sender.sor,
        receiver_sor=parsed.receiver.sor if parsed.receiver else "",
        response_to=parsed.response_identifier,
        response_code=parsed.response_code.value if parsed.response_code else None,
        content_type=content_type,
        body_enc=key_ring.encrypt_text(body.decode("utf-8", errors="replace")),
    )
    status, answer, ack_code = _decide(session, parsed, issues, row)
    row.answer_status, row.answer_body = status, json.dumps(answer)
    if ack_code is not None and needs_acknowledgement(parsed):
        ack = build_acknowledgement(as_json, code=ack_code, message_header_id=str(uuid.uuid4()), bundle_id=str(uuid.uuid4()), timestamp=utcnow(), issues=issues)
        row.ack_code, row.ack_enc = ack_code.value, key_ring.encrypt_text(json.dumps(ack))
    session.add(row)
    try:
        if parsed.kind is MessageKind.ACKNOWLEDGEMENT and parsed.response_identifier:
            _record_acknowledgement(session, parsed)  # same transaction: a crash cannot split the two
        session.commit()  # durable before any answer
    except IntegrityError:
        # The same MessageHeader.id committed a moment ago (another request or API process).
        session.rollback()
        return _existing(session, parsed.message_header_id), False
    return row, True


def _maybe_crash_after_store(settings: Settings) -> None:
    """Fault injection (tests/faults): die between storing and delivering, as a power cut would."""
    ratio = settings.test_crash_after_store_ratio
    if ratio > 0 and settings.env == "dev" and random.random() < ratio:
        log.warning("test hook: exiting after store, before delivery")
        logging.shutdown()
        os._exit(1)


def _decide(session: Session, parsed: ParsedMessage, issues: list[ValidationIssue], row: InboundMessage) -> tuple[int, dict, AckCode | None]:
    """Correlate to a pathway and choose the HTTP answer and the acknowledgement."""
    if issues:
        row.delivery_status = DeliveryStatus.REJECTED
        return 422, operation_outcome([f"{i.rule} at {i.path}: {i.message}" for i in issues], expression=[i.path for i in issues]), AckCode.FATAL_ERROR
    if parsed.kind is None:
        row.delivery_status = DeliveryStatus.REJECTED
        issue = ValidationIssue(rule="careflow-event-known", path="Bundle.entry[0].resource.eventCoding", message=f"event {parsed.event_code} is not handled by careflow", error_code="MSG_RECEIVER_UNABLE_TO_RECEIVE_MSG_TYPE")
        issues.append(issue)
        return 422, operation_outcome(issue.message, code="not-supported"), AckCode.FATAL_ERROR
    if parsed.kind is MessageKind.ACKNOWLEDGEMENT:
        sent = session.exec(select(OutboundMessage).where(OutboundMessage.message_header_id == parsed.response_identifier)).first()
        row.flow_id = sent.flow_id if sent else None
        if row.flow_id is None:
            row.delivery_status = DeliveryStatus.UNDELIVERABLE
            log.warning("acknowledgement %s for unknown message %s: kept, not delivered", parsed.message_header_id, parsed.response_identifier)
        return 202, _accepted(parsed), None
    flow = session.get(Flow, parsed.service_request_id) if parsed.service_request_id else None
    if flow is None:
        row.delivery_status = DeliveryStatus.UNDELIVERABLE
        issue = ValidationIssue(
            rule="careflow-correlation",
            path="Bundle.entry.resource.basedOn",
            message="the message refers to no pathway careflow knows (unknown ServiceRequest identifier)",
            error_code="MSG_VALUESET_VALUE_UNKNOWN",
        )
        issues.append(issue)
        return 422, operation_outcome(issue.message, code="not-found", expression=[issue.path]), AckCode.FATAL_ERROR
    row.flow_id = flow.id
    return 202, _accepted(parsed), AckCode.OK


def _accepted(parsed: ParsedMessage) -> dict:
    return operation_outcome(f"message {parsed.message_header_id} accepted", code="informational", severity="information")


def _record_acknowledgement(session: Session, parsed: ParsedMessage) -> None:
    """Mark the acknowledged outbound message (all its sends), for the coordinators' views; the
    caller commits it with the stored acknowledgement."""
    for sent in session.exec(select(OutboundMessage).where(OutboundMessage.message_header_id == parsed.response_identifier)).all():
        if sent.ack_code is None:
            sent.ack_code, sent.acked_at = parsed.response_code.value if parsed.response_code else None, utcnow()
            session.add(sent)
        else:
            log.info("late or duplicate acknowledgement for %s ignored", parsed.response_identifier)


def _existing(session: Session, header_id: str) -> InboundMessage | None:
    return session.exec(select(InboundMessage).where(InboundMessage.message_header_id == header_id)).first()


def _stored_answer(row: InboundMessage) -> Response:
    return Response(content=row.answer_body, status_code=row.answer_status, media_type=FHIR_JSON)
