"""API request and response models (not the tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field, field_validator

from workflows.referral import ReferralInput

T = TypeVar("T")


class ReferralCreate(ReferralInput):
    """`POST /referrals`: the referral pathway's input (the alias of `POST /pathways/referral/flows`)."""

    pathway: str = Field(default="referral", description="a pathway whose input is the referral's (default: referral)")


class FlowAccepted(BaseModel):
    id: str
    url: str


ReferralAccepted = FlowAccepted


class PathwayPublic(BaseModel):
    """A declared pathway, as data."""

    name: str
    title: str
    title_da: str
    description: str
    api_start: bool
    parties: list[dict]
    steps: list[dict]
    starts: list[dict]
    timings: dict
    input_schema: dict
    alongside: list[dict] = []
    legal_rules: list[str] = []


class ApplyRulesIn(BaseModel):
    """A coordinator's decision that a running pathway keeps another version of the legal deadline rules."""

    version: str = Field(min_length=1, max_length=32)
    reason: str = Field(min_length=1, max_length=2000)


class EventIn(BaseModel):
    """An event outside messaging, reported to a running flow."""

    reason: str = Field(default="", max_length=2000)
    data: dict = Field(default_factory=dict)


class FlowPublic(BaseModel):
    id: str
    pathway: str
    status: str
    step: str
    referring_sor: str
    receiving_sor: str
    priority: str
    next_deadline: datetime | None
    overdue: bool
    open_escalations: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class PatientPublic(BaseModel):
    cpr: str
    given_name: str
    family_name: str


class TimelineEntry(BaseModel):
    at: datetime
    kind: str
    step: str
    detail: str
    message_header_id: str | None
    actor: str | None


class EscalationPublic(BaseModel):
    id: int
    step: str
    reason: str
    opened_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


class MessagePublic(BaseModel):
    direction: Literal["in", "out"]
    id: int
    message_header_id: str
    bundle_id: str
    event_code: str
    counterpart_sor: str
    at: datetime
    status: str  # out: sent / not-sent / acknowledged:<code>; in: delivered / received / undeliverable / rejected
    ack_code: str | None
    age_seconds: float
    waiting: bool  # out: no acknowledgement yet; in: not yet delivered to its pathway
    # out: how it travelled ("process-message" or "vans"), its VANSEnvelope's id and the transport receipt
    transport: str | None = None
    envelope_identifier: str | None = None
    transport_receipt: str | None = None


class FlowDetail(FlowPublic):
    patient: PatientPublic
    reason: str
    deadlines: dict[str, datetime | None]
    timeline: list[TimelineEntry]
    escalations: list[EscalationPublic]
    messages: list[MessagePublic]


class CprSearch(BaseModel):
    cpr: str

    @field_validator("cpr")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return value.replace("-", "").strip()
