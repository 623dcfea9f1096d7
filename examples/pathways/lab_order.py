"""A lab order: the GP orders a test from a lab and awaits the result (tutorial, part 1)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging.model import MessageKind
    from workflows.declare import AwaitReply, Party, Send
    from workflows.examples import DEMO_GP, DEMO_LAB, synthetic_patient
    from workflows.models import PathwayStart, Timings
    from workflows.steps import PathwayWorkflow


class LabOrderInput(PathwayStart):
    requester_sor: str = Field(pattern=r"^\d{6,18}$", description="SOR code of the ordering GP")
    lab_sor: str = Field(pattern=r"^\d{6,18}$", description="SOR code of the lab")
    reason: str = Field(min_length=1, max_length=2000)
    priority: str = "routine"


class LabOrderTimings(Timings):
    result_deadline: timedelta = timedelta(days=3)


@workflow.defn
class LabOrderPathway(PathwayWorkflow):
    """A lab order: the order goes to the lab, the result is awaited for three days, then escalated."""

    name = "lab-order"
    title, title_da = "Lab order", "Laboratorierekvisition"
    input_model = LabOrderInput
    timings_model = LabOrderTimings
    parties = (
        Party("requester", "ordering GP", field="requester_sor"),
        Party("performer", "laboratory", field="lab_sor", kind="lab"),
    )
    steps = (
        Send("order", MessageKind.REFERRAL, to="performer"),
        AwaitReply("result", MessageKind.TEST_RESULT, sender="performer", deadline="result_deadline"),
    )

    @classmethod
    def example(cls, rng):  # noqa: ANN001, ANN206
        """A synthetic order for the demo (`careflow demo --pathway lab-order`)."""
        return {
            "patient": synthetic_patient(rng),
            "requester_sor": DEMO_GP,
            "lab_sor": DEMO_LAB,
            "reason": rng.choice(["Lipidstatus", "Hæmoglobin", "HbA1c"]),
        }
