"""The referral pathway: henvisning → indkaldelse → prøvesvar → behandlingsplan."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging.model import MessageKind
    from workflows.declare import AwaitReply, Party, Send
    from workflows.examples import DEMO_GP, DEMO_HOSPITAL, synthetic_patient
    from workflows.inputs import ReferralInput
    from workflows.models import PathwayTimings
    from workflows.steps import PathwayWorkflow


@workflow.defn(name="ReferralPathwayWorkflow")
class ReferralPathwayWorkflow(PathwayWorkflow):
    """A clinician's referral, followed until the patient has a treatment plan.

    Sends: the referral (ServiceRequest) to the receiving organisation, and a cancellation if a
    coordinator cancels. Awaits: its acknowledgement (30 min, 2 resends, then escalation; a
    fatal-error escalates at once), the appointment from the receiver (30 days: the right to
    assessment), the test result (DiagnosticReport) from the lab and the treatment plan (CarePlan)
    from the receiver, each with a deadline that escalates to a coordinator and keeps waiting; a
    rescheduled appointment replaces the first. Timings: CAREFLOW_PATHWAYS__REFERRAL__<FIELD>.
    """

    name = "referral"
    title, title_da = "Referral", "Henvisning"
    input_model = ReferralInput
    timings_model = PathwayTimings
    parties = (
        Party("requester", "referring organisation", field="referring_sor"),
        Party("performer", "receiving organisation", field="receiving_sor"),
        Party("lab", "laboratory", field="lab_sor", directory_kind="lab"),
    )
    steps = (
        Send("referral", MessageKind.REFERRAL, to="performer"),
        AwaitReply("appointment", MessageKind.APPOINTMENT, sender="performer", deadline="appointment_deadline"),
        AwaitReply("test_result", MessageKind.TEST_RESULT, sender="lab", deadline="test_result_deadline"),
        AwaitReply(
            "treatment_plan", MessageKind.TREATMENT_PLAN, sender="performer", deadline="treatment_plan_deadline"
        ),
    )

    @classmethod
    def example(cls, rng):  # noqa: ANN001, ANN206
        reasons = [
            "Brystsmerter ved anstrengelse",
            "Hjertebanken, udredning",
            "Forhøjet blodtryk trods behandling",
            "Åndenød ved gang",
        ]
        return {
            "patient": synthetic_patient(rng),
            "referring_sor": DEMO_GP,
            "receiving_sor": DEMO_HOSPITAL,
            "reason": rng.choice(reasons),
            "priority": rng.choice(["routine", "routine", "urgent"]),
        }
