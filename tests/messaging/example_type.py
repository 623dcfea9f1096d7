"""A message type declared outside messaging/, in one module: a made-up careflow-style discharge
summary (udskrivningsresumé). Importing this module registers it; nothing else is edited.

tests/messaging/test_message_types.py builds, parses, validates, acknowledges and labels it.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from pydantic import BaseModel

from messaging.bundle import as_dict, as_list, fhir_instant
from messaging.model import Correlation, ValidationIssue
from messaging.resources import BuildContext, ref, service_request_identifier
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types import MESSAGE_TYPES, MessageType
from messaging.types.base import extract_correlation, focus_of, issue, strip_uuid

CODE = "careflow-discharge-summary-message"
LOINC = "http://loinc.org"


class DischargeSummaryContent(BaseModel):
    service_request_id: str  # the pathway the stay belongs to
    discharged: datetime
    summary: str


def build(ctx: BuildContext, content: DischargeSummaryContent) -> tuple[list[dict], list[dict]]:
    composition = {
        "resourceType": "Composition",
        "id": ctx.id("composition"),
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": "18842-5", "display": "Discharge summary"}]},
        "subject": ctx.patient_ref,
        "date": fhir_instant(content.discharged),
        "author": [{"reference": ref(ctx.sender)}],
        "title": "Udskrivningsresumé",
        # the pathway's ServiceRequest as a logical reference: a Composition has no basedOn
        "event": [
            {
                "detail": [
                    {"type": "ServiceRequest", "identifier": service_request_identifier(content.service_request_id)}
                ]
            }
        ],
        "section": [
            {
                "title": "Forløb",
                "text": {
                    "status": "generated",
                    "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{escape(content.summary)}</div>',
                },
            }
        ],
    }
    return [composition], []


def extract(bundle: dict) -> Correlation:
    """The default extraction, plus the pathway id from the Composition's event detail."""
    correlation = extract_correlation(bundle)
    for _, composition in focus_of(bundle):
        for event in as_list(composition.get("event")):
            for detail in as_list(as_dict(event).get("detail")):
                if found := strip_uuid(as_dict(as_dict(detail).get("identifier")).get("value")):
                    return correlation.model_copy(update={"service_request_id": found, "based_on": [found]})
    return correlation


def check_sections(bundle: dict) -> list[ValidationIssue]:
    """A discharge summary says something: at least one section with text."""
    return [
        issue(
            "discharge-summary-section",
            f"Bundle.entry[{index}].resource.section",
            "a discharge summary needs a section with text",
        )
        for index, composition in focus_of(bundle)
        if not any(as_dict(as_dict(s).get("text")).get("div") for s in as_list(composition.get("section")))
    ]


TYPE = MESSAGE_TYPES.register(
    MessageType(
        code=CODE,
        system=CAREFLOW_EVENT_SYSTEM,
        label="discharge summary",
        label_da="udskrivningsresumé",
        focus="Composition",
        content=DischargeSummaryContent,
        build=build,
        extract=extract,
        rules=(check_sections,),
    )
)
