"""SQLModel tables. Tables are not API schemas: the API has its own *Public models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class FlowStatus:
    ACTIVE = "active"
    ESCALATED = "escalated"  # active, with an open escalation
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class FlowBase(SQLModel):
    pathway: str = Field(index=True)
    status: str = Field(default=FlowStatus.ACTIVE, index=True)
    step: str = Field(default="referral", index=True)
    referring_sor: str
    receiving_sor: str = Field(index=True)
    priority: str = "routine"
    next_deadline: datetime | None = Field(default=None, index=True)
    open_escalations: int = 0


class Flow(FlowBase, table=True):
    """The coordinators' read model of one pathway. Temporal holds the truth; this is its projection."""

    id: str = Field(primary_key=True)
    workflow_id: str = Field(unique=True)
    # Patient data: keyed hash for look-up, ciphertext for display. Never in clear.
    cpr_hash: str = Field(index=True)
    patient_enc: str = Field(sa_column=Column(Text, nullable=False))
    reason_enc: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None
    # The workflow's steps (name, status, deadline, completed_at) as JSON: no patient data.
    steps_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    # Monotonic version of the workflow's state, so a late projection never overwrites a newer one.
    state_version: int = 0
    # The pathway's parties, role -> SOR code (JSON): who may send what into this flow.
    parties_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}", server_default="{}"))
    # A flow started by an inbound message: its workflow input (encrypted), so whichever delivers
    # that message first starts the workflow with it (signal-with-start).
    start_enc: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class FlowEvent(SQLModel, table=True):
    """One line of a flow's timeline: a message sent or received, an acknowledgement, an escalation, an action."""

    __table_args__ = (UniqueConstraint("flow_id", "event_key"),)

    id: int | None = Field(default=None, primary_key=True)
    flow_id: str = Field(foreign_key="flow.id", index=True)
    event_key: str  # idempotency key: a retried activity records the same event once
    at: datetime = Field(default_factory=utcnow)
    kind: str  # sent | received | acknowledged | escalated | deadline | action | completed
    step: str = ""
    detail: str = ""
    message_header_id: str | None = None
    actor: str | None = None


class Escalation(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("flow_id", "escalation_key"),)

    id: int | None = Field(default=None, primary_key=True)
    flow_id: str = Field(foreign_key="flow.id", index=True)
    escalation_key: str
    step: str
    reason: str
    opened_at: datetime = Field(default_factory=utcnow, index=True)
    resolved_at: datetime | None = Field(default=None, index=True)
    resolved_by: str | None = None
    resolution: str | None = None


