"""HospitalNotification (advis om sygehusophold, MedCom 3.0.x): a hospital stay's events to the
patient's municipality; focus an Encounter that carries the episode-of-care id.

One content model covers every notification of a stay (STIN/STAA, STOR, SLOR, SLHJ, MORS and their
RE_/AN_ variants, messaging/hospital_stay.py says which is which): the activity code, the Encounter's
status, class, period, leave period, whether the patient died, the earlier message this one follows,
corrects or cancels, and the Provenances of all earlier messages of the stay, restated as MedCom's
history rule requires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from messaging.bundle import as_dict, as_list, fhir_instant, header_id_of, resources
from messaging.identifiers import CPR_SYSTEM, SOR_ENDPOINT_PREFIX
from messaging.model import MessageKind, ValidationIssue
from messaging.resources import ACT_CODE_SYSTEM, BuildContext, derived_id, provenance_resource, ref
from messaging.terminology import MEDCOM_ACTIVITY_SYSTEM, MEDCOM_EVENT_SYSTEM, get_terminology
from messaging.types.base import MessageType, focus_of, header_of, issue

HN_IG = "http://medcomfhir.dk/ig/hospitalnotification/StructureDefinition/"
# sic: MedCom's URL spells "hospitalnotifiation"
LEAVE_PERIOD_EXTENSION = HN_IG + "medcom-hospitalnotifiation-leave-period-extension"
REPORT_OF_ADMISSION_EXTENSION = HN_IG + "medcom-messaging-reportOfAdmissionExtension"
REPORT_OF_ADMISSION_RECIPIENT_EXTENSION = HN_IG + "medcom-messaging-reportOfAdmissionRecipientExtension"
ACTIVITY_VALUE_SET = "medcom-hospitalNotification-messageActivities"
ENCOUNTER_STATUSES = ("in-progress", "onleave", "finished", "entered-in-error")


class EarlierNotification(BaseModel):
    """An earlier HospitalNotification of the same stay, as the Provenance that every later message
    restates: its header, what it did, when it was sent, and what it followed or corrected."""

    message_header_id: str
    activity: str
    sent_at: datetime
    previous_header_id: str | None = None
    entity_role: Literal["revision", "removal"] = "revision"
    agent_sor: str | None = None  # the organisation that sent it; None: this message's sender


class HospitalNotificationContent(BaseModel):
    """A MedCom HospitalNotification (advis om sygehusophold) to the patient's municipality."""

    activity: str = "admit-inpatient"  # MedCom activity code, e.g. admit-inpatient, discharge-inpatient-home
    encounter_id: str
    encounter_status: Literal["in-progress", "onleave", "finished", "entered-in-error"] = "in-progress"
    encounter_class: Literal["IMP", "EMER"] = "IMP"  # v3-ActCode: IMP admitted, EMER acute ambulant
    start: datetime
    end: datetime | None = None
    episode_of_care_id: str | None = None
    leave_start: datetime | None = None  # Encounter.extension:leavePeriod
    leave_end: datetime | None = None
    deceased: bool | None = None  # Patient.deceasedBoolean: true on MORS, false on AN_MORS
    # The earlier message this one follows (role revision) or cancels (role removal): entity.what
    previous_header_id: str | None = None
    entity_role: Literal["revision", "removal"] = "revision"
    history: list[EarlierNotification] = Field(default_factory=list)  # oldest first
    report_of_admission: bool = False  # ask the municipality for a report of admission (STIN/STAA only)


def _activities() -> frozenset[tuple[str, str]]:
    return get_terminology().value_sets.get(ACTIVITY_VALUE_SET, frozenset())


