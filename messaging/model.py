"""Domain-level message models shared by workflows, activities, API and simulator.

Plain pydantic (no fhir.resources), so workflow code can import them cheaply and they
serialise through Temporal's pydantic data converter.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class MessageKind(StrEnum):
    """The built-in message types' event codes, as constants.

    Not the list of types: that is the registry (messaging.types.MESSAGE_TYPES), which a pathway
    module may extend with a type of its own. Kept because running workflows' recorded histories
    carry these values, and names are handier than strings in pathway declarations.
    """

    # careflow's own MedCom-style messages (no released MedCom FHIR standard yet)
    REFERRAL = "careflow-referral-message"
    APPOINTMENT = "careflow-appointment-message"
    TEST_RESULT = "careflow-test-result-message"
    TREATMENT_PLAN = "careflow-treatment-plan-message"
    CANCELLATION = "careflow-cancellation-message"
    # released MedCom FHIR messages
    ACKNOWLEDGEMENT = "acknowledgement-message"
    CARE_COMMUNICATION = "care-communication-message"
    HOSPITAL_NOTIFICATION = "hospital-notification-message"
    HOMECARE_OBSERVATION = "homecareobservation-message"


class AckCode(StrEnum):
    OK = "ok"
    TRANSIENT_ERROR = "transient-error"
    FATAL_ERROR = "fatal-error"


class Organization(BaseModel):
    """A messaging party, addressed by SOR code and EAN/GLN location number."""

    sor: str
    ean: str
    name: str


class PatientData(BaseModel):
    """The patient a message is about. Patient data: never log it, never put it in ids."""

    cpr: str
    given_name: str = ""
    family_name: str = ""


class Envelope(BaseModel):
    """What every outgoing message needs besides its clinical content."""

    message_header_id: str
    bundle_id: str
    timestamp: datetime
    sender: Organization
    receiver: Organization
    patient: PatientData | None = None
    # The MessageHeader this message answers or forwards; builds the Provenance chain.
    previous_header_id: str | None = None
    # The careflow pathway it belongs to, as a MessageHeader.meta.tag (FHIR: tags relate resources
    # to process and workflow); no patient data.
    pathway: str | None = None


class ObservationValue(BaseModel):
    code: str  # e.g. an NPU code
    display: str = ""
    value: float
    unit: str = ""


class ValidationIssue(BaseModel):
    """One broken rule: which rule, where, and the MedCom acknowledgement error code it maps to."""

    rule: str
    path: str
    message: str
    error_code: str = "MSG_Datatype_Wrong"


class ProvenanceLink(BaseModel):
    provenance_id: str
    activity: str
    target_header_id: str | None = None
    previous_header_id: str | None = None  # entity.what


class Correlation(BaseModel):
    """What ties a message to a pathway, as its type's extractor reads it from the Bundle."""

    service_request_id: str | None = None  # careflow's pathway id: the referral's ServiceRequest identifier
    thread_id: str | None = None  # CareCommunication thread: Communication.identifier
    episode_of_care_id: str | None = None  # Encounter.episodeOfCare identifier (hospital stays)
    encounter_id: str | None = None  # the focus Encounter's id
    based_on: list[str] = Field(default_factory=list)  # ids the focus resources are based on
    # A decision the message carries, for the pathway to branch on (a triage Task's decision), and
    # the organisation it hands the pathway on to (a forward: the replacing ServiceRequest's
    # performer, a SOR code). A short, patient-data-free line for the timeline.
    outcome: str | None = None
    forward_to: str | None = None
    summary: str = ""


class ParsedMessage(BaseModel):
    """An inbound (or outbound) message reduced to what routing and correlation need."""

    kind: str | None  # the event code when it is a registered message type; None: careflow does not know it
    event_code: str
    message_header_id: str
    bundle_id: str
    timestamp: datetime | None = None
    sender: Organization | None = None
    receiver: Organization | None = None
    patient: PatientData | None = None
    service_request_id: str | None = None  # correlation to a pathway (= correlation.service_request_id)
    response_identifier: str | None = None  # acknowledgements: the acknowledged header id
    response_code: AckCode | None = None
    provenance: list[ProvenanceLink] = Field(default_factory=list)
    pathway: str | None = None  # careflow's pathway tag, when careflow built the message
    correlation: Correlation = Field(default_factory=Correlation)


# The content models live with their message types (messaging/types/); these names stay importable
# from here for code written before that, and for running workflows' payloads.
_MOVED = {
    "ReferralContent": "messaging.types.referral",
    "AppointmentContent": "messaging.types.appointment",
    "TestResultContent": "messaging.types.test_result",
    "TreatmentPlanContent": "messaging.types.treatment_plan",
    "CancellationContent": "messaging.types.cancellation",
    "CareCommunicationContent": "messaging.types.care_communication",
    "HospitalNotificationContent": "messaging.types.hospital_notification",
    "HomeCareObservationContent": "messaging.types.homecare_observation",
    "message_label": "messaging.types",
    "message_label_da": "messaging.types",
}

__all__ = [
    "MessageKind",
    "AckCode",
    "Organization",
    "PatientData",
    "Envelope",
    "ObservationValue",
    "ValidationIssue",
    "ProvenanceLink",
    "Correlation",
    "ParsedMessage",
    *_MOVED,
]


def __getattr__(name: str) -> object:
    # Resolved on first use, not at import: the type modules import this module.
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