class InboundMessage(SQLModel, table=True):
    """Every message a partner posted, stored before it is answered. Unique by MessageHeader.id."""

    __table_args__ = (Index("ix_inbound_undelivered", "delivery_status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    message_header_id: str = Field(unique=True)
    bundle_id: str = Field(index=True)  # a Bundle.id seen again under another MessageHeader.id is refused
    event_code: str
    sender_sor: str = Field(index=True)
    receiver_sor: str = ""
    flow_id: str | None = Field(default=None, index=True)
    response_to: str | None = Field(default=None, index=True)  # acknowledgements: the acknowledged header id
    response_code: str | None = None
    content_type: str
    body_enc: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)
    # received -> delivered | undeliverable (an acknowledgement for no flow, or a late one) | rejected
    # (invalid, or refused: wrong sender or patient) | triage (matches no flow, or its pathway has
    # ended: kept for a coordinator, who attaches, reprocesses or rejects it)
    delivery_status: str = Field(default="received")
    status_reason: str | None = Field(
        default=None, sa_column=Column(Text, nullable=True)
    )  # why it was refused or left for triage
    patient_hash: str | None = Field(default=None, index=True)  # keyed hash of the message's CPR
    # Correlation ids it carries: a CareCommunication thread, a hospital stay's episode of care.
    thread_id: str | None = Field(default=None, index=True)
    episode_of_care_id: str | None = Field(default=None, index=True)
    triaged_by: str | None = None
    triaged_at: datetime | None = None
    delivered_at: datetime | None = None
    delivery_attempts: int = 0
    # The answer given the first time, replayed for duplicates.
    answer_status: int = 202
    answer_body: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # The acknowledgement careflow sends back to the sender.
    ack_code: str | None = None
    ack_enc: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    ack_sent_at: datetime | None = None
    ack_attempts: int = 0


class OutboundMessage(SQLModel, table=True):
    """Every message careflow sent; a resend keeps MessageHeader.id and gets a new Bundle.id (a new row)."""

    __table_args__ = (UniqueConstraint("bundle_id"),)

    id: int | None = Field(default=None, primary_key=True)
    message_header_id: str = Field(index=True)
    bundle_id: str
    flow_id: str | None = Field(default=None, index=True)
    step: str = ""
    event_code: str
    attempt: int = 0
    receiver_sor: str
    endpoint: str
    # Correlation ids it carries, so that an answer in the same thread or stay finds its flow.
    thread_id: str | None = Field(default=None, index=True)
    episode_of_care_id: str | None = Field(default=None, index=True)
    body_enc: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    http_status: int | None = None
    ack_code: str | None = None
    acked_at: datetime | None = None
    # How it travelled (messaging/transport.py): "process-message" or "vans"; for VANS, the
    # envelope's identifier and the transport receipt's kind (PositiveMessage, NegativeMessage, ...).
    transport: str = Field(default="process-message", sa_column_kwargs={"server_default": "process-message"})
    envelope_identifier: str | None = Field(default=None, index=True)
    transport_receipt: str | None = None


class InboundEnvelope(SQLModel, table=True):
    """Every VANSEnvelope posted to careflow, kept so transport duplicates are recognised across
    restarts (MedCom's cache of EnvelopeIdentifier and MetaInformation/Identifier), with the receipt
    careflow answered. A refused envelope (not XML, bad base64, not FHIR, too large, an envelope id
    reused) is kept too, its raw body sealed, for a coordinator to look at (GET /triage/envelopes)."""

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(unique=True)  # a random key: the sealed body's row key
    envelope_identifier: str | None = Field(default=None, unique=True)  # None: unreadable envelope
    message_identifier: str | None = Field(default=None, index=True)
    kind: str = "message"  # message | receipt (a partner's transport receipt)
    sender_gln: str = ""
    receiver_gln: str = ""
    partner_sor: str = ""  # the authenticated partner that posted it
    status: str = Field(default="accepted", index=True)  # accepted | refused
    reason_code: str | None = None  # e.g. envelope-bad-base64
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    message_header_id: str | None = Field(default=None, index=True)  # the FHIR message it carried
    receipt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # careflow's answer (ids only)
    answer_status: int = 200  # the HTTP status it was answered with, given again to a repeated envelope
    body_enc: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # refused ones only
    size_bytes: int = 0
    received_at: datetime = Field(default_factory=utcnow, index=True)


def sealed_as(table: type[SQLModel], column: str, row_key: str) -> str:
    """The context an encrypted column's value is bound to (AES-GCM associated data): table, column
    and the row's stable key, so a ciphertext copied to another row or column does not decrypt."""
    return f"{table.__tablename__}.{column}:{row_key}"


# Every encrypted column, with the attribute that keys its row (for `careflow keys reencrypt`).
ENCRYPTED_COLUMNS: dict[type[SQLModel], tuple[str, tuple[str, ...]]] = {
    Flow: ("id", ("patient_enc", "reason_enc", "start_enc")),
    InboundMessage: ("message_header_id", ("body_enc", "ack_enc")),
    OutboundMessage: ("bundle_id", ("body_enc",)),
    InboundEnvelope: ("ref", ("body_enc",)),
}


class AuditEntry(SQLModel, table=True):
    """Who read or changed which pathway, and when: append-only, hash-chained (store/audit.py)."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    role: str
    action: str
    flow_id: str | None = Field(default=None, index=True)
    detail: str = ""
    break_glass: bool = False  # a read outside the reader's scope, with its reason in detail
    seq: int | None = Field(default=None, unique=True)  # position in the chain (None: before the chain)
    prev_hash: str | None = None
    entry_hash: str | None = None


class ConsoleLogin(SQLModel, table=True):
    """A console session, kept server-side: the cookie only names it (a random id, stored hashed).
    Logout ends it; so does the same person's next login under another role or organisations."""

    sid_hash: str = Field(primary_key=True)
    subject: str = Field(index=True)
    role: str
    organisations_json: str = "[]"
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None


class AuditHead(SQLModel, table=True):
    """The chain's end, one row: updating it first serialises appends across processes."""

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str
