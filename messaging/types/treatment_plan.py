"""Treatment plan (behandlingsplan): careflow's own reply with a CarePlan based on the
referral's ServiceRequest."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from messaging.bundle import fhir_instant
from messaging.model import MessageKind
from messaging.resources import BuildContext, based_on_service_request, ref
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType, requires_based_on


class TreatmentPlanContent(BaseModel):
    service_request_id: str
    description: str
    start: datetime | None = None


def build(ctx: BuildContext, content: TreatmentPlanContent) -> tuple[list[dict], list[dict]]:
    plan: dict = {
        "resourceType": "CarePlan",
        "id": ctx.id("care-plan"),
        "basedOn": based_on_service_request(content.service_request_id),
        "status": "active",
        "intent": "plan",
        "description": content.description,
        "subject": ctx.patient_ref,
        "author": {"reference": ref(ctx.sender)},
    }
    if content.start is not None:
        plan["period"] = {"start": fhir_instant(content.start)}
    return [plan], []


TYPE = MessageType(
    code=MessageKind.TREATMENT_PLAN.value,
    system=CAREFLOW_EVENT_SYSTEM,
    label="treatment plan",
    label_da="behandlingsplan",
    focus="CarePlan",
    content=TreatmentPlanContent,
    build=build,
    rules=(requires_based_on("reply-based-on", "a treatment plan"),),
    # careflow lets a treatment plan be copied, e.g. to the patient's GP
    carbon_copy=True,
)