def build(ctx: BuildContext, content: HospitalNotificationContent) -> tuple[list[dict], list[dict]]:
    allowed = _activities()
    for activity in [content.activity, *(h.activity for h in content.history)]:
        if allowed and (MEDCOM_ACTIVITY_SYSTEM, activity) not in allowed:
            raise ValueError("activity is not a MedCom hospital notification activity")
    if content.encounter_status == "onleave" and content.leave_start is None:
        raise ValueError("an Encounter on leave needs the start of its leave period")
    ctx.activity = content.activity
    if content.previous_header_id:
        ctx.previous_header_id, ctx.entity_role = content.previous_header_id, content.entity_role
    period: dict = {"start": fhir_instant(content.start)}
    if content.end is not None:
        period["end"] = fhir_instant(content.end)
    encounter: dict = {"resourceType": "Encounter", "id": derived_id("encounter", content.encounter_id)}
    if content.leave_start is not None:
        leave = {"start": fhir_instant(content.leave_start)}
        if content.leave_end is not None:
            leave["end"] = fhir_instant(content.leave_end)
        encounter["extension"] = [{"url": LEAVE_PERIOD_EXTENSION, "valuePeriod": leave}]
    encounter |= {
        "status": content.encounter_status,
        "class": {"system": ACT_CODE_SYSTEM, "code": content.encounter_class},
        "subject": ctx.patient_ref,
    }
    if content.episode_of_care_id:
        encounter["episodeOfCare"] = [
            {
                "identifier": {
                    "system": SOR_ENDPOINT_PREFIX + ctx.envelope.sender.sor,
                    "value": content.episode_of_care_id,
                }
            }
        ]
    encounter |= {"period": period, "serviceProvider": {"reference": ref(ctx.sender)}}
    if content.deceased is not None and ctx.patient is not None:
        ctx.patient["deceasedBoolean"] = content.deceased
    if content.report_of_admission:
        ctx.header_extensions = [
            {"url": REPORT_OF_ADMISSION_EXTENSION, "valueBoolean": True},
            {"url": REPORT_OF_ADMISSION_RECIPIENT_EXTENSION, "valueReference": {"reference": ref(ctx.sender)}},
        ]
    sender_ref = ref(ctx.sender)
    for earlier in content.history:
        # the organisation that sent an earlier message need not be in this Bundle (MedCom's rule)
        agent = sender_ref
        if earlier.agent_sor and earlier.agent_sor != ctx.envelope.sender.sor:
            agent = f"Organization/{derived_id('organization', earlier.agent_sor)}"
        sent = fhir_instant(earlier.sent_at)
        ctx.history.append(
            provenance_resource(
                ctx.id(f"provenance/{earlier.message_header_id}"),
                earlier.message_header_id,
                sent,
                earlier.activity,
                agent,
                earlier.previous_header_id,
                earlier.entity_role,
            )
        )
    return [encounter], []


def check_encounter(bundle: dict) -> list[ValidationIssue]:
    """The Encounter names its episode of care (every later message echoes it), start and provider;
    its status is one of the four a notification uses, and a leave has its start."""
    problems = []
    for index, encounter in focus_of(bundle):
        path = f"Bundle.entry[{index}].resource"
        if not any(as_dict(as_dict(e).get("identifier")).get("value") for e in as_list(encounter.get("episodeOfCare"))):
            problems.append(
                issue(
                    "hospital-notification-episode",
                    f"{path}.episodeOfCare",
                    "the Encounter needs an episode-of-care identifier",
                )
            )
        if not as_dict(encounter.get("period")).get("start"):
            problems.append(
                issue("hospital-notification-encounter", f"{path}.period.start", "the Encounter needs its start")
            )
        if not as_dict(encounter.get("serviceProvider")).get("reference"):
            problems.append(
                issue(
                    "hospital-notification-encounter",
                    f"{path}.serviceProvider",
                    "the Encounter needs its service provider",
                )
            )
        status = encounter.get("status")
        if isinstance(status, str) and status not in ENCOUNTER_STATUSES:
            problems.append(
                issue(
                    "hospital-notification-encounter",
                    f"{path}.status",
                    "a hospital notification's Encounter is in-progress, onleave, finished or entered-in-error",
                    "MSG_VALUESET_VALUE_UNKNOWN",
                )
            )
        leaves = [e for e in as_list(encounter.get("extension")) if as_dict(e).get("url") == LEAVE_PERIOD_EXTENSION]
        if len(leaves) > 1:
            problems.append(
                issue("hospital-notification-leave", f"{path}.extension", "at most one leave period per notification")
            )
        # MedCom invariant medcom-hospitalNotification-6
        if status == "onleave" and not any(as_dict(as_dict(e).get("valuePeriod")).get("start") for e in leaves):
            problems.append(
                issue(
                    "hospital-notification-leave",
                    f"{path}.extension",
                    "an Encounter on leave needs the start of its leave period",
                )
            )
    return problems


