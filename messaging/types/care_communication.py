"""CareCommunication (korrespondancemeddelelse, MedCom): free text between care providers in a
thread; focus a Communication whose identifier is the thread id."""

from __future__ import annotations

from pydantic import BaseModel

from messaging.bundle import as_dict, as_list, resources
from messaging.model import MessageKind, ValidationIssue
from messaging.resources import ACT_CODE_SYSTEM, BuildContext, based_on_service_request, coded, ref
from messaging.terminology import MEDCOM_CS_BASE, MEDCOM_EVENT_SYSTEM
from messaging.types.base import MessageType, focus_of, issue

CATEGORY_SYSTEM = MEDCOM_CS_BASE + "medcom-careCommunication-categoryCodes"
REGARDING_REFERRAL = "regarding-referral"
PRIORITIES = ("routine", "asap")
# kept under its old name in messaging.build
CARE_COMMUNICATION_CATEGORY_SYSTEM = CATEGORY_SYSTEM
# MedCom's category codes, here for code that may not read the terminology files (a workflow checking
# a report); tests/messaging/test_hospital_stay.py keeps it equal to the code system.
CATEGORIES = (
    "alcohol-and-drug-treatment",
    "assistive-devices",
    "carecoordination",
    "decease",
    "discharge",
    "examination-results",
    "healthcare",
    "home-care-assessment",
    "medicine",
    "nursing",
    "outpatient",
    "psychiatry-social-disability",
    "regarding-referral",
    "telemedicine",
    "training",
    "acute-ambulant",
    "extended-care-responsibility",
    "other",
)


class CareCommunicationContent(BaseModel):
    """A MedCom CareCommunication (korrespondancemeddelelse): free text between care providers."""

    communication_id: str  # thread identifier (uuid), kept across replies
    text: str
    category: str = "other"  # MedComCareCommunicationCategories code
    topic: str = ""
    service_request_id: str | None = None  # ties the communication to a careflow pathway, if any
    priority: str | None = None  # routine | asap: MedCom allows it only with category regarding-referral
    # A reply: the MessageHeader it answers (Provenance reply-message, entity revision); keep the thread id.
    previous_header_id: str | None = None
    # The hospital stay it is about: an Encounter with the episode-of-care id the stay's
    # HospitalNotifications carry (system: the hospital's SOR endpoint), echoed as MedCom requires.
    episode_of_care_id: str | None = None
    episode_of_care_system: str | None = None
    encounter_status: str = "in-progress"
    encounter_class: str = "IMP"


def build(ctx: BuildContext, content: CareCommunicationContent) -> tuple[list[dict], list[dict]]:
    communication: dict = {
        "resourceType": "Communication",
        "id": ctx.id("communication"),
        "identifier": [{"value": f"urn:uuid:{content.communication_id}"}],
        "status": "unknown",
        "category": [coded(CATEGORY_SYSTEM, content.category)],
        "subject": ctx.patient_ref,
        "sent": ctx.timestamp,
        "payload": [{"contentString": content.text}],
    }
    if content.topic:
        communication["topic"] = {"text": content.topic}
    if content.priority:
        if content.category != REGARDING_REFERRAL or content.priority not in PRIORITIES:
            raise ValueError(f"a priority ({', '.join(PRIORITIES)}) goes only with category {REGARDING_REFERRAL}")
        communication["priority"] = content.priority
    if content.service_request_id:
        communication["basedOn"] = based_on_service_request(content.service_request_id)
    if content.previous_header_id:
        ctx.previous_header_id, ctx.activity = content.previous_header_id, "reply-message"
    others: list[dict] = []
    if content.episode_of_care_id:
        identifier = {"value": content.episode_of_care_id}
        if content.episode_of_care_system:
            identifier = {"system": content.episode_of_care_system, **identifier}
        encounter = {
            "resourceType": "Encounter",
            "id": ctx.id("encounter"),
            "status": content.encounter_status,
            "class": {"system": ACT_CODE_SYSTEM, "code": content.encounter_class},
            "subject": ctx.patient_ref,
            "episodeOfCare": [{"identifier": identifier}],
        }
        communication["encounter"] = {"reference": ref(encounter)}
        others.append(encounter)
    return [communication], others


def check_thread_and_category(bundle: dict) -> list[ValidationIssue]:
    """The thread id is what a reply keeps; exactly one category.

    MedCom also requires a topic with the category other; careflow's own CareCommunications (the
    simulator's, the pathways') do not carry one yet, so that rule waits until they do."""
    problems = []
    for index, communication in focus_of(bundle):
        path = f"Bundle.entry[{index}].resource"
        if not any(isinstance(i, dict) and i.get("value") for i in as_list(communication.get("identifier"))):
            problems.append(
                issue(
                    "care-communication-thread",
                    f"{path}.identifier",
                    "a CareCommunication carries its thread identifier",
                )
            )
        categories = [c for c in as_list(communication.get("category")) if isinstance(c, dict)]
        codes = {c.get("code") for cat in categories for c in as_list(cat.get("coding")) if isinstance(c, dict)}
        if "priority" in communication and (
            codes != {REGARDING_REFERRAL} or communication.get("priority") not in PRIORITIES
        ):
            problems.append(
                issue(
                    "care-communication-priority",
                    f"{path}.priority",
                    f"a priority ({' or '.join(PRIORITIES)}) is allowed only with category {REGARDING_REFERRAL}",
                    "MSG_VALUESET_VALUE_UNKNOWN",
                )
            )
        if len(categories) != 1:
            problems.append(
                issue(
                    "care-communication-category",
                    f"{path}.category",
                    f"exactly one category is required, found {len(categories)}",
                )
            )
    return problems


def vans_document(bundle: dict) -> tuple[str, str] | None:
    """MCM:FDIS91#{category}."""
    for _, communication in resources(bundle, "Communication"):
        for category in as_list(communication.get("category")):
            coding = next((c for c in as_list(as_dict(category).get("coding")) if isinstance(c, dict)), {})
            if isinstance(coding.get("code"), str):
                return f"MCM:FDIS91#{coding['code']}", "5.0"
    return None


TYPE = MessageType(
    code=MessageKind.CARE_COMMUNICATION.value,
    system=MEDCOM_EVENT_SYSTEM,
    label="care communication",
    label_da="korrespondance",
    focus="Communication",
    content=CareCommunicationContent,
    build=build,
    rules=(check_thread_and_category,),
    vans_document=vans_document,
    profile="http://medcomfhir.dk/ig/carecommunication/StructureDefinition/medcom-careCommunication-message",
)
