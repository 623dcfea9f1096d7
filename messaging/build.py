"""Builders of outgoing MedCom-style FHIR message Bundles from domain content.

Every message shares one envelope: MessageHeader first, sender and primary receiver
Organizations (SOR + EAN), one Patient (CPR), and a Provenance for this exchange. Resource ids
are derived from the MessageHeader id, so a resend (same header, new Bundle.id) carries the
same resources.
"""

from __future__ import annotations

import uuid
from typing import Callable

from pydantic import BaseModel

from messaging.bundle import FULL_URL_BASE, fhir_instant
from messaging.errors import MessageError
from messaging.profiles import apply_profiles
from messaging.identifiers import CPR_SYSTEM, GLN_SYSTEM, SOR_ENDPOINT_PREFIX, SOR_SYSTEM, URI_SYSTEM
from messaging.model import (
    AppointmentContent,
    CancellationContent,
    CareCommunicationContent,
    Envelope,
    HomeCareObservationContent,
    HospitalNotificationContent,
    MessageKind,
    ObservationValue,
    Organization,
    PatientData,
    ReferralContent,
    TestResultContent,
    TreatmentPlanContent,
    ValidationIssue,
)
from messaging.terminology import (
    CAREFLOW_PATHWAY_TAG_SYSTEM,
    DESTINATION_USE_EXTENSION,
    MEDCOM_ACTIVITY_SYSTEM,
    MEDCOM_CS_BASE,
    MEDCOM_DESTINATION_USE_SYSTEM,
    event_system_for,
    get_terminology,
)

_ID_NAMESPACE = uuid.UUID("6f1e0c1a-3b0e-4c56-9a51-6d1f3c8e2b47")
NPU_SYSTEM = "urn:oid:1.2.208.176.2.1"
CARE_COMMUNICATION_CATEGORY_SYSTEM = MEDCOM_CS_BASE + "medcom-careCommunication-categoryCodes"
DIAGNOSTIC_REPORT_CODE_SYSTEM = MEDCOM_CS_BASE + "MedComDiagnosticReportCodes"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
REQUEST_PRIORITIES = ("routine", "urgent", "asap", "stat")


def derived_id(*parts: str) -> str:
    """A stable resource id: the same message (or organisation) always gets the same ids."""
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def service_request_identifier(service_request_id: str) -> dict:
    return {"system": URI_SYSTEM, "value": f"urn:uuid:{service_request_id}"}


def based_on_service_request(service_request_id: str) -> list[dict]:
    # A logical reference: the ServiceRequest lives in the referral message, not in this Bundle.
    return [{"type": "ServiceRequest", "identifier": service_request_identifier(service_request_id)}]


def organization_resource(org: Organization) -> dict:
    return {
        "resourceType": "Organization",
        "id": derived_id("organization", org.sor),
        "identifier": [
            {"system": GLN_SYSTEM, "value": org.ean},
            {"system": SOR_SYSTEM, "value": org.sor},
        ],
        "name": org.name,
    }


def patient_resource(patient: PatientData, resource_id: str) -> dict:
    resource: dict = {
        "resourceType": "Patient",
        "id": resource_id,
        "identifier": [{"system": CPR_SYSTEM, "value": patient.cpr}],
    }
    name: dict = {}
    if patient.family_name:
        name["family"] = patient.family_name
    if patient.given_name:
        name["given"] = [patient.given_name]
    if name:
        resource["name"] = [{"use": "official", **name}]
    return resource


def destination(receiver_ref: str, receiver: Organization, use: str = "primary") -> dict:
    return {
        "extension": [
            {
                "url": DESTINATION_USE_EXTENSION,
                "valueCoding": {"system": MEDCOM_DESTINATION_USE_SYSTEM, "code": use},
            }
        ],
        "endpoint": SOR_ENDPOINT_PREFIX + receiver.sor,
        "receiver": {"reference": receiver_ref},
    }


