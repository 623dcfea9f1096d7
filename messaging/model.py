"""Domain-level message models shared by workflows, activities, API and simulator.

Plain pydantic (no fhir.resources), so workflow code can import them cheaply and they
serialise through Temporal's pydantic data converter.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class MessageKind(StrEnum):
    """Every message type careflow sends or receives; the value is its event code."""

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


# What coordinators call each message, in English and Danish.
MESSAGE_LABELS: dict[str, str] = {
    "careflow-referral-message": "referral (henvisning)",
    "careflow-appointment-message": "appointment (indkaldelse)",
    "careflow-test-result-message": "test result (prøvesvar)",
    "careflow-treatment-plan-message": "treatment plan (behandlingsplan)",
    "careflow-cancellation-message": "cancellation (annullering)",
    "acknowledgement-message": "acknowledgement (kvittering)",
    "care-communication-message": "care communication (korrespondance)",
    "hospital-notification-message": "hospital notification (sygehusadvis)",
    "homecareobservation-message": "home-care observation (hjemmeplejeobservation)",
}


def message_label(kind: "MessageKind | str") -> str:
    code = kind.value if isinstance(kind, StrEnum) else kind
    return MESSAGE_LABELS.get(code, code)


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


class ReferralContent(BaseModel):
    service_request_id: str  # careflow's correlation id for the whole pathway
    reason: str
    priority: str = "routine"  # FHIR request-priority: routine | urgent | asap | stat


class AppointmentContent(BaseModel):
    service_request_id: str
    start: datetime
    end: datetime | None = None
    description: str = ""


class ObservationValue(BaseModel):
    code: str  # e.g. an NPU code
    display: str = ""
    value: float
    unit: str = ""


class TestResultContent(BaseModel):
    service_request_id: str
    code: str
    display: str = ""
    conclusion: str = ""
    observations: list[ObservationValue] = Field(default_factory=list)


class TreatmentPlanContent(BaseModel):
    service_request_id: str
    description: str
    start: datetime | None = None


class CancellationContent(BaseModel):
    service_request_id: str
    reason: str


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


class ParsedMessage(BaseModel):
    """An inbound (or outbound) message reduced to what routing and correlation need."""

    kind: MessageKind | None  # None: an event code careflow does not know
    event_code: str
    message_header_id: str
    bundle_id: str
    timestamp: datetime | None = None
    sender: Organization | None = None
    receiver: Organization | None = None
    patient: PatientData | None = None
    service_request_id: str | None = None  # correlation to a pathway
    response_identifier: str | None = None  # acknowledgements: the acknowledged header id
    response_code: AckCode | None = None
    provenance: list[ProvenanceLink] = Field(default_factory=list)
    pathway: str | None = None  # careflow's pathway tag, when careflow built the message


# --- content of the released MedCom message types careflow also builds -------------------------


class CareCommunicationContent(BaseModel):
    """A MedCom CareCommunication (korrespondancemeddelelse): free text between care providers."""

    communication_id: str  # thread identifier (uuid), kept across replies
    text: str
    category: str = "other"  # MedComCareCommunicationCategories code
    topic: str = ""
    service_request_id: str | None = None  # ties the communication to a careflow pathway, if any


class HospitalNotificationContent(BaseModel):
    """A MedCom HospitalNotification (advis om sygehusophold) to the patient's municipality."""

    activity: str = "admit-inpatient"  # MedCom activity code, e.g. admit-inpatient, discharge-inpatient-home
    encounter_id: str
    encounter_status: str = "in-progress"  # in-progress | onleave | finished | cancelled
    encounter_class: str = "IMP"  # v3-ActCode: IMP admitted, EMER acute ambulant
    start: datetime
    end: datetime | None = None
    episode_of_care_id: str | None = None


class HomeCareObservationContent(BaseModel):
    """A MedCom HomeCareObservation: measurements made by municipal home care, sent to the GP."""

    report_id: str
    effective: datetime
    observations: list[ObservationValue] = Field(default_factory=list)
    conclusion: str = ""
    service_request_id: str | None = None
