"""Arguments and results of the activities, shared with the workflows."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from messaging.model import CancellationContent, Envelope, MessageKind, ReferralContent
from workflows.models import PathwayState


class SendMessageRequest(BaseModel):
    flow_id: str
    step: str
    kind: MessageKind
    envelope: Envelope  # one Bundle.id per attempt: the idempotency key of the send
    attempt: int = 0
    referral: ReferralContent | None = None
    cancellation: CancellationContent | None = None


class SendMessageResult(BaseModel):
    bundle_id: str
    http_status: int


class TimelineEvent(BaseModel):
    key: str  # unique per flow: a retried activity records it once
    at: datetime
    kind: str
    step: str = ""
    detail: str = ""
    message_header_id: str | None = None
    actor: str | None = None


class RecordStateRequest(BaseModel):
    """Project the workflow's state into the read model, with the timeline events since the last time."""

    state: PathwayState
    events: list[TimelineEvent] = Field(default_factory=list)


class ActivityErrors:
    """Domain failures that retrying cannot fix (non-retryable ApplicationError types)."""

    NOT_ACCEPTED = "NotAccepted"
    UNKNOWN_ORGANIZATION = "UnknownOrganization"
    PARTNER_REJECTED = "PartnerRejected"
    FLOW_NOT_FOUND = "FlowNotFound"
