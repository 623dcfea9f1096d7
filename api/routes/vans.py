"""Inbound VANSEnvelopes from partner systems: `POST /vans/envelope`, answered with a VANS receipt."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError

from api.deps import DirectoryDep, KeyRingDep, Partner, ReceiverDep, SessionDep, SettingsDep
from api.errors import outcome_response
from api.routes.fhir import RETRY_AFTER_SECONDS, receive_message
from exchange.enveloping import EnvelopeReceiver, EnvelopeRefused
from messaging.formats import MAX_JSON_DEPTH, json_depth_exceeded
from messaging.vans import (
    VANS_CONTENT_TYPE,
    EnvelopeError,
    EnvelopeStructure,
    ReceiptKind,
    TransportDuplicate,
    VansReceipt,
    parse_envelope,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/vans", tags=["inbound messages"])


@router.post(
    "/envelope",
    status_code=200,
    responses={
        200: {"description": "a VANS receipt (PositiveMessage): the envelope arrived and its message was taken"},
        202: {"description": "a partner's receipt for an envelope careflow sent, noted"},
        400: {"description": "not XML, not a VANSEnvelope, or bad base64 (kept for triage)"},
        403: {"description": "SenderID is not the authenticated partner's GLN (kept for triage)"},
        409: {"description": "EnvelopeIdentifier reused for another message, or a Bundle.id reused (kept)"},
        413: {"description": "over the size limit (kept for triage, its first 64 KB)"},
        415: {"description": "the MCM:MIME service tag names no FHIR format (kept for triage)"},
        422: {"description": "not for an organisation careflow acts for, or an invalid message (kept)"},
        503: {"description": "careflow cannot store the message just now (transient): send it again later"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A VANSEnvelope (urn:oio:medcom:vans-envelope:1.0.4) holding one MedCom FHIR message, "
            "base64 in Message/Data with its MIME type in the MCM:MIME service tag; or a Receipt.",
            "content": {"application/xml": {"schema": {"type": "string"}}},
        }
    },
)
async def receive_envelope(
    request: Request,
    partner: Partner,
    session: SessionDep,
    receiver: ReceiverDep,
    directory: DirectoryDep,
    key_ring: KeyRingDep,
    settings: SettingsDep,
) -> Response:
    """Receive an envelope: transport duplicates answered with their first receipt; the message
    inside received as any FHIR message; a receipt answered (the MedCom acknowledgement follows)."""
    envelopes = EnvelopeReceiver(key_ring, directory)
    body = await request.body()
    try:
        try:
            envelope = parse_envelope(body, max_bytes=settings.max_envelope_bytes)
            envelopes.check_parties(envelope, partner.sor or "")
        except EnvelopeError as err:
            limit = settings.max_envelope_bytes
            await run_in_threadpool(envelopes.refuse, session, body, err, partner.sor or "", limit=limit)
            return outcome_response(err.status, f"{err.code}: {err}")
        if isinstance(envelope, VansReceipt):
            known = await run_in_threadpool(envelopes.record_receipt, session, envelope, partner.sor or "")
            return Response(status_code=202 if known else 422)
        case, first = await run_in_threadpool(envelopes.classify, session, envelope)
        if case is TransportDuplicate.ENVELOPE_REUSED:
            err = EnvelopeRefused(
                409,
                "envelope-reused",
                f"EnvelopeIdentifier {envelope.envelope_identifier} was received before with another message",
            )
            await run_in_threadpool(envelopes.refuse, session, body, err, partner.sor or "", limit=len(body))
            # MedCom (VANS reliable messaging): an error, answered with a negative receipt.
            negative = envelopes.receipt(envelope, 409, err.code, str(err), kind=ReceiptKind.NEGATIVE_VANS)
            return Response(negative, status_code=409, media_type=VANS_CONTENT_TYPE)
        if case is TransportDuplicate.REPEATED and first is not None:
            log.info("envelope %s received again: its first receipt", envelope.envelope_identifier)
            return Response(first.receipt or b"", status_code=first.answer_status, media_type=VANS_CONTENT_TYPE)
    except SQLAlchemyError as err:
        log.warning("envelope not taken: store unreachable (%s)", type(err).__name__)
        return outcome_response(
            503,
            "careflow cannot store the envelope just now: nothing was kept; send it again later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if "json" in envelope.meta.mime_type and json_depth_exceeded(envelope.data):
        err = EnvelopeStructure(f"the message's JSON is nested deeper than {MAX_JSON_DEPTH} levels")
        await run_in_threadpool(envelopes.refuse, session, body, err, partner.sor or "", limit=len(body))
        return outcome_response(400, f"{err.code}: {err}")
    # The message: as any FHIR message (a MessageHeader.id seen before gets its acknowledgement again).
    answer = await receive_message(request, partner, session, receiver, envelope.data, envelope.meta.mime_type)
    if answer.status == 503:
        return Response(answer.body, status_code=503, media_type="application/fhir+json", headers=answer.headers)
    if case is TransportDuplicate.RECEIPT_LOST and first is not None and first.receipt:
        receipt = first.receipt.encode()  # MedCom: the message under a new envelope id: the original receipt
    else:
        receipt = envelopes.receipt(envelope, answer.status, "message-refused", _diagnostics(answer.body))
    status = 200 if answer.status < 300 else answer.status
    try:
        await run_in_threadpool(
            envelopes.record,
            session,
            envelope,
            partner.sor or "",
            status=status,
            receipt=receipt,
            message_header_id=answer.stored.message_header_id if answer.stored is not None else None,
            body=body,
            reason=None if answer.stored is not None else _diagnostics(answer.body),
        )
    except SQLAlchemyError as err:  # the message is stored; the envelope's note is not
        log.warning("envelope %s not noted (%s)", envelope.envelope_identifier, type(err).__name__)
    return Response(receipt, status_code=status, media_type=VANS_CONTENT_TYPE)


def _diagnostics(outcome: bytes | str) -> str:
    """The reasons in an OperationOutcome answer, for a negative receipt (no patient data)."""
    import json

    try:
        issues = json.loads(outcome).get("issue", [])
    except (ValueError, AttributeError):
        return ""
    return "; ".join(str(i.get("diagnostics", "")) for i in issues if isinstance(i, dict))[:500]
