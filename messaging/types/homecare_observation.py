"""HomeCareObservation 1.2 (MedCom): a municipal acute-care team's measurements, sent to the GP who asked
for the visit; focus a DiagnosticReport coded HomeCareReport with its Observations. A report may be
modified (activity modified-message, entity role revision) or retracted (retract-message, role removal,
the reason in the conclusion); each later version carries the Provenances of the earlier ones."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from messaging.bundle import ReferenceIndex, as_dict, as_list, fhir_instant, resources
from messaging.model import MessageKind, ValidationIssue
from messaging.resources import (
    DIAGNOSTIC_REPORT_CODE_SYSTEM,
    NPU_SYSTEM,
    BuildContext,
    based_on_service_request,
    coded,
    derived_id,
    provenance_resource,
    ref,
)
from messaging.terminology import MEDCOM_CS_BASE, MEDCOM_EVENT_SYSTEM
from messaging.types.base import MessageType, focus_of, header_of, issue

REPORT_CODE = "HomeCareReport"
# MedCom's own observation codes (MCS…) for what NPU has no code for (TOBS score, consciousness level)
MCS_SYSTEM = MEDCOM_CS_BASE + "medcom-observation-codes"
INTERPRETATION_SYSTEM = MEDCOM_CS_BASE + "medcom-core-interpretation-codes"
PRACTITIONER_ROLE_SYSTEM = MEDCOM_CS_BASE + "medcom-core-PractitionerRolesSKSadministrativ"
PRODUCER_ID_SYSTEM = MEDCOM_CS_BASE + "MedComProducentID"
YDERNUMMER_SYSTEM = "urn:oid:1.2.208.176.1.4"
UCUM_SYSTEM = "http://unitsofmeasure.org"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
DEFINITION = (
    "http://medcomfhir.dk/ig/messagedefinitions/MessageDefinition/MedComHomeCareObservationMessageDefinition|1.1"
)
MAX_VALUE_CHARS = 12  # MedCom: an observation's value is at most 12 characters

NEW, MODIFIED, RETRACTED = "new-message", "modified-message", "retract-message"
Activity = Literal["new-message", "modified-message", "retract-message"]


def value_text(value: float) -> str:
    """The value as it is written in the message (92, not 92.0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class HomeCareMeasurement(BaseModel):
    """One observation: an NPU (or DNK) code, or a MedCom MCS code, its value and unit."""

    code: str = Field(min_length=1)
    display: str = ""
    value: float
    unit: str = ""  # "" or "1": a count or score without unit (UCUM "1")
    comparator: Literal["<", "<=", ">=", ">"] | None = None
    effective: AwareDatetime | None = None  # when it was measured; default: the report's time
    note: str = ""  # the analysis comment

    @field_validator("value")
    @classmethod
    def _short(cls, value: float) -> float:
        if len(value_text(value)) > MAX_VALUE_CHARS:
            raise ValueError(f"an observation value is at most {MAX_VALUE_CHARS} characters")
        return value

    @property
    def system(self) -> str:
        return MCS_SYSTEM if self.code.startswith("MCS") else NPU_SYSTEM


class ObservationAuthor(BaseModel):
    """Who in the team made the observations (DiagnosticReport.performer PractitionerRole)."""

    name: str = Field(min_length=1)
    role: str = "sygeplejerske"  # MedCom SKS-administrative practitioner role code
    phone: str = ""


class EarlierMessage(BaseModel):
    """An earlier version of this report, as its own Provenance recorded it."""

    message_header_id: str
    activity: Activity
    at: datetime
    previous_header_id: str | None = None  # the version that one revised or retracted


class HomeCareObservationContent(BaseModel):
    """A MedCom HomeCareObservation: measurements made by a municipal acute-care team, sent to the GP."""

    report_id: str
    effective: datetime
    observations: list[HomeCareMeasurement] = Field(default_factory=list)
    conclusion: str = ""  # the clinical comment; for a retraction, the reason
    service_request_id: str | None = None  # careflow's own messages only: HomeCareObservation has no request id
    # The GP who asked for the visit (MedComRequesterOrganization): provider number and initials
    gp_ydernummer: str | None = Field(default=None, pattern=r"^\d{6}$")
    # MedCom allows data-absent-reason "unknown" instead; careflow's XML reader (fhir.resources) cannot
    # read a repeating primitive that has only an extension, so the initials are required here.
    gp_initials: str = Field(default="", max_length=20)
    producer_id: str = "KAF"  # MedComProducentID of the sending (producer) organisation
    author: ObservationAuthor | None = None
    restricted: bool = False  # the patient refuses sharing: meta.security R
    activity: Activity = NEW
    replaces_header_id: str | None = None  # the version this one modifies or retracts
    history: list[EarlierMessage] = Field(default_factory=list)

    @field_validator("observations", mode="before")
    @classmethod
    def _plain(cls, value: object) -> object:
        # Content written before measurements had their own model (messaging.model.ObservationValue)
        if isinstance(value, list):
            return [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
        return value

    @model_validator(mode="after")
    def _version(self) -> HomeCareObservationContent:
        if self.activity != NEW and not self.replaces_header_id:
            raise ValueError(f"a {self.activity} names the version it replaces (replaces_header_id)")
        if self.activity == NEW and (self.replaces_header_id or self.history):
            raise ValueError("a new-message has no earlier version")
        if not self.gp_initials.strip():
            raise ValueError("the initials of the GP who asked for the visit are required (gp_initials)")
        if self.activity == RETRACTED and not self.conclusion.strip():
            raise ValueError("a retraction gives its reason in the conclusion")
        return self


def _observation(ctx: BuildContext, index: int, measurement: HomeCareMeasurement, content: HomeCareObservationContent):
    quantity: dict = {"value": measurement.value}
    if measurement.comparator:
        quantity["comparator"] = measurement.comparator
    if measurement.unit in ("", "1"):
        quantity |= {"system": UCUM_SYSTEM, "code": "1"}
    else:
        quantity["unit"] = measurement.unit
    resource: dict = {
        "resourceType": "Observation",
        "id": ctx.id(f"observation-{index}"),
        "status": "final",
        "code": coded(measurement.system, measurement.code, measurement.display),
        "subject": ctx.patient_ref,
        "effectiveDateTime": fhir_instant(measurement.effective or content.effective),
        "valueQuantity": quantity,
        "interpretation": [coded(INTERPRETATION_SYSTEM, "NI", "Not Interpreted")],
    }
    if content.service_request_id:
        resource["basedOn"] = based_on_service_request(content.service_request_id)
    if measurement.note:
        resource["note"] = [{"text": measurement.note}]
    return resource


def _author(ctx: BuildContext, author: ObservationAuthor) -> list[dict]:
    practitioner: dict = {
        "resourceType": "Practitioner",
        "id": ctx.id("practitioner"),
        "name": [{"given": [author.name]}],
    }
    if author.phone:
        practitioner["telecom"] = [{"system": "phone", "value": author.phone}]
    role = {
        "resourceType": "PractitionerRole",
        "id": ctx.id("practitioner-role"),
        "practitioner": {"reference": ref(practitioner)},
        "code": [coded(PRACTITIONER_ROLE_SYSTEM, author.role)],
    }
    return [role, practitioner]


def _parties(ctx: BuildContext, content: HomeCareObservationContent) -> None:
    """The GP as MedComRequesterOrganization (Ydernummer, initials), the team as producer (ProducentID)."""
    ctx.sender["identifier"].append({"system": PRODUCER_ID_SYSTEM, "value": content.producer_id})
    if content.gp_ydernummer:
        ctx.receiver["identifier"].append({"system": YDERNUMMER_SYSTEM, "value": content.gp_ydernummer})
    ctx.receiver["contact"] = [{"name": {"given": [content.gp_initials]}}]


def _history(ctx: BuildContext, content: HomeCareObservationContent) -> list[dict]:
    """The earlier versions' Provenances, with the ids they had in their own messages."""
    return [
        provenance_resource(
            derived_id(earlier.message_header_id, "provenance"),
            earlier.message_header_id,
            fhir_instant(earlier.at),
            earlier.activity,
            ref(ctx.sender),
            earlier.previous_header_id,
            "removal" if earlier.activity == RETRACTED else "revision",
        )
        for earlier in content.history
    ]


def build(ctx: BuildContext, content: HomeCareObservationContent) -> tuple[list[dict], list[dict]]:
    _parties(ctx, content)
    ctx.definition = DEFINITION
    ctx.activity = content.activity
    if content.activity != NEW:
        ctx.previous_header_id = content.replaces_header_id
        ctx.entity_role = "removal" if content.activity == RETRACTED else "revision"
    ctx.history = _history(ctx, content)
    observations = [_observation(ctx, i, m, content) for i, m in enumerate(content.observations)]
    author = _author(ctx, content.author) if content.author else []
    report: dict = {
        "resourceType": "DiagnosticReport",
        "id": ctx.id("diagnostic-report"),
        "identifier": [{"value": f"urn:uuid:{content.report_id}"}],
        "status": "final",
        "code": coded(DIAGNOSTIC_REPORT_CODE_SYSTEM, REPORT_CODE),
        "subject": ctx.patient_ref,
        "issued": ctx.timestamp,
        "performer": [{"reference": ref(ctx.sender)}, *({"reference": ref(r)} for r in author[:1])],
    }
    if content.restricted:
        report["meta"] = {"security": [{"system": CONFIDENTIALITY_SYSTEM, "code": "R", "display": "Restricted"}]}
    if content.service_request_id:
        report["basedOn"] = based_on_service_request(content.service_request_id)
    if observations:
        report["result"] = [{"reference": ref(o)} for o in observations]
    if content.conclusion:
        report["conclusion"] = content.conclusion
    return [report], [*author, *observations]


def check_report_code(bundle: dict) -> list[ValidationIssue]:
    return [
        issue(
            "homecare-report-code",
            f"Bundle.entry[{index}].resource.code",
            f"the DiagnosticReport is coded {REPORT_CODE}",
            "MSG_VALUESET_VALUE_UNKNOWN",
        )
        for index, report in focus_of(bundle)
        if not any(
            as_dict(c).get("system") == DIAGNOSTIC_REPORT_CODE_SYSTEM and as_dict(c).get("code") == REPORT_CODE
            for c in as_list(as_dict(report.get("code")).get("coding"))
        )
    ]


def check_observations(bundle: dict) -> list[ValidationIssue]:
    """Each result is coded NPU or MCS and its value is at most 12 characters."""
    problems = []
    index = ReferenceIndex(bundle)
    for _, report in focus_of(bundle, index):
        for reference in as_list(report.get("result")):
            found = index.resolve(reference)
            if found is None:
                continue
            position, observation = found
            path = f"Bundle.entry[{position}].resource"
            systems = {as_dict(c).get("system") for c in as_list(as_dict(observation.get("code")).get("coding"))}
            if not systems & {NPU_SYSTEM, MCS_SYSTEM}:
                problems.append(
                    issue(
                        "homecare-observation-code",
                        f"{path}.code",
                        "a home-care observation is coded with NPU or MedCom's observation codes (MCS)",
                        "MSG_VALUESET_VALUE_UNKNOWN",
                    )
                )
            value = as_dict(observation.get("valueQuantity")).get("value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                text = value_text(value)
            else:
                text = observation.get("valueString")
            if isinstance(text, str) and len(text) > MAX_VALUE_CHARS:
                problems.append(
                    issue(
                        "homecare-observation-value",
                        f"{path}.value",
                        f"an observation value is at most {MAX_VALUE_CHARS} characters, this one has {len(text)}",
                    )
                )
    return problems


def check_version(bundle: dict) -> list[ValidationIssue]:
    """A modification refers to the version it revises (role revision), a retraction to the one it
    removes (role removal)."""
    header_id = header_of(bundle).get("id")
    problems = []
    for position, provenance in resources(bundle, "Provenance"):
        targets = [as_dict(t).get("reference") for t in as_list(provenance.get("target"))]
        if f"MessageHeader/{header_id}" not in targets:
            continue
        activity = next(
            (as_dict(c).get("code") for c in as_list(as_dict(provenance.get("activity")).get("coding"))), None
        )
        expected = {MODIFIED: "revision", RETRACTED: "removal"}.get(activity)
        if expected is None:
            continue
        roles = [as_dict(e).get("role") for e in as_list(provenance.get("entity"))]
        if expected not in roles:
            problems.append(
                issue(
                    "homecare-version",
                    f"Bundle.entry[{position}].resource.entity",
                    f"a {activity} names the message it replaces with entity.role {expected}",
                )
            )
    return problems


TYPE = MessageType(
    code=MessageKind.HOMECARE_OBSERVATION.value,
    system=MEDCOM_EVENT_SYSTEM,
    label="home-care observation",
    label_da="hjemmeplejeobservation",
    focus="DiagnosticReport",
    content=HomeCareObservationContent,
    build=build,
    rules=(check_report_code, check_observations, check_version),
    profile="http://medcomfhir.dk/ig/homecareobservation/StructureDefinition/medcom-homecareobservation-message",
)
