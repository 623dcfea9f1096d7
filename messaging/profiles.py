"""MedCom's StructureDefinition URLs per message type, as `meta.profile` of the messages careflow builds.

The URLs follow the official examples of each released standard (Acknowledgement 2.0.x,
CareCommunication 5.0.x, HospitalNotification 3.0.x, HomeCareObservation 1.2.x). careflow's own
event types have no MedCom profile and carry none: claiming one would be false.
"""

from __future__ import annotations

from messaging.bundle import as_dict, as_list, resources
from messaging.model import MessageKind
from messaging.types import MESSAGE_TYPES

MEDCOM_IG_BASE = "http://medcomfhir.dk/ig/"
EMPTY_MESSAGE = "empty-message"


def _sd(ig: str, name: str) -> str:
    return f"{MEDCOM_IG_BASE}{ig}/StructureDefinition/{name}"


_CORE = {
    "Patient": _sd("core", "medcom-core-patient"),
    "Practitioner": _sd("core", "medcom-core-practitioner"),
    "PractitionerRole": _sd("core", "medcom-core-practitionerrole"),
    "CareTeam": _sd("core", "medcom-core-careteam"),
    "Encounter": _sd("core", "medcom-core-encounter"),
    "Media": _sd("core", "medcom-core-media"),
}
_MESSAGING_ORGANIZATION = _sd("messaging", "medcom-messaging-organization")
_MESSAGING_PROVENANCE = _sd("messaging", "medcom-messaging-provenance")

# event code -> role -> profile. A role is a resource type, or "Organization.sender" /
# "Organization.receiver" where the standard profiles the two parties differently. The Bundle's
# profile of a registered message type is the type's own `profile` (messaging/types/).
PROFILES: dict[str, dict[str, str]] = {
    MessageKind.ACKNOWLEDGEMENT.value: {
        "MessageHeader": _sd("acknowledgement", "medcom-messaging-acknowledgementHeader"),
        "OperationOutcome": _sd("acknowledgement", "medcom-acknowledgement-operationoutcome"),
        "Organization": _MESSAGING_ORGANIZATION,
        "Provenance": _MESSAGING_PROVENANCE,
    },
    MessageKind.CARE_COMMUNICATION.value: {
        **_CORE,
        "MessageHeader": _sd("carecommunication", "medcom-careCommunication-messageHeader"),
        "Communication": _sd("carecommunication", "medcom-careCommunication-communication"),
        "Provenance": _sd("carecommunication", "medcom-careCommunication-provenance"),
        "Organization": _MESSAGING_ORGANIZATION,
    },
    MessageKind.HOSPITAL_NOTIFICATION.value: {
        **_CORE,
        "MessageHeader": _sd("hospitalnotification", "medcom-hospitalNotification-messageHeader"),
        "Encounter": _sd("hospitalnotification", "medcom-hospitalNotification-encounter"),
        "Organization": _MESSAGING_ORGANIZATION,
        "Provenance": _MESSAGING_PROVENANCE,
    },
    MessageKind.HOMECARE_OBSERVATION.value: {
        **_CORE,
        # sic: lower-case "header" in this standard
        "MessageHeader": _sd("homecareobservation", "medcom-homecareobservation-messageheader"),
        "DiagnosticReport": _sd("homecareobservation", "medcom-homecareobservation-diagnosticreport"),
        "Observation": _sd("homecareobservation", "medcom-homecare-observation"),
        "Organization.sender": _sd("messaging", "medcom-producer-organization"),
        "Organization.receiver": _sd("messaging", "medcom-requesterorganization"),
        "Provenance": _MESSAGING_PROVENANCE,
    },
    EMPTY_MESSAGE: {
        "Bundle": _sd("messaging", "medcom-messaging-message"),
        "MessageHeader": _sd("messaging", "medcom-messaging-messageHeader"),
        "Organization": _MESSAGING_ORGANIZATION,
        "Provenance": _MESSAGING_PROVENANCE,
    },
}


def is_medcom_profile(url: object) -> bool:
    return isinstance(url, str) and url.startswith(MEDCOM_IG_BASE)


def expected_profile(event_code: str, role: str) -> str | None:
    """The MedCom profile of `role` (resource type or "Organization.sender"/".receiver") in a
    message of `event_code`; None where MedCom has none (careflow's own event types)."""
    message_type = MESSAGE_TYPES.find(event_code)
    if role == "Bundle" and message_type is not None:
        return message_type.profile
    by_role = PROFILES.get(event_code)
    if by_role is None:
        return None
    if role in by_role:
        return by_role[role]
    return by_role.get(role.split(".", 1)[0])


def declared_profiles(resource: dict) -> list[str]:
    return [p for p in as_list(as_dict(resource.get("meta")).get("profile")) if isinstance(p, str)]


def _set_profile(resource: dict, profile: str | None) -> None:
    if profile is not None:
        resource["meta"] = {**as_dict(resource.get("meta")), "profile": [profile]}


def apply_profiles(bundle: dict) -> dict:
    """Set meta.profile on the Bundle and each of its resources for the message's MedCom type, in
    place; returns the Bundle. A careflow event type is left without profiles."""
    header = next((r for _, r in resources(bundle, "MessageHeader")), {})
    event_code = as_dict(header.get("eventCoding")).get("code")
    if not isinstance(event_code, str) or expected_profile(event_code, "Bundle") is None:
        return bundle
    sender = as_dict(header.get("sender")).get("reference")
    receivers = {
        as_dict(d.get("receiver")).get("reference") for d in as_list(header.get("destination")) if isinstance(d, dict)
    }
    _set_profile(bundle, expected_profile(event_code, "Bundle"))
    for _, resource in resources(bundle):
        role = resource.get("resourceType")
        if not isinstance(role, str):
            continue
        if role == "Organization":
            own_ref = f"Organization/{resource.get('id')}"
            role = (
                "Organization.sender"
                if own_ref == sender
                else "Organization.receiver"
                if own_ref in receivers
                else role
            )
        _set_profile(resource, expected_profile(event_code, role))
    return bundle
