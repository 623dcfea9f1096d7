"""Referral (henvisning): careflow's own message that starts a pathway; focus a ServiceRequest
whose identifier is the pathway's correlation id."""

from __future__ import annotations

from pydantic import BaseModel

from messaging.bundle import as_list
from messaging.model import MessageKind, ValidationIssue
from messaging.resources import BuildContext, ref, service_request_identifier
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType, focus_of, issue

REQUEST_PRIORITIES = ("routine", "urgent", "asap", "stat")


class ReferralContent(BaseModel):
    service_request_id: str  # careflow's correlation id for the whole pathway
    reason: str
    priority: str = "routine"  # FHIR request-priority: routine | urgent | asap | stat


def service_request(ctx: BuildContext, service_request_id: str, reason: str, priority: str) -> dict:
    """The referral's ServiceRequest, an active order from sender to receiver: careflow's referral
    and the draft model's (messaging/referral_draft.py) both send it."""
    if priority not in REQUEST_PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(REQUEST_PRIORITIES)}")
    return {
        "resourceType": "ServiceRequest",
        "id": ctx.id("service-request"),
        "identifier": [service_request_identifier(service_request_id)],
        "status": "active",
        "intent": "order",
        "priority": priority,
        "subject": ctx.patient_ref,
        "authoredOn": ctx.timestamp,
        "requester": {"reference": ref(ctx.sender)},
        "performer": [{"reference": ref(ctx.receiver)}],
        "reasonCode": [{"text": reason}],
    }


def build(ctx: BuildContext, content: ReferralContent) -> tuple[list[dict], list[dict]]:
    return [service_request(ctx, content.service_request_id, content.reason, content.priority)], []


def check_identifier(bundle: dict) -> list[ValidationIssue]:
    """The ServiceRequest's identifier is the pathway id every later message refers to."""
    return [
        issue(
            "referral-identifier",
            f"Bundle.entry[{index}].resource.identifier",
            "the referral's ServiceRequest has no identifier",
        )
        for index, request in focus_of(bundle)
        if not any(isinstance(i, dict) and i.get("value") for i in as_list(request.get("identifier")))
    ]


TYPE = MessageType(
    code=MessageKind.REFERRAL.value,
    system=CAREFLOW_EVENT_SYSTEM,
    label="referral",
    label_da="henvisning",
    focus="ServiceRequest",
    content=ReferralContent,
    build=build,
    rules=(check_identifier,),
)
