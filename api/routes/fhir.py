"""Inbound MedCom messages from partner systems: `POST /fhir/$process-message`."""

from __future__ import annotations

import logging
import os
import random
from contextlib import suppress
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from api.deps import Partner, ReceiverDep, SessionDep
from api.errors import FHIR_JSON, outcome_response
from careflow.auth import Principal
from careflow.settings import Settings
from exchange.receiving import Receiver
from messaging import MessageError, decode_body, parse_message
from store.models import InboundMessage

log = logging.getLogger(__name__)
router = APIRouter(prefix="/fhir", tags=["inbound messages"])

ACCEPTED_TYPES = ("application/fhir+json", "application/json", "application/fhir+xml", "application/xml", "text/xml")
MAX_BODY = 5 * 1024 * 1024
RETRY_AFTER_SECONDS = 30


@router.post(
    "/$process-message",
    status_code=202,
    responses={
        400: {"description": "unreadable message"},
        403: {"description": "sender is not the authenticated partner"},
        415: {"description": "unsupported content type"},
        409: {"description": "Bundle.id reused with another MessageHeader.id; a fatal-error acknowledgement follows"},
        422: {"description": "invalid message; a fatal-error acknowledgement follows"},
        503: {"description": "careflow cannot store the message just now (transient): send it again later"},
    },
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
async def process_message(request: Request, partner: Partner, session: SessionDep, receiver: ReceiverDep) -> Response:
    """Receive a message: store it durably, deliver it to its pathway, acknowledge it to the sender."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        return outcome_response(
            415,
            f"content type {content_type or '(none)'!r} not supported: send application/fhir+json or "
            "application/fhir+xml",
        )
    body = await request.body()
    if len(body) > MAX_BODY:
        return outcome_response(413, "message too large")
    answer = await receive_message(request, partner, session, receiver, body, content_type)
    return Response(content=answer.body, status_code=answer.status, media_type=FHIR_JSON, headers=answer.headers)


@dataclass(frozen=True)
class Answer:
    """What careflow answers a message: status and OperationOutcome, and whether it was stored."""

    status: int
    body: bytes | str
    stored: InboundMessage | None = None
    duplicate: bool = False
    headers: dict[str, str] | None = None


async def receive_message(
    request: Request, partner: Principal, session: Session, receiver: Receiver, body: bytes, content_type: str
) -> Answer:
    """A partner's FHIR message, however it travelled ($process-message or inside a VANSEnvelope):
    parse, check the sender, store with its answer and acknowledgement, hand over for delivery.
    When the store cannot be reached nothing is kept and the answer is 503 (transient): the sender
    resends, and nothing is acknowledged ok that careflow did not keep."""
    try:
        as_json = decode_body(body, content_type)  # once: XML conversion is the costly part
        parsed = parse_message(as_json)
    except MessageError as err:
        outcome = outcome_response(
            400, [f"{i.rule}: {i.message}" for i in err.issues] or [str(err)], expression=[i.path for i in err.issues]
        )
        return Answer(400, outcome.body)
    if parsed.sender is None or (partner.sor and parsed.sender.sor != partner.sor):
        outcome = outcome_response(
            403, f"the MessageHeader sender must be the authenticated organisation (SOR {partner.sor})"
        )
        return Answer(403, outcome.body)
    try:
        row, handoff = await run_in_threadpool(receiver.receive, session, parsed, as_json, body, content_type)
    except SQLAlchemyError as err:
        with suppress(SQLAlchemyError):
            session.rollback()
        log.warning("message %s not stored: store unreachable (%s)", parsed.message_header_id, type(err).__name__)
        outcome = outcome_response(
            503, "careflow cannot store the message just now: nothing was kept; send it again later"
        )
        return Answer(503, outcome.body, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    duplicate = handoff is None or handoff.duplicate
    request.app.state.metrics.observe_inbound(
        row.event_code, row.delivery_status, row.response_code, duplicate=duplicate
    )
    if not duplicate:
        _maybe_crash_after_store(request.app.state.settings)
        log.info(
            "stored message %s (%s) from %s as %s",
            parsed.message_header_id,
            parsed.event_code,
            parsed.sender.sor,
            row.delivery_status,
        )
    else:
        log.info("duplicate message %s: answering as the first time", parsed.message_header_id)
    if handoff is not None:
        request.app.state.after_store(handoff)
    return Answer(row.answer_status, row.answer_body, row, duplicate)


def _maybe_crash_after_store(settings: Settings) -> None:
    """Fault injection (tests/faults): die between storing and delivering, as a power cut would."""
    ratio = settings.test_crash_after_store_ratio
    if ratio > 0 and settings.env == "dev" and random.random() < ratio:
        log.warning("test hook: exiting after store, before delivery")
        logging.shutdown()
        os._exit(1)