def provenance_resource(
    provenance_id: str, header_id: str, timestamp: str, activity: str, agent_ref: str, previous_header_id: str | None
) -> dict:
    resource: dict = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "target": [{"reference": f"MessageHeader/{header_id}"}],
        "occurredDateTime": timestamp,
        "recorded": timestamp,
        "activity": {"coding": [{"system": MEDCOM_ACTIVITY_SYSTEM, "code": activity}]},
        "agent": [{"who": {"reference": agent_ref}}],
    }
    if previous_header_id:
        resource["entity"] = [{"role": "revision", "what": {"reference": f"MessageHeader/{previous_header_id}"}}]
    return resource


def entry(resource: dict) -> dict:
    return {"fullUrl": f"{FULL_URL_BASE}{resource['resourceType']}/{resource['id']}", "resource": resource}


def ref(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


class _Context:
    """What a content builder needs from the envelope: ids and references of the shared parts."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.header_id = envelope.message_header_id
        self.timestamp = fhir_instant(envelope.timestamp)
        self.sender = organization_resource(envelope.sender)
        self.receiver = organization_resource(envelope.receiver)
        self.patient = (
            patient_resource(envelope.patient, derived_id(self.header_id, "patient")) if envelope.patient else None
        )
        # Provenance activity; hospital notifications replace it with their own activity code.
        self.activity = "reply-message" if envelope.previous_header_id else "new-message"

    def id(self, role: str) -> str:
        return derived_id(self.header_id, role)

    @property
    def patient_ref(self) -> dict:
        assert self.patient is not None
        return {"reference": ref(self.patient)}


# A content builder returns (focus resources, other resources) for its message type.
ContentBuilder = Callable[[_Context, BaseModel], tuple[list[dict], list[dict]]]


def _coded(system: str, code: str, display: str = "") -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _observation(ctx: _Context, role: str, value: ObservationValue, service_request_id: str | None, effective: str | None) -> dict:
    quantity: dict = {"value": value.value}
    if value.unit:
        quantity["unit"] = value.unit
    resource: dict = {
        "resourceType": "Observation",
        "id": ctx.id(role),
        "status": "final",
        "code": _coded(NPU_SYSTEM, value.code, value.display),
        "subject": ctx.patient_ref,
        "valueQuantity": quantity,
    }
    if service_request_id:
        resource["basedOn"] = based_on_service_request(service_request_id)
    if effective:
        resource["effectiveDateTime"] = effective
    return resource


def _referral(ctx: _Context, content: ReferralContent) -> tuple[list[dict], list[dict]]:
    if content.priority not in REQUEST_PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(REQUEST_PRIORITIES)}")
    request = {
        "resourceType": "ServiceRequest",
        "id": ctx.id("service-request"),
        "identifier": [service_request_identifier(content.service_request_id)],
        "status": "active",
        "intent": "order",
        "priority": content.priority,
        "subject": ctx.patient_ref,
        "authoredOn": ctx.timestamp,
        "requester": {"reference": ref(ctx.sender)},
        "performer": [{"reference": ref(ctx.receiver)}],
        "reasonCode": [{"text": content.reason}],
    }
    return [request], []


def _cancellation(ctx: _Context, content: CancellationContent) -> tuple[list[dict], list[dict]]:
    request = {
        "resourceType": "ServiceRequest",
        "id": ctx.id("service-request"),
        "identifier": [service_request_identifier(content.service_request_id)],
        "status": "revoked",
        "intent": "order",
        "subject": ctx.patient_ref,
        "requester": {"reference": ref(ctx.sender)},
        # R4 ServiceRequest has no statusReason: the reason for revoking travels as a note
        "note": [{"text": content.reason, "time": ctx.timestamp}],
    }
    return [request], []


def _appointment(ctx: _Context, content: AppointmentContent) -> tuple[list[dict], list[dict]]:
    appointment: dict = {
        "resourceType": "Appointment",
        "id": ctx.id("appointment"),
        "status": "booked",
        "basedOn": based_on_service_request(content.service_request_id),
        "start": fhir_instant(content.start),
        "participant": [{"actor": ctx.patient_ref, "status": "accepted"}],
    }
    if content.end is not None:
        appointment["end"] = fhir_instant(content.end)
    if content.description:
        appointment["description"] = content.description
    return [appointment], []


def _test_result(ctx: _Context, content: TestResultContent) -> tuple[list[dict], list[dict]]:
    observations = [
        _observation(ctx, f"observation-{i}", value, content.service_request_id, None)
        for i, value in enumerate(content.observations)
    ]
    report: dict = {
        "resourceType": "DiagnosticReport",
        "id": ctx.id("diagnostic-report"),
        "basedOn": based_on_service_request(content.service_request_id),
        "status": "final",
        "code": _coded(NPU_SYSTEM, content.code, content.display),
        "subject": ctx.patient_ref,
        "issued": ctx.timestamp,
        "performer": [{"reference": ref(ctx.sender)}],
    }
    if observations:
        report["result"] = [{"reference": ref(o)} for o in observations]
    if content.conclusion:
        report["conclusion"] = content.conclusion
    return [report], observations


def _treatment_plan(ctx: _Context, content: TreatmentPlanContent) -> tuple[list[dict], list[dict]]:
    plan: dict = {
        "resourceType": "CarePlan",
        "id": ctx.id("care-plan"),
        "basedOn": based_on_service_request(content.service_request_id),
        "status": "active",
        "intent": "plan",
        "description": content.description,
        "subject": ctx.patient_ref,
        "author": {"reference": ref(ctx.sender)},
    }
    if content.start is not None:
        plan["period"] = {"start": fhir_instant(content.start)}
    return [plan], []


def _care_communication(ctx: _Context, content: CareCommunicationContent) -> tuple[list[dict], list[dict]]:
    communication: dict = {
        "resourceType": "Communication",
        "id": ctx.id("communication"),
        "identifier": [{"value": f"urn:uuid:{content.communication_id}"}],
        "status": "unknown",
        "category": [_coded(CARE_COMMUNICATION_CATEGORY_SYSTEM, content.category)],
        "subject": ctx.patient_ref,
        "sent": ctx.timestamp,
        "payload": [{"contentString": content.text}],
    }
    if content.topic:
        communication["topic"] = {"text": content.topic}
    if content.service_request_id:
        communication["basedOn"] = based_on_service_request(content.service_request_id)
    return [communication], []


def _hospital_notification(ctx: _Context, content: HospitalNotificationContent) -> tuple[list[dict], list[dict]]:
    terminology = get_terminology()
    allowed = terminology.value_sets.get("medcom-hospitalNotification-messageActivities", frozenset())
    if allowed and (MEDCOM_ACTIVITY_SYSTEM, content.activity) not in allowed:
        raise ValueError("activity is not a MedCom hospital notification activity")
    ctx.activity = content.activity
    period: dict = {"start": fhir_instant(content.start)}
    if content.end is not None:
        period["end"] = fhir_instant(content.end)
    encounter: dict = {
        "resourceType": "Encounter",
        "id": derived_id("encounter", content.encounter_id),
        "status": content.encounter_status,
        "class": {"system": ACT_CODE_SYSTEM, "code": content.encounter_class},
        "subject": ctx.patient_ref,
        "period": period,
        "serviceProvider": {"reference": ref(ctx.sender)},
    }
    if content.episode_of_care_id:
        encounter["episodeOfCare"] = [
            {"identifier": {"system": SOR_ENDPOINT_PREFIX + ctx.envelope.sender.sor, "value": content.episode_of_care_id}}
        ]
    return [encounter], []


def _homecare_observation(ctx: _Context, content: HomeCareObservationContent) -> tuple[list[dict], list[dict]]:
    effective = fhir_instant(content.effective)
    observations = [
        _observation(ctx, f"observation-{i}", value, content.service_request_id, effective)
        for i, value in enumerate(content.observations)
    ]
    report: dict = {
        "resourceType": "DiagnosticReport",
        "id": ctx.id("diagnostic-report"),
        "identifier": [{"value": f"urn:uuid:{content.report_id}"}],
        "status": "final",
        "code": _coded(DIAGNOSTIC_REPORT_CODE_SYSTEM, "HomeCareReport"),
        "subject": ctx.patient_ref,
        "issued": ctx.timestamp,
        "performer": [{"reference": ref(ctx.sender)}],
    }
    if content.service_request_id:
        report["basedOn"] = based_on_service_request(content.service_request_id)
    if observations:
        report["result"] = [{"reference": ref(o)} for o in observations]
    if content.conclusion:
        report["conclusion"] = content.conclusion
    return [report], observations


BUILDERS: dict[MessageKind, tuple[type[BaseModel], ContentBuilder]] = {
    MessageKind.REFERRAL: (ReferralContent, _referral),
    MessageKind.APPOINTMENT: (AppointmentContent, _appointment),
    MessageKind.TEST_RESULT: (TestResultContent, _test_result),
    MessageKind.TREATMENT_PLAN: (TreatmentPlanContent, _treatment_plan),
    MessageKind.CANCELLATION: (CancellationContent, _cancellation),
    MessageKind.CARE_COMMUNICATION: (CareCommunicationContent, _care_communication),
    MessageKind.HOSPITAL_NOTIFICATION: (HospitalNotificationContent, _hospital_notification),
    MessageKind.HOMECARE_OBSERVATION: (HomeCareObservationContent, _homecare_observation),
}


def build_message(kind: MessageKind | str, envelope: Envelope, content: BaseModel | dict) -> dict:
    """The FHIR JSON of a message Bundle of `kind` (acknowledgements: use build_acknowledgement);
    content is the type's content model, or plain data for it."""
    try:
        kind = MessageKind(kind)
    except ValueError:
        raise ValueError(f"no builder for {kind}") from None
    if kind not in BUILDERS:
        raise ValueError(f"no builder for {kind}; acknowledgements are built by build_acknowledgement")
    content_type, builder = BUILDERS[kind]
    if isinstance(content, dict):
        content = content_type.model_validate(content)
    if not isinstance(content, content_type):
        raise TypeError(f"{kind} needs {content_type.__name__}, got {type(content).__name__}")
    if envelope.patient is None:
        raise MessageError(
            f"{kind} needs a patient",
            [ValidationIssue(rule="patient-count", path="Bundle.entry", message="a clinical message carries exactly one Patient")],
        )
    ctx = _Context(envelope)
    focus, others = builder(ctx, content)
    header = {
        "resourceType": "MessageHeader",
        "id": ctx.header_id,
        "eventCoding": {"system": event_system_for(kind), "code": kind.value},
        "destination": [destination(ref(ctx.receiver), envelope.receiver)],
        "sender": {"reference": ref(ctx.sender)},
        "source": {"endpoint": SOR_ENDPOINT_PREFIX + envelope.sender.sor},
        "focus": [{"reference": ref(r)} for r in focus],
    }
    if envelope.pathway:
        header = {"resourceType": "MessageHeader", "id": ctx.header_id, "meta": {"tag": [{"system": CAREFLOW_PATHWAY_TAG_SYSTEM, "code": envelope.pathway}]}, **{k: v for k, v in header.items() if k not in ("resourceType", "id")}}
    provenance = provenance_resource(
        ctx.id("provenance"), ctx.header_id, ctx.timestamp, ctx.activity, ref(ctx.sender), envelope.previous_header_id
    )
    assert ctx.patient is not None
    resources = [header, ctx.patient, *focus, *others, ctx.sender, ctx.receiver, provenance]
    # MedCom's released message types declare their profiles; careflow's own types get none
    return apply_profiles(
        {
            "resourceType": "Bundle",
            "id": envelope.bundle_id,
            "type": "message",
            "timestamp": ctx.timestamp,
            "entry": [entry(r) for r in resources],
        }
    )
