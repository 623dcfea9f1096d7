"""API request and response models (not the tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field, field_validator

from messaging.identifiers import is_valid_cpr

T = TypeVar("T")


class PatientIn(BaseModel):
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


class ReferralCreate(BaseModel):
    patient: PatientIn
    referring_sor: str = Field(description="SOR code of the referring organisation", pattern=r"^\d{6,18}$")
    receiving_sor: str = Field(description="SOR code of the receiving organisation", pattern=r"^\d{6,18}$")
    reason: str = Field(min_length=1, max_length=2000)
    priority: Literal["routine", "urgent", "asap", "stat"] = "routine"
    pathway: str = "referral"


class ReferralAccepted(BaseModel):
    id: str
    url: str


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
