"""Inputs, signal/update arguments, results and viewer state of the pathway workflows.

One model per signal/update argument, so fields can be added without breaking running workflows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from messaging.identifiers import is_valid_cpr
from messaging.model import AckCode, Organization, PatientData


class Timings(BaseModel):
    """The resend rule every pathway shares; a pathway's own timings model adds its deadlines.
    Each field can be set per pathway: CAREFLOW_PATHWAYS__<NAME>__<FIELD> (NAME with _ for -)."""

    ack_timeout: timedelta = timedelta(minutes=30)
    max_resends: int = 2


class PathwayTimings(Timings):
    """The referral pathway's timings (the first pathway's; kept under this name for its histories)."""

    appointment_deadline: timedelta = timedelta(days=30)
    test_result_deadline: timedelta = timedelta(days=14)
    treatment_plan_deadline: timedelta = timedelta(days=14)


class PatientIn(BaseModel):
    """The patient a pathway is about, as a clinician's system sends it. Patient data."""

    cpr: str = Field(description="CPR number, 10 digits (DDMMYY + 4), with or without a dash", examples=["0101901234"])
    given_name: str = Field(default="", max_length=200)
    family_name: str = Field(default="", max_length=200)

    @field_validator("cpr")
    @classmethod
    def _valid_cpr(cls, value: str) -> str:
        value = value.replace("-", "").strip()
        if not is_valid_cpr(value):
            # Never echo the value: it is patient data.
            raise ValueError("not a valid CPR number (10 digits, DDMMYY + 4, valid day and month)")
        return value

    def data(self) -> PatientData:
        return PatientData(cpr=self.cpr, given_name=self.given_name, family_name=self.family_name)


class PathwayStart(BaseModel):
    """What every pathway's input model holds: the patient. A pathway adds its own fields."""

    patient: PatientIn


class PathwayInput(BaseModel):
    """Everything a pathway run needs: its parties resolved to organisations, the pathway's own
    input (`data`, validated by the pathway's input model) and its timings. Holds patient data:
    only ever in encrypted payloads."""

    flow_id: str
    pathway: str
    patient: PatientData
    parties: dict[str, Organization] = Field(default_factory=dict)  # role -> organisation
    data: dict[str, Any] = Field(default_factory=dict)  # the input model's fields but the patient
    timings: dict[str, Any] = Field(default_factory=dict)  # the pathway's timings model, as JSON
    patient_hash: str | None = None  # keyed hash of the CPR: inbound messages are checked against it
    # The legal deadline rules in force when the pathway started (careflow.deadlines.DeadlineRules as
    # JSON), for pathways whose steps meet legal deadlines; a coordinator may apply a newer version.
    rules: dict[str, Any] | None = None
    # The first (referral-only) shape, still in the histories of running referral pathways.
    referring: Organization | None = None
    receiving: Organization | None = None
    reason: str = ""
    priority: str = "routine"

    @field_validator("timings", mode="before")
    @classmethod
    def _timings_as_json(cls, value: object) -> object:
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value

    @model_validator(mode="after")
    def _first_shape(self) -> PathwayInput:
        """A referral input of the first shape: its two organisations become the two parties."""
        if not self.parties and self.referring and self.receiving:
            self.parties = {"requester": self.referring, "performer": self.receiving}
            self.data = {"reason": self.reason, "priority": self.priority, **self.data}
        return self


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
    legal_deadline: datetime | None = None  # the earliest legal deadline (careflow.deadlines) not yet breached


class OutboundState(BaseModel):
    step: str
    kind: str  # event code of the message type
    message_header_id: str
    bundle_ids: list[str] = Field(default_factory=list)
    ack_code: AckCode | None = None
    first_sent_at: datetime | None = None
    receiver_sor: str | None = None  # only the receiver may acknowledge it (None: sent before this was kept)


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
    refused_header_ids: list[str] = Field(default_factory=list)  # delivered, refused: wrong sender or patient
    # Parties that changed while the pathway ran (role -> SOR), e.g. a referral forwarded elsewhere.
    party_changes: dict[str, str] = Field(default_factory=dict)
    rules_version: str | None = None  # the legal deadline rules the pathway keeps (None: none apply)
    version: int = 0

    @property
    def open_escalations(self) -> list[EscalationState]:
        return [e for e in self.escalations if e.resolved_at is None]

    @property
    def next_deadline(self) -> datetime | None:
        deadlines = [
            d
            for s in self.steps
            if s.status in (StepStatus.WAITING, StepStatus.OVERDUE)
            for d in (s.deadline, s.legal_deadline)
            if d is not None
        ]
        return min(deadlines) if deadlines else None


class PathwayResult(BaseModel):
    flow_id: str
    status: PathwayStatus
    escalations: int


class InboundMessageSignal(BaseModel):
    """A stored inbound message, delivered to its pathway. Carries no patient data."""

    message_header_id: str
    kind: str  # event code of the message type
    sender_sor: str
    received_at: datetime
    response_to: str | None = None  # acknowledgements: the acknowledged MessageHeader.id
    response_code: AckCode | None = None
    summary: str = ""
    # Keyed hash of the CPR (or replacement CPR) the message is about, checked against the
    # pathway's (None: not known, or delivered before this was carried). Not patient data in clear.
    patient_hash: str | None = None
    outcome: str | None = None  # a decision the message carries (e.g. a triage Task's status)
    forward_to: str | None = None  # the SOR code a forwarding decision names (the new receiver)


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


class ApplyRulesRequest(CoordinatorAction):
    rules: dict[str, Any]  # careflow.deadlines.DeadlineRules as JSON: the version to keep from now on


class EventReport(CoordinatorAction):
    """Something that happened outside messaging (a discharge), reported through the API or console."""

    event: str
    role: str
    data: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""


class ActionResult(BaseModel):
    accepted: bool = True
    detail: str = ""
