"""MedCom acknowledgements: build the answer to a received message, and decide when one is due.

The acknowledgement goes back from the original's primary receiver to its sender, names the
acknowledged MessageHeader in response.identifier, and carries exactly two Provenances: the
original's latest one and a new `acknowledgement` one. Not-ok answers carry an OperationOutcome
with MedCom error codes. It is built best-effort from broken originals, because invalid messages
must be answered too.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import datetime

from messaging.build import derived_id, destination, entry, organization_resource, provenance_resource, ref
from messaging.bundle import (
    ReferenceIndex,
    as_dict,
    as_list,
    fhir_instant,
    header_id_of,
    organization_of,
    primary_destination,
    resources,
)
from messaging.errors import MessageError
from messaging.identifiers import SOR_ENDPOINT_PREFIX
from messaging.model import AckCode, Organization, ParsedMessage, ValidationIssue
from messaging.profiles import apply_profiles
from messaging.terminology import (
    HL7_OPERATION_OUTCOME_SYSTEM,
    MEDCOM_ACTIVITY_SYSTEM,
    MEDCOM_ERROR_SYSTEM,
    get_terminology,
)
from messaging.types import MESSAGE_TYPES
from messaging.types.acknowledgement import TYPE as ACKNOWLEDGEMENT

# Error codes used when a not-ok answer is given without specific issues.
_DEFAULT_ERROR_CODES = {
    AckCode.FATAL_ERROR: "MSG_Datatype_Wrong",
    AckCode.TRANSIENT_ERROR: "MSG_Mailbox_Out_Of_Operation",
}


def needs_acknowledgement(parsed: ParsedMessage) -> bool:
    """Every received message is acknowledged, except acknowledgements themselves (and any type
    that says it is never acknowledged). Unknown types are acknowledged: the sender waits."""
    message_type = MESSAGE_TYPES.find(parsed.event_code)
    return message_type is None or message_type.acknowledged


def _original_header(original: dict) -> dict:
    for _, resource in resources(original, "MessageHeader"):
        return resource
    return {}


def _party(index: ReferenceIndex, reference: object, override: Organization | None, role: str, header_id: str) -> dict:
    """The Organization resource of one party: the caller's override, else the original's resource."""
    if override is not None:
        return organization_resource(override)
    found = index.resolve(reference)
    if found is not None and found[1].get("resourceType") == "Organization":
        resource = copy.deepcopy(found[1])
        resource.pop("text", None)
        if not isinstance(resource.get("id"), str):
            resource["id"] = derived_id(header_id, role)
        return resource
    # Best effort: the original does not say who this is. The answer will not validate,
    # but the caller still gets something to send or store.
    return {"resourceType": "Organization", "id": derived_id(header_id, role), "name": f"unknown {role}"}


def _latest_provenance(original: dict, header_id: str) -> dict | None:
    """The original's own Provenance (targeting its MessageHeader), else its last one."""
    candidates = [r for _, r in resources(original, "Provenance")]
    for provenance in reversed(candidates):
        if any(header_id_of(t) == header_id for t in as_list(provenance.get("target")) if isinstance(t, dict)):
            return provenance
    return candidates[-1] if candidates else None


def _operation_outcome(outcome_id: str, code: AckCode, issues: Iterable[ValidationIssue]) -> dict:
    terminology = get_terminology()
    issue_list = list(issues) or [
        ValidationIssue(
            rule="acknowledgement", path="Bundle", message="message not accepted", error_code=_DEFAULT_ERROR_CODES[code]
        )
    ]
    fhir_issues = []
    for issue in issue_list:
        # MedCom's issue-details value set allows its own codes and HL7's MSG_* operation-outcome codes
        system = (
            MEDCOM_ERROR_SYSTEM
            if terminology.has(MEDCOM_ERROR_SYSTEM, issue.error_code)
            else HL7_OPERATION_OUTCOME_SYSTEM
        )
        fhir_issue: dict = {
            "severity": "fatal" if code is AckCode.FATAL_ERROR else "error",
            "code": "transient" if code is AckCode.TRANSIENT_ERROR else "invalid",
            "details": {"coding": [{"system": system, "code": issue.error_code}]},
            # rule and message are written without patient data, so they may travel
            "diagnostics": f"{issue.rule}: {issue.message}",
        }
        if issue.path:
            fhir_issue["expression"] = [issue.path]
        fhir_issues.append(fhir_issue)
    return {"resourceType": "OperationOutcome", "id": outcome_id, "issue": fhir_issues}


