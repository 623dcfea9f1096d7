"""Arguments and results of the activities, shared with the workflows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from messaging.model import CancellationContent, Envelope, ReferralContent
from workflows.models import PathwayState


class SendMessageRequest(BaseModel):
    flow_id: str
    step: str
    kind: str  # event code of a registered message type
    envelope: Envelope  # one Bundle.id per attempt: the idempotency key of the send
    attempt: int = 0
    content: dict[str, Any] | None = None  # for the message type's content model
    # The first engine's content fields, still in sends scheduled before the change.
    referral: ReferralContent | None = None
    cancellation: CancellationContent | None = None

    def message_content(self) -> BaseModel | dict[str, Any]:
        content = self.content if self.content is not None else (self.referral or self.cancellation)
        if content is None:
            raise ValueError(f"no content for the {self.kind} message")
        return content


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
