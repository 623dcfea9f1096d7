"""Inputs, signal/update arguments, results and viewer state of the pathway workflows.

One model per signal/update argument, so fields can be added without breaking running workflows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from messaging.model import AckCode, MessageKind, Organization, PatientData


class PathwayTimings(BaseModel):
    """Deadlines and the resend rule of one pathway (set per pathway in settings)."""

    ack_timeout: timedelta = timedelta(minutes=30)
    max_resends: int = 2
    appointment_deadline: timedelta = timedelta(days=30)
    test_result_deadline: timedelta = timedelta(days=14)
    treatment_plan_deadline: timedelta = timedelta(days=14)


class PathwayInput(BaseModel):
    """Everything a pathway needs to run. Holds patient data: only ever in encrypted payloads."""

    flow_id: str
    pathway: str
    patient: PatientData
    referring: Organization
    receiving: Organization
    reason: str
    priority: str = "routine"
    timings: PathwayTimings = Field(default_factory=PathwayTimings)


class PathwayStatus(StrEnum):
    ACTIVE = "active"
    ESCALATED = "escalated"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class StepStatus(StrEnum):
    PENDING = "pending"
    WAITING = "waiting"
    OVERDUE = "overdue"
    DONE = "done"
    DONE_OUTSIDE = "done-outside-careflow"
    SKIPPED = "skipped"


class StepState(BaseModel):
    name: str
    status: StepStatus = StepStatus.PENDING
    deadline: datetime | None = None
    completed_at: datetime | None = None
    message_header_id: str | None = None


class OutboundState(BaseModel):
    step: str
    kind: MessageKind
    message_header_id: str
    bundle_ids: list[str] = Field(default_factory=list)
    ack_code: AckCode | None = None
    first_sent_at: datetime | None = None


class EscalationState(BaseModel):
    key: str
    step: str
    reason: str
    opened_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = None


class PathwayState(BaseModel):
    """What a viewer (query) sees of a pathway. No patient data."""

    flow_id: str
    pathway: str
    status: PathwayStatus = PathwayStatus.ACTIVE
    step: str
    steps: list[StepState]
    outbound: list[OutboundState] = Field(default_factory=list)
    escalations: list[EscalationState] = Field(default_factory=list)
    received_header_ids: list[str] = Field(default_factory=list)
    version: int = 0

    @property
    def open_escalations(self) -> list[EscalationState]:
        return [e for e in self.escalations if e.resolved_at is None]

    @property
    def next_deadline(self) -> datetime | None:
        deadlines = [s.deadline for s in self.steps if s.deadline and s.status in (StepStatus.WAITING, StepStatus.OVERDUE)]
        return min(deadlines) if deadlines else None


class PathwayResult(BaseModel):
    flow_id: str
    status: PathwayStatus
    escalations: int


class InboundMessageSignal(BaseModel):
    """A stored inbound message, delivered to its pathway. Carries no patient data."""

    message_header_id: str
    kind: MessageKind
    sender_sor: str
    received_at: datetime
    response_to: str | None = None  # acknowledgements: the acknowledged MessageHeader.id
    response_code: AckCode | None = None
    summary: str = ""


class CoordinatorAction(BaseModel):
    actor: str
    reason: str


class CancelRequest(CoordinatorAction):
    pass


class ResendRequest(CoordinatorAction):
    pass


class ExtendDeadlineRequest(CoordinatorAction):
    step: str
    new_deadline: datetime


class CompleteStepRequest(CoordinatorAction):
    step: str


class ActionResult(BaseModel):
    accepted: bool = True
    detail: str = ""