def check_activities_and_patient(bundle: dict) -> list[ValidationIssue]:
    """MedCom invariants medcom-hospitalNotification-3 and -4: every Provenance's activity is a
    hospital notification activity (an unknown code is the generic rule's), and the Patient is
    identified by an official CPR number (no replacement CPR)."""
    problems = []
    allowed = _activities()
    terminology = get_terminology()
    for index, provenance in resources(bundle, "Provenance"):
        for coding in as_list(as_dict(provenance.get("activity")).get("coding")):
            coding = as_dict(coding)
            pair = (coding.get("system"), coding.get("code"))
            if allowed and pair not in allowed and terminology.is_activity(*pair):
                problems.append(
                    issue(
                        "hospital-notification-activity",
                        f"Bundle.entry[{index}].resource.activity",
                        "the activity is not one of MedCom's hospital notification activities",
                        "MSG_VALUESET_VALUE_UNKNOWN",
                    )
                )
    for index, patient in resources(bundle, "Patient"):
        systems = [as_dict(i).get("system") for i in as_list(patient.get("identifier"))]
        if systems and CPR_SYSTEM not in systems:
            problems.append(
                issue(
                    "hospital-notification-cpr",
                    f"Bundle.entry[{index}].resource.identifier",
                    "a hospital notification identifies the patient by an official CPR number",
                )
            )
    return problems


# The VANS statistical postfix follows the (revised or cancelled) activity.
_FDIS20_POSTFIX = {
    "admit-emergency": "AcuteAmbulant",
    "admit-inpatient": "AdmissionInpatient",
    "start-leave-inpatient": "OnLeave",
    "end-leave-inpatient": "EndOfLeave",
    "discharge-emergency-home": "EndHospitalStay",
    "discharge-inpatient-home": "EndHospitalStay",
}


def _current_activity(bundle: dict, header_id: str) -> str:
    for _, provenance in resources(bundle, "Provenance"):
        if any(header_id_of(t) == header_id for t in as_list(provenance.get("target"))):
            coding = next(
                (c for c in as_list(as_dict(provenance.get("activity")).get("coding")) if isinstance(c, dict)), {}
            )
            return coding.get("code") if isinstance(coding.get("code"), str) else ""
    return ""


def vans_document(bundle: dict) -> tuple[str, str] | None:
    """MCM:FDIS20#{postfix of the current activity}."""
    activity = _current_activity(bundle, header_of(bundle).get("id") or "")
    base = activity.removeprefix("revise-").removeprefix("cancel-")
    return (f"MCM:FDIS20#{_FDIS20_POSTFIX[base]}", "3.0.0") if base in _FDIS20_POSTFIX else None


TYPE = MessageType(
    code=MessageKind.HOSPITAL_NOTIFICATION.value,
    system=MEDCOM_EVENT_SYSTEM,
    label="hospital notification",
    label_da="sygehusadvis",
    focus="Encounter",
    content=HospitalNotificationContent,
    build=build,
    rules=(check_encounter, check_activities_and_patient),
    vans_document=vans_document,
    profile="http://medcomfhir.dk/ig/hospitalnotification/StructureDefinition/medcom-hospitalNotification-message",
)
