"""MedCom's draft referral model (dk-medcom-ref-lm 0.1.0, unreleased), behind one interface.

The referral is a ServiceRequest (new, update, cancel); the receiver's triage decision a Task
(accept, afvisning, videresendelse, prioritetsaendring); the booking an Appointment. Everything that
follows the draft's words — its status values, its Task types, what a forward looks like — is named
here and nowhere else, so a new draft (or the released standard) changes this module, not the
pathway, the simulator or the receiving side.

MedCom has released no event codes for these messages: the draft's own code system
(ehmi-message-event-cs) is a draft, and it has no codes at all for the triage and booking
messages. careflow sends all of them under its own event code system (CAREFLOW_EVENT_SYSTEM) —
with the draft's code values where the draft has them — and never puts a code of its own into a
MedCom code system. The Task's decision type is coded in careflow's own code system too: the draft
leaves it to "a local or national code set".
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from messaging.bundle import ReferenceIndex, as_dict, as_list, fhir_instant, resources
from messaging.identifiers import SOR_SYSTEM
from messaging.model import Correlation, Organization, ValidationIssue
from messaging.resources import (
    BuildContext,
    based_on_service_request,
    organization_resource,
    ref,
    service_request_identifier,
)
from messaging.types.base import focus_of, issue, strip_uuid
from messaging.types.cancellation import revoked_service_request
from messaging.types.referral import REQUEST_PRIORITIES, service_request

DRAFT = "dk-medcom-ref-lm 0.1.0 (draft)"

# Event codes (careflow's code system). The first three are the draft's values.
NEW_REFERRAL = "new-referral"
UPDATE_REFERRAL = "update-referral"
CANCEL_REFERRAL = "cancel-referral"
TRIAGE = "careflow-referral-triage-message"  # the draft: REF-005/007/008/009, no event code
BOOKING = "careflow-referral-booking-message"  # the draft: REF-006, no event code

# careflow's code system for the draft's Task types (the draft names no code system for Task.code).
TRIAGE_DECISION_SYSTEM = "https://careflow.dk/fhir/CodeSystem/careflow-referral-triage-decision"


class Decision(StrEnum):
    """The receiver's triage decision: the draft's Task types."""

    ACCEPT = "accept"
    REJECT = "afvisning"
    FORWARD = "videresendelse"
    REPRIORITISE = "prioritetsaendring"


# The draft's Task.status for each decision. It has no "forwarded": a forward completes the Task, and
# the ServiceRequest that replaces the referral (Task.output) says where it went.
TASK_STATUS = {
    Decision.ACCEPT: "accepted",
    Decision.REJECT: "rejected",
    Decision.FORWARD: "completed",
    Decision.REPRIORITISE: "completed",
}
DECISION_WORDS = {
    Decision.ACCEPT: "accepted",
    Decision.REJECT: "rejected",
    Decision.FORWARD: "forwarded",
    Decision.REPRIORITISE: "reprioritised",
}


class Track(StrEnum):
    STANDARD = "standard"
    CANCER = "cancer"  # kræftpakkeforløb


# --- the referral: ServiceRequest --------------------------------------------------------------------


class ReferralRequestContent(BaseModel):
    """A new referral, or an update of it (the same identifier, the changed content)."""

    service_request_id: str
    reason: str = Field(min_length=1, max_length=2000)
    priority: str = "routine"
    track: Track = Track.STANDARD
    note: str = ""  # an update: what changed and why


class CancelReferralContent(BaseModel):
    service_request_id: str
    reason: str = ""


def build_request(ctx: BuildContext, content: ReferralRequestContent) -> tuple[list[dict], list[dict]]:
    request = service_request(ctx, content.service_request_id, content.reason, content.priority)
    if content.track is Track.CANCER:
        request["category"] = [{"text": "kræftpakkeforløb"}]
    if content.note:
        request["note"] = [{"text": content.note, "time": ctx.timestamp}]
    return [request], []


def build_cancel(ctx: BuildContext, content: CancelReferralContent) -> tuple[list[dict], list[dict]]:
    request = revoked_service_request(ctx, content.service_request_id)
    if content.reason:  # R4 ServiceRequest has no statusReason: the reason travels as a note
        request["note"] = [{"text": content.reason, "time": ctx.timestamp}]
    return [request], []


def request_status_rule(rule_id: str, allowed: tuple[str, ...]) -> object:
    def check(bundle: dict) -> list[ValidationIssue]:
        problems = []
        for index, request in focus_of(bundle):
            path = f"Bundle.entry[{index}].resource"
            if not any(isinstance(i, dict) and i.get("value") for i in as_list(request.get("identifier"))):
                problems.append(issue(rule_id, f"{path}.identifier", "the referral's ServiceRequest has no identifier"))
            if request.get("status") not in allowed:
                problems.append(
                    issue(
                        rule_id,
                        f"{path}.status",
                        f"this message's ServiceRequest has status {' or '.join(allowed)}",
                        "MSG_VALUESET_VALUE_UNKNOWN",
                    )
                )
        return problems

    return check


# --- the triage decision: Task ----------------------------------------------------------------------


class TriageContent(BaseModel):
    """The receiver's decision on the referral. A forward names the new receiver and the id of the
    ServiceRequest that replaces the referral; a reprioritisation names the new priority."""

    service_request_id: str
    decision: Decision
    reason: str = ""
    priority: str | None = None
    forward_to: Organization | None = None
    forwarded_request_id: str | None = None
    decided_at: datetime | None = None


def build_triage(ctx: BuildContext, content: TriageContent) -> tuple[list[dict], list[dict]]:
    if content.decision is Decision.FORWARD and (content.forward_to is None or not content.forwarded_request_id):
        raise ValueError("a forward names the new receiver and the ServiceRequest that replaces the referral")
    if content.decision is Decision.REPRIORITISE and content.priority not in REQUEST_PRIORITIES:
        raise ValueError(f"a reprioritisation names the new priority: {', '.join(REQUEST_PRIORITIES)}")
    task: dict = {
        "resourceType": "Task",
        "id": ctx.id("triage-task"),
        "identifier": [{"value": f"urn:uuid:{ctx.id('triage-decision')}"}],
        "status": TASK_STATUS[content.decision],
        "intent": "order",
        "code": {"coding": [{"system": TRIAGE_DECISION_SYSTEM, "code": content.decision.value}]},
        "focus": {"type": "ServiceRequest", "identifier": service_request_identifier(content.service_request_id)},
        "basedOn": based_on_service_request(content.service_request_id),
        "for": ctx.patient_ref,
        "executionPeriod": {"end": fhir_instant(content.decided_at) if content.decided_at else ctx.timestamp},
        "owner": {"reference": ref(ctx.sender)},
    }
    if content.priority:
        task["priority"] = content.priority
    if content.reason:
        task["note"] = [{"text": content.reason}]
        task["statusReason"] = {"text": content.reason}
    others: list[dict] = []
    if content.decision is Decision.FORWARD:
        assert content.forward_to is not None and content.forwarded_request_id is not None
        receiver = organization_resource(content.forward_to)
        replacement = {
            "resourceType": "ServiceRequest",
            "id": ctx.id("forwarded-service-request"),
            "identifier": [service_request_identifier(content.forwarded_request_id)],
            "replaces": [
                {"type": "ServiceRequest", "identifier": service_request_identifier(content.service_request_id)}
            ],
            "status": "active",
            "intent": "order",
            "subject": ctx.patient_ref,
            "authoredOn": ctx.timestamp,
            "requester": {"reference": ref(ctx.sender)},
            "performer": [{"reference": ref(receiver)}],
        }
        task["output"] = [{"type": {"text": "alternativtTilbud"}, "valueReference": {"reference": ref(replacement)}}]
        others += [replacement, receiver]
    return [task], others


def _decision(task: dict) -> str | None:
    for coding in as_list(as_dict(task.get("code")).get("coding")):
        if isinstance(coding, dict) and coding.get("system") == TRIAGE_DECISION_SYSTEM:
            return coding.get("code") if isinstance(coding.get("code"), str) else None
    return None


def _sor(organization: dict) -> str | None:
    for identifier in as_list(organization.get("identifier")):
        if isinstance(identifier, dict) and identifier.get("system") == SOR_SYSTEM:
            return identifier.get("value") if isinstance(identifier.get("value"), str) else None
    return None


def extract_triage(bundle: dict) -> Correlation:
    """The referral the decision is about (Task.focus — the replacing ServiceRequest of a forward is
    not the pathway's), the decision, and for a forward the new receiver's SOR code."""
    index = ReferenceIndex(bundle)
    task = next((r for _, r in focus_of(bundle, index) if r.get("resourceType") == "Task"), {})
    focus = as_dict(task.get("focus"))
    service_request_id = strip_uuid(as_dict(focus.get("identifier")).get("value"))
    decision = _decision(task)
    forward_to = None
    for output in as_list(task.get("output")):
        found = index.resolve(as_dict(as_dict(output).get("valueReference")))
        if found is None or found[1].get("resourceType") != "ServiceRequest":
            continue
        performer = next((p for p in as_list(found[1].get("performer")) if isinstance(p, dict)), None)
        organization = index.resolve(performer) if performer else None
        if organization is not None and organization[1].get("resourceType") == "Organization":
            forward_to = _sor(organization[1])
    words = DECISION_WORDS.get(Decision(decision)) if decision in set(Decision) else None
    reason = next((n.get("text") for n in as_list(task.get("note")) if isinstance(n, dict)), None)
    summary = " ".join(
        part
        for part in (
            words or "",
            f"to SOR {forward_to}" if forward_to else "",
            f"priority {task['priority']}" if decision == Decision.REPRIORITISE and task.get("priority") else "",
        )
        if part
    )
    if reason and decision == Decision.REJECT:
        summary += f": {reason}"
    return Correlation(
        service_request_id=service_request_id,
        based_on=[service_request_id] if service_request_id else [],
        outcome=decision,
        forward_to=forward_to,
        summary=summary[:300],
    )


def check_triage(bundle: dict) -> list[ValidationIssue]:
    """A decision the draft knows, with the status the draft gives it, about a referral; a forward
    names the replacing ServiceRequest and its performer."""
    problems = []
    for index, task in focus_of(bundle):
        path = f"Bundle.entry[{index}].resource"
        decision = _decision(task)
        if decision not in set(Decision):
            problems.append(
                issue(
                    "triage-decision",
                    f"{path}.code",
                    "the triage Task's code is not a decision of the draft model",
                    "MSG_VALUESET_VALUE_UNKNOWN",
                )
            )
            continue
        if task.get("status") != TASK_STATUS[Decision(decision)]:
            problems.append(
                issue(
                    "triage-status",
                    f"{path}.status",
                    f"a {decision} decision has Task status {TASK_STATUS[Decision(decision)]}",
                    "MSG_VALUESET_VALUE_UNKNOWN",
                )
            )
        if not strip_uuid(as_dict(as_dict(task.get("focus")).get("identifier")).get("value")):
            problems.append(issue("triage-focus", f"{path}.focus", "the triage Task's focus is the referral"))
        if decision == Decision.FORWARD and extract_triage(bundle).forward_to is None:
            problems.append(
                issue(
                    "triage-forward",
                    f"{path}.output",
                    "a forward names the ServiceRequest that replaces the referral, with its performer's SOR code",
                )
            )
    return problems


# --- the booking: Appointment -----------------------------------------------------------------------


class BookingContent(BaseModel):
    """The booked appointment; a rescheduling names the appointment it replaces (cancelled)."""

    service_request_id: str
    appointment_id: str
    start: datetime
    end: datetime | None = None
    description: str = ""
    replaces_appointment_id: str | None = None


def build_booking(ctx: BuildContext, content: BookingContent) -> tuple[list[dict], list[dict]]:
    appointment: dict = {
        "resourceType": "Appointment",
        "id": ctx.id("appointment"),
        "identifier": [{"value": f"urn:uuid:{content.appointment_id}"}],
        "status": "booked",
        "basedOn": based_on_service_request(content.service_request_id),
        "start": fhir_instant(content.start),
        "participant": [
            {"actor": ctx.patient_ref, "status": "accepted"},
            {"actor": {"reference": ref(ctx.sender)}, "status": "accepted"},
        ],
    }
    if content.end is not None:
        appointment["end"] = fhir_instant(content.end)
    if content.description:
        appointment["description"] = content.description
    others: list[dict] = []
    if content.replaces_appointment_id:
        others.append(
            {
                "resourceType": "Appointment",
                "id": ctx.id("replaced-appointment"),
                "identifier": [{"value": f"urn:uuid:{content.replaces_appointment_id}"}],
                "status": "cancelled",
                "cancelationReason": {"text": "rescheduled"},
                "basedOn": based_on_service_request(content.service_request_id),
                "participant": [{"actor": ctx.patient_ref, "status": "declined"}],
            }
        )
    return [appointment], others


def booking_summary(bundle: dict) -> str:
    index = ReferenceIndex(bundle)
    booked = next((r for _, r in focus_of(bundle, index) if r.get("resourceType") == "Appointment"), {})
    start = booked.get("start") if isinstance(booked.get("start"), str) else ""
    rescheduled = any(a.get("status") == "cancelled" for _, a in resources(bundle, "Appointment"))
    return ("rescheduled, " if rescheduled else "") + (f"booked for {start[:16]}" if start else "booked")
