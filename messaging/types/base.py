"""What a message type is: its event code, labels, content model, builder, correlation extractor,
validation rules and MedCom profile. One `MessageType` per module in this package."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from messaging.bundle import ReferenceIndex, as_dict, as_list, resources
from messaging.model import Correlation, ValidationIssue
from messaging.resources import BuildContext

# (context, content) -> (focus resources, other resources); the envelope is added by build_message
ContentBuilder = Callable[[BuildContext, BaseModel], tuple[list[dict], list[dict]]]
# the Bundle as FHIR JSON (possibly broken: rules must not crash on it) -> the issues it has
Rule = Callable[[dict], list[ValidationIssue]]
Extractor = Callable[[dict], Correlation]
# the Bundle -> its VANS document (Name, Version) from MedCom's catalogue, or None when it has none
VansDocument = Callable[[dict], tuple[str, str] | None]

_UUID_PREFIX = "urn:uuid:"


def strip_uuid(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[len(_UUID_PREFIX) :] if value.startswith(_UUID_PREFIX) else value


def header_of(bundle: dict) -> dict:
    return next((r for _, r in resources(bundle, "MessageHeader")), {})


def focus_of(bundle: dict, index: ReferenceIndex | None = None) -> list[tuple[int, dict]]:
    """(entry index, resource) of each MessageHeader.focus that resolves inside the Bundle."""
    index = index or ReferenceIndex(bundle)
    return [found for f in as_list(header_of(bundle).get("focus")) if (found := index.resolve(f)) is not None]


def _identifier_values(resource: dict) -> list[str]:
    return [v for i in as_list(resource.get("identifier")) if isinstance(i, dict) and (v := strip_uuid(i.get("value")))]


def extract_correlation(bundle: dict) -> Correlation:
    """The default extractor: reads every correlation id careflow knows from wherever it sits.

    service_request_id: a ServiceRequest's identifier (focus first), else the focus' basedOn;
    thread_id: a Communication's identifier; episode_of_care_id and encounter_id: the Encounter's.
    """
    index = ReferenceIndex(bundle)
    focus = [r for _, r in focus_of(bundle, index)]
    focus_ids = {id(r) for r in focus}
    candidates = focus + [r for _, r in resources(bundle) if id(r) not in focus_ids]
    based_on: list[str] = []
    for resource in focus:
        for reference in as_list(resource.get("basedOn")):
            reference = as_dict(reference)
            if found := strip_uuid(as_dict(reference.get("identifier")).get("value")):
                based_on.append(found)
            elif isinstance(reference.get("reference"), str):
                based_on.append(reference["reference"].rsplit("/", 1)[-1])
    service_request_id = next(
        (ids[0] for r in candidates if r.get("resourceType") == "ServiceRequest" and (ids := _identifier_values(r))),
        None,
    )
    if service_request_id is None:
        service_request_id = next(
            (
                found
                for r in focus
                for b in as_list(r.get("basedOn"))
                if (found := strip_uuid(as_dict(as_dict(b).get("identifier")).get("value")))
            ),
            None,
        )
    thread_id = next(
        (ids[0] for r in candidates if r.get("resourceType") == "Communication" and (ids := _identifier_values(r))),
        None,
    )
    encounter = next((r for r in candidates if r.get("resourceType") == "Encounter"), None)
    episode_of_care_id = None
    if encounter is not None:
        episode_of_care_id = next(
            (
                found
                for e in as_list(encounter.get("episodeOfCare"))
                if (found := strip_uuid(as_dict(as_dict(e).get("identifier")).get("value")))
            ),
            None,
        )
    encounter_id = encounter.get("id") if encounter is not None and isinstance(encounter.get("id"), str) else None
    return Correlation(
        service_request_id=service_request_id,
        thread_id=thread_id,
        episode_of_care_id=episode_of_care_id,
        encounter_id=encounter_id,
        based_on=based_on,
    )


def issue(rule: str, path: str, message: str, error_code: str = "MSG_Datatype_Wrong") -> ValidationIssue:
    """A validation issue; `message` must never quote element values (they may be patient data)."""
    return ValidationIssue(rule=rule, path=path, message=message, error_code=error_code)


def requires_based_on(rule_id: str, what: str) -> Rule:
    """A rule for careflow replies: the focus is based on the pathway's ServiceRequest, or the
    reply cannot be routed to its pathway."""

    def check(bundle: dict) -> list[ValidationIssue]:
        problems = []
        for index, resource in focus_of(bundle):
            refs = [as_dict(b) for b in as_list(resource.get("basedOn"))]
            if not any(strip_uuid(as_dict(b.get("identifier")).get("value")) for b in refs):
                problems.append(
                    issue(
                        rule_id,
                        f"Bundle.entry[{index}].resource.basedOn",
                        f"{what} must be based on the pathway's ServiceRequest identifier",
                    )
                )
        return problems

    return check


@dataclass(frozen=True)
class MessageType:
    """One message type. `code` is its MessageHeader.eventCoding.code, unique in a registry."""

    code: str
    system: str  # the event code system of eventCoding
    label: str  # English, lower case, as in running text: "referral"
    label_da: str  # Danish: "henvisning"
    focus: str | None  # resource type of MessageHeader.focus; None: no focus (acknowledgement)
    content: type[BaseModel] | None  # the content model; None: not built by build_message
    build: ContentBuilder | None = None
    extract: Extractor = extract_correlation
    rules: tuple[Rule, ...] = ()
    profile: str | None = None  # MedCom's meta.profile of the Bundle; None for careflow's own types
    acknowledged: bool = True  # receivers answer it with an acknowledgement
    carbon_copy: bool = False  # may carry cc destinations besides the primary receiver
    patient: bool = True  # carries exactly one Patient
    vans_document: VansDocument | None = None  # None: no entry in MedCom's VANS catalogue

    def __post_init__(self) -> None:
        if not self.code or not self.system:
            raise ValueError("a message type needs an event code and its code system")
        if (self.content is None) != (self.build is None):
            raise ValueError(f"{self.code}: a content model and a builder go together")
        if self.build is not None and self.focus is None:
            raise ValueError(f"{self.code}: a built message type names its focus resource type")
