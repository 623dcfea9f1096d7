"""FHIR resources every message shares (organisations, patient, destination, Provenance) and the
helpers the message types' builders use. Plain dicts: the FHIR JSON as it goes on the wire.

Resource ids are derived from the MessageHeader id, so a resend (same header, new Bundle.id)
carries the same resources.
"""

from __future__ import annotations

import uuid

from messaging.bundle import FULL_URL_BASE, fhir_instant
from messaging.identifiers import CPR_SYSTEM, GLN_SYSTEM, SOR_ENDPOINT_PREFIX, SOR_SYSTEM, URI_SYSTEM
from messaging.model import Envelope, ObservationValue, Organization, PatientData
from messaging.terminology import (
    DESTINATION_USE_EXTENSION,
    MEDCOM_ACTIVITY_SYSTEM,
    MEDCOM_CS_BASE,
    MEDCOM_DESTINATION_USE_SYSTEM,
)

_ID_NAMESPACE = uuid.UUID("6f1e0c1a-3b0e-4c56-9a51-6d1f3c8e2b47")
NPU_SYSTEM = "urn:oid:1.2.208.176.2.1"
DIAGNOSTIC_REPORT_CODE_SYSTEM = MEDCOM_CS_BASE + "MedComDiagnosticReportCodes"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


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
    provenance_id: str,
    header_id: str,
    timestamp: str,
    activity: str,
    agent_ref: str,
    previous_header_id: str | None,
    role: str = "revision",
) -> dict:
    """The Provenance of one message: target its header, what it did (activity), and — when it
    follows, corrects (role revision) or cancels (role removal) an earlier message — that message's
    header as entity.what."""
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
        resource["entity"] = [{"role": role, "what": {"reference": f"MessageHeader/{previous_header_id}"}}]
    return resource


def entry(resource: dict) -> dict:
    return {"fullUrl": f"{FULL_URL_BASE}{resource['resourceType']}/{resource['id']}", "resource": resource}


def ref(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def coded(system: str, code: str, display: str = "") -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


class BuildContext:
    """What a content builder needs from the envelope: ids and references of the shared parts."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.header_id = envelope.message_header_id
        self.timestamp = fhir_instant(envelope.timestamp)
        self.sender = organization_resource(envelope.sender)
        self.receiver = organization_resource(envelope.receiver)
        # MessageHeader.definition: the MessageDefinition (and version) the message follows, if any
        self.definition: str | None = None
        self.patient = (
            patient_resource(envelope.patient, derived_id(self.header_id, "patient")) if envelope.patient else None
        )
        # This message's Provenance: a builder may set the earlier message it follows (entity.what),
        # its role (revision, or removal for a cancellation) and the activity (hospital
        # notifications use their own activity codes).
        self.previous_header_id = envelope.previous_header_id
        self.entity_role = "revision"
        self.activity = "reply-message" if envelope.previous_header_id else "new-message"
        # The Provenances of earlier messages that this one restates (a hospital stay's history),
        # placed before its own; and extensions of the MessageHeader (reportOfAdmission).
        self.history: list[dict] = []
        self.header_extensions: list[dict] = []

    def id(self, role: str) -> str:
        return derived_id(self.header_id, role)

    @property
    def patient_ref(self) -> dict:
        assert self.patient is not None
        return {"reference": ref(self.patient)}


def observation(
    ctx: BuildContext, role: str, value: ObservationValue, service_request_id: str | None, effective: str | None
) -> dict:
    quantity: dict = {"value": value.value}
    if value.unit:
        quantity["unit"] = value.unit
    resource: dict = {
        "resourceType": "Observation",
        "id": ctx.id(role),
        "status": "final",
        "code": coded(NPU_SYSTEM, value.code, value.display),
        "subject": ctx.patient_ref,
        "valueQuantity": quantity,
    }
    if service_request_id:
        resource["basedOn"] = based_on_service_request(service_request_id)
    if effective:
        resource["effectiveDateTime"] = effective
    return resource
