"""Appointment (indkaldelse): careflow's own reply booking the referred patient; focus an
Appointment based on the referral's ServiceRequest."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from messaging.bundle import fhir_instant
from messaging.model import MessageKind
from messaging.resources import BuildContext, based_on_service_request
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType, requires_based_on


class AppointmentContent(BaseModel):
    service_request_id: str
    start: datetime
    end: datetime | None = None
    description: str = ""


def build(ctx: BuildContext, content: AppointmentContent) -> tuple[list[dict], list[dict]]:
    appointment: dict = {
        "resourceType": "Appointment",
        "id": ctx.id("appointment"),
        "status": "booked",
        "basedOn": based_on_service_request(content.service_request_id),
        "start": fhir_instant(content.start),
        "participant": [{"actor": ctx.patient_ref, "status": "accepted"}],
    }
    if content.end is not None:
        appointment["end"] = fhir_instant(content.end)
    if content.description:
        appointment["description"] = content.description
    return [appointment], []


TYPE = MessageType(
    code=MessageKind.APPOINTMENT.value,
    system=CAREFLOW_EVENT_SYSTEM,
    label="appointment",
    label_da="indkaldelse",
    focus="Appointment",
    content=AppointmentContent,
    build=build,
    rules=(requires_based_on("reply-based-on", "an appointment"),),
)
