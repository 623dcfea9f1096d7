"""Acknowledgement (kvittering, MedCom): the answer to every received message, never itself
answered. Built by messaging.acknowledge.build_acknowledgement from the original, not from content."""

from __future__ import annotations

from messaging.bundle import ReferenceIndex, as_dict, resources
from messaging.model import AckCode, MessageKind, ValidationIssue
from messaging.terminology import MEDCOM_EVENT_SYSTEM
from messaging.types.base import MessageType, header_of, issue

ACK_CODES = frozenset(a.value for a in AckCode)


def check_response(bundle: dict) -> list[ValidationIssue]:
    """response names the acknowledged header and a code; a not-ok answer says why in an
    OperationOutcome; the Provenances are exactly the original's latest and the answer's own."""
    headers = list(resources(bundle, "MessageHeader"))
    if not headers:
        return []
    header_index, header = headers[0]
    path = f"Bundle.entry[{header_index}].resource.response"
    response = header.get("response") if isinstance(header.get("response"), dict) else None
    if response is None:
        return [issue("ack-response", path, "an acknowledgement needs MessageHeader.response")]
    problems = []
    if not isinstance(response.get("identifier"), str) or not response["identifier"]:
        problems.append(
            issue(
                "ack-response",
                f"{path}.identifier",
                "response.identifier (the acknowledged MessageHeader.id) is missing",
            )
        )
    code = response.get("code")
    if not isinstance(code, str) or code not in ACK_CODES:
        problems.append(
            issue(
                "ack-response",
                f"{path}.code",
                "response.code must be ok, transient-error or fatal-error",
                "MSG_VALUESET_VALUE_UNKNOWN",
            )
        )
    elif code != AckCode.OK.value:
        outcome = ReferenceIndex(bundle).resolve(as_dict(response.get("details")))
        if outcome is None or outcome[1].get("resourceType") != "OperationOutcome":
            problems.append(
                issue("ack-outcome", f"{path}.details", "a not-ok acknowledgement references an OperationOutcome")
            )
    provenances = list(resources(bundle, "Provenance"))
    if provenances and len(provenances) != 2:
        problems.append(
            issue(
                "ack-provenance",
                "Bundle.entry",
                f"an acknowledgement carries exactly two Provenances, found {len(provenances)}",
            )
        )
    return problems


def vans_document(bundle: dict) -> tuple[str, str] | None:
    """MCM:FCTL#{response code}."""
    code = as_dict(header_of(bundle).get("response")).get("code")
    return (f"MCM:FCTL#{code}", "2.0.0") if code in ACK_CODES else None


TYPE = MessageType(
    code=MessageKind.ACKNOWLEDGEMENT.value,
    system=MEDCOM_EVENT_SYSTEM,
    label="acknowledgement",
    label_da="kvittering",
    focus=None,
    content=None,
    rules=(check_response,),
    profile="http://medcomfhir.dk/ig/acknowledgement/StructureDefinition/medcom-messaging-acknowledgement",
    acknowledged=False,
    patient=False,
    vans_document=vans_document,
)
