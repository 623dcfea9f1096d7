"""HomeCareObservation (MedCom): measurements by municipal home care, sent to the GP; focus a
DiagnosticReport coded HomeCareReport with its Observations."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from messaging.bundle import as_dict, as_list, fhir_instant
from messaging.model import MessageKind, ObservationValue, ValidationIssue
from messaging.resources import (
    DIAGNOSTIC_REPORT_CODE_SYSTEM,
    BuildContext,
    based_on_service_request,
    coded,
    observation,
    ref,
)
from messaging.terminology import MEDCOM_EVENT_SYSTEM
from messaging.types.base import MessageType, focus_of, issue

REPORT_CODE = "HomeCareReport"


class HomeCareObservationContent(BaseModel):
    """A MedCom HomeCareObservation: measurements made by municipal home care, sent to the GP."""

    report_id: str
    effective: datetime
    observations: list[ObservationValue] = Field(default_factory=list)
    conclusion: str = ""
    service_request_id: str | None = None


def build(ctx: BuildContext, content: HomeCareObservationContent) -> tuple[list[dict], list[dict]]:
    effective = fhir_instant(content.effective)
    observations = [
        observation(ctx, f"observation-{i}", value, content.service_request_id, effective)
        for i, value in enumerate(content.observations)
    ]
    report: dict = {
        "resourceType": "DiagnosticReport",
        "id": ctx.id("diagnostic-report"),
        "identifier": [{"value": f"urn:uuid:{content.report_id}"}],
        "status": "final",
        "code": coded(DIAGNOSTIC_REPORT_CODE_SYSTEM, REPORT_CODE),
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


TYPE = MessageType(
    code=MessageKind.HOMECARE_OBSERVATION.value,
    system=MEDCOM_EVENT_SYSTEM,
    label="home-care observation",
    label_da="hjemmeplejeobservation",
    focus="DiagnosticReport",
    content=HomeCareObservationContent,
    build=build,
    rules=(check_report_code,),
    profile="http://medcomfhir.dk/ig/homecareobservation/StructureDefinition/medcom-homecareobservation-message",
)
