"""The referral pathway: henvisning → indkaldelse → prøvesvar → behandlingsplan."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging.model import MessageKind
    from workflows.models import PathwayInput, PathwayResult
    from workflows.steps import OutboundStep, PathwayWorkflow, ReplyStep


@workflow.defn
class ReferralPathwayWorkflow(PathwayWorkflow):
    """A clinician's referral, followed until the patient has a treatment plan.

    Sends: the referral (ServiceRequest) to the receiving organisation, and a cancellation if a
    coordinator cancels. Awaits: its acknowledgement (30 min, 2 resends, then escalation; a
    fatal-error escalates at once), the appointment (30 days: the right to assessment), the test
    result (DiagnosticReport) and the treatment plan (CarePlan), each with a deadline that escalates
    to a coordinator and keeps waiting. Handlers: signal `message_received`, query `pathway_state`,
    updates `cancel`, `resend`, `extend_deadline`, `complete_step`. All timings per pathway in settings.
    """

    steps = (
        OutboundStep("referral", MessageKind.REFERRAL),
        ReplyStep("appointment", MessageKind.APPOINTMENT, deadline="appointment_deadline"),
        ReplyStep("test_result", MessageKind.TEST_RESULT, deadline="test_result_deadline"),
        ReplyStep("treatment_plan", MessageKind.TREATMENT_PLAN, deadline="treatment_plan_deadline"),
    )

    @workflow.run
    async def run(self, pathway_input: PathwayInput) -> PathwayResult:
        return await self.run_pathway(pathway_input)
