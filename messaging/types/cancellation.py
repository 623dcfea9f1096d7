"""Cancellation (annullering): careflow's own message that revokes a referral's ServiceRequest."""

from __future__ import annotations

from pydantic import BaseModel

from messaging.model import MessageKind, ValidationIssue
from messaging.resources import BuildContext, ref, service_request_identifier
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType, focus_of, issue


class CancellationContent(BaseModel):
    service_request_id: str
    reason: str


def revoked_service_request(ctx: BuildContext, service_request_id: str) -> dict:
    """The referral's ServiceRequest, revoked: careflow's cancellation and the draft model's
    (messaging/referral_draft.py) both send it. R4 ServiceRequest has no statusReason: each adds
    the reason for revoking as a note."""
    return {
        "resourceType": "ServiceRequest",
        "id": ctx.id("service-request"),
        "identifier": [service_request_identifier(service_request_id)],
        "status": "revoked",
        "intent": "order",
        "subject": ctx.patient_ref,
        "requester": {"reference": ref(ctx.sender)},
    }


def build(ctx: BuildContext, content: CancellationContent) -> tuple[list[dict], list[dict]]:
    request = revoked_service_request(ctx, content.service_request_id)
    request["note"] = [{"text": content.reason, "time": ctx.timestamp}]
    return [request], []


def check_revoked(bundle: dict) -> list[ValidationIssue]:
    return [
        issue(
            "cancellation-revoked",
            f"Bundle.entry[{index}].resource.status",
            "a cancellation's ServiceRequest has status revoked",
            "MSG_VALUESET_VALUE_UNKNOWN",
        )
        for index, request in focus_of(bundle)
        if request.get("status") != "revoked"
    ]


TYPE = MessageType(
    code=MessageKind.CANCELLATION.value,
    system=CAREFLOW_EVENT_SYSTEM,
    label="cancellation",
    label_da="annullering",
    focus="ServiceRequest",
    content=CancellationContent,
    build=build,
    rules=(check_revoked,),
)
