"""HospitalNotification (advis om sygehusophold, MedCom): a hospital stay's events to the
patient's municipality; focus an Encounter that carries the episode-of-care id."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from messaging.bundle import as_dict, as_list, fhir_instant, header_id_of, resources
from messaging.identifiers import SOR_ENDPOINT_PREFIX
from messaging.model import MessageKind, ValidationIssue
from messaging.resources import ACT_CODE_SYSTEM, BuildContext, derived_id, ref
from messaging.terminology import MEDCOM_ACTIVITY_SYSTEM, MEDCOM_EVENT_SYSTEM, get_terminology
from messaging.types.base import MessageType, focus_of, header_of, issue


class HospitalNotificationContent(BaseModel):
    """A MedCom HospitalNotification (advis om sygehusophold) to the patient's municipality."""

    activity: str = "admit-inpatient"  # MedCom activity code, e.g. admit-inpatient, discharge-inpatient-home
    encounter_id: str
    encounter_status: str = "in-progress"  # in-progress | onleave | finished | cancelled
    encounter_class: str = "IMP"  # v3-ActCode: IMP admitted, EMER acute ambulant
    start: datetime
    end: datetime | None = None
    episode_of_care_id: str | None = None


def build(ctx: BuildContext, content: HospitalNotificationContent) -> tuple[list[dict], list[dict]]:
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
            {
                "identifier": {
                    "system": SOR_ENDPOINT_PREFIX + ctx.envelope.sender.sor,
                    "value": content.episode_of_care_id,
                }
            }
        ]
    return [encounter], []


def check_encounter(bundle: dict) -> list[ValidationIssue]:
    """The Encounter names its episode of care (every later message echoes it), start and provider."""
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
    rules=(check_encounter,),
    vans_document=vans_document,
    profile="http://medcomfhir.dk/ig/hospitalnotification/StructureDefinition/medcom-hospitalNotification-message",
)
