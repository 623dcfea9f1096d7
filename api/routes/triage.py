"""The triage queue: messages that match no flow, for a coordinator to attach, reprocess or reject."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import Coordinator, Scope, SessionDep
from exchange.enveloping import refused_envelopes
from exchange.triage import Triage, TriageRefused, held


def whole_region(scope: Scope) -> None:
    """Held messages belong to no flow yet, so to no organisation's scope: triage is for
    coordinators of every organisation (`*`) and admins."""
    if scope is not None:
        raise HTTPException(
            403, "the triage queue is for coordinators of all organisations: held messages belong to no flow yet"
        )


router = APIRouter(prefix="/triage", tags=["triage"], dependencies=[Depends(whole_region)])
MessageId = Annotated[int, Path(ge=1, le=2**62)]  # a database id: larger is no id, not a 500


class HeldMessage(BaseModel):
    """A message held for triage (no patient data: the body stays encrypted in the store)."""

    id: int
    message_header_id: str
    event_code: str
    sender_sor: str
    received_at: datetime
    reason: str | None
    flow_id: str | None


class Attach(BaseModel):
    flow_id: str
    reason: str = Field(min_length=1, max_length=2000)


class Reject(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


def _public(row) -> HeldMessage:  # noqa: ANN001
    return HeldMessage(
        id=row.id,
        message_header_id=row.message_header_id,
        event_code=row.event_code,
        sender_sor=row.sender_sor,
        received_at=row.received_at,
        reason=row.status_reason,
        flow_id=row.flow_id,
    )


def _triage(request: Request) -> Triage:
    return Triage(request.app.state.receiver, request.app.state.key_ring)


async def _act(request: Request, action, *args: object) -> HeldMessage:  # noqa: ANN001
    try:
        row = await run_in_threadpool(action, *args)
    except TriageRefused as err:
        raise HTTPException(err.status, err.detail) from None
    request.app.state.after_store(row.id)  # deliver (attached) and send the acknowledgement
    return _public(row)


@router.get("", response_model=list[HeldMessage])
def list_held(user: Coordinator, session: SessionDep) -> list[HeldMessage]:
    """Messages held for a coordinator, oldest first."""
    return [_public(r) for r in held(session)]


@router.post(
    "/{message_id}/attach",
    response_model=HeldMessage,
    responses={404: {"description": "no such message or flow"}, 409: {"description": "the flow cannot take it"}},
)
async def attach(
    message_id: MessageId, body: Attach, request: Request, user: Coordinator, session: SessionDep
) -> HeldMessage:
    """Give the message to a flow (its parties and patient must match); it is delivered and acknowledged."""
    return await _act(
        request, _triage(request).attach, session, message_id, body.flow_id, user.subject, user.role.value, body.reason
    )


@router.post(
    "/{message_id}/reprocess",
    response_model=HeldMessage,
    responses={404: {"description": "no such message"}, 409: {"description": "still matches nothing"}},
)
async def reprocess(message_id: MessageId, request: Request, user: Coordinator, session: SessionDep) -> HeldMessage:
    """Correlate the message again (its flow may exist by now)."""
    return await _act(request, _triage(request).reprocess, session, message_id, user.subject, user.role.value)


@router.post("/{message_id}/reject", response_model=HeldMessage, responses={404: {"description": "no such message"}})
async def reject(
    message_id: MessageId, body: Reject, request: Request, user: Coordinator, session: SessionDep
) -> HeldMessage:
    """Refuse it: the sender gets a fatal-error acknowledgement with the reason."""
    return await _act(request, _triage(request).reject, session, message_id, user.subject, user.role.value, body.reason)


class RefusedEnvelope(BaseModel):
    """A VANSEnvelope careflow refused (not XML, bad base64, not FHIR, too large, an envelope id
    reused, ...): what a coordinator needs to take it up with the sender. The body stays sealed."""

    id: int
    received_at: datetime
    partner_sor: str
    sender_gln: str
    receiver_gln: str
    envelope_identifier: str | None
    reason_code: str | None
    reason: str | None
    size_bytes: int
    answer_status: int


@router.get("/envelopes", response_model=list[RefusedEnvelope])
def list_refused_envelopes(user: Coordinator, session: SessionDep) -> list[RefusedEnvelope]:
    """Envelopes careflow refused at the transport level, newest first."""
    return [RefusedEnvelope.model_validate(r, from_attributes=True) for r in refused_envelopes(session)]