def build_acknowledgement(
    original: dict,
    *,
    code: AckCode,
    message_header_id: str,
    bundle_id: str,
    timestamp: datetime,
    issues: Iterable[ValidationIssue] = (),
    sender: Organization | None = None,
    receiver: Organization | None = None,
) -> dict:
    """The acknowledgement Bundle answering `original`.

    `sender`/`receiver` override the parties read from the original (which swaps them: the
    acknowledgement's sender is the original's primary receiver) — useful when the original is
    too broken to say who they are. Raises MessageError only when the original has no
    MessageHeader id, since then there is nothing to acknowledge.
    """
    code = AckCode(code)
    header = _original_header(original if isinstance(original, dict) else {})
    original_header_id = header.get("id")
    if not isinstance(original_header_id, str) or not original_header_id:
        raise MessageError(
            "cannot acknowledge a message without a MessageHeader id",
            [
                ValidationIssue(
                    rule="header-id", path="Bundle.entry[0].resource.id", message="MessageHeader.id is missing"
                )
            ],
        )
    index = ReferenceIndex(original)
    primary = primary_destination(header) or {}
    ack_sender = _party(index, primary.get("receiver"), sender, "receiver", original_header_id)
    ack_receiver = _party(index, header.get("sender"), receiver, "sender", original_header_id)
    if ack_sender.get("id") == ack_receiver.get("id"):
        ack_receiver["id"] = derived_id(original_header_id, "sender")

    stamp = fhir_instant(timestamp)
    earlier = _latest_provenance(original, original_header_id)
    if earlier is not None:
        earlier = copy.deepcopy(earlier)
        earlier.pop("text", None)
        earlier.setdefault("id", derived_id(original_header_id, "provenance"))
        # Its agent was the original's sender; point at that organisation as it appears here.
        earlier["agent"] = [{"who": {"reference": ref(ack_receiver)}}]
        earlier["target"] = [{"reference": f"MessageHeader/{original_header_id}"}]
        codings = as_list(as_dict(earlier.get("activity")).get("coding"))
        terminology = get_terminology()
        if not any(isinstance(c, dict) and terminology.is_activity(c.get("system"), c.get("code")) for c in codings):
            # A broken original may carry a non-MedCom activity; the answer must still be valid,
            # so it records the exchange generically as a sent message.
            earlier["activity"] = {"coding": [{"system": MEDCOM_ACTIVITY_SYSTEM, "code": "new-message"}]}
    else:
        earlier = provenance_resource(
            derived_id(original_header_id, "provenance"),
            original_header_id,
            original.get("timestamp") if isinstance(original.get("timestamp"), str) else stamp,
            "new-message",
            ref(ack_receiver),
            None,
        )
    answer = provenance_resource(
        derived_id(message_header_id, "provenance"),
        message_header_id,
        stamp,
        "acknowledgement",
        ref(ack_sender),
        original_header_id,
    )

    receiver_org = organization_of(ack_receiver) or Organization(sor="", ean="", name="")
    sender_org = organization_of(ack_sender) or Organization(sor="", ean="", name="")
    ack_header: dict = {
        "resourceType": "MessageHeader",
        "id": message_header_id,
        "eventCoding": {"system": ACKNOWLEDGEMENT.system, "code": ACKNOWLEDGEMENT.code},
        "destination": [destination(ref(ack_receiver), receiver_org)],
        "sender": {"reference": ref(ack_sender)},
        "source": {"endpoint": SOR_ENDPOINT_PREFIX + sender_org.sor},
        "response": {"identifier": original_header_id, "code": code.value},
    }
    parts = [ack_header, earlier, answer, ack_sender, ack_receiver]
    if code is not AckCode.OK:
        outcome = _operation_outcome(derived_id(message_header_id, "operation-outcome"), code, issues)
        ack_header["response"]["details"] = {"reference": ref(outcome)}
        parts.append(outcome)
    return apply_profiles(
        {
            "resourceType": "Bundle",
            "id": bundle_id,
            "type": "message",
            "timestamp": stamp,
            "entry": [entry(r) for r in parts],
        }
    )
