"""Test result (prøvesvar): careflow's own reply with a DiagnosticReport and its Observations,
based on the referral's ServiceRequest."""

from __future__ import annotations

from pydantic import BaseModel, Field

from messaging.model import MessageKind, ObservationValue
from messaging.resources import NPU_SYSTEM, BuildContext, based_on_service_request, coded, observation, ref
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType, requires_based_on


class TestResultContent(BaseModel):
    service_request_id: str
    code: str
    display: str = ""
    conclusion: str = ""
    observations: list[ObservationValue] = Field(default_factory=list)


def build(ctx: BuildContext, content: TestResultContent) -> tuple[list[dict], list[dict]]:
    observations = [
        observation(ctx, f"observation-{i}", value, content.service_request_id, None)
        for i, value in enumerate(content.observations)
    ]
    report: dict = {
        "resourceType": "DiagnosticReport",
        "id": ctx.id("diagnostic-report"),
        "basedOn": based_on_service_request(content.service_request_id),
        "status": "final",
        "code": coded(NPU_SYSTEM, content.code, content.display),
        "subject": ctx.patient_ref,
        "issued": ctx.timestamp,
        "performer": [{"reference": ref(ctx.sender)}],
    }
    if observations:
        report["result"] = [{"reference": ref(o)} for o in observations]
    if content.conclusion:
        report["conclusion"] = content.conclusion
    return [report], observations


TYPE = MessageType(
    code=MessageKind.TEST_RESULT.value,
    system=CAREFLOW_EVENT_SYSTEM,
    label="test result",
    label_da="prøvesvar",
    focus="DiagnosticReport",
    content=TestResultContent,
    build=build,
    rules=(requires_based_on("reply-based-on", "a test result"),),
    # careflow lets a test result be copied, e.g. to the patient's GP
    carbon_copy=True,
)
