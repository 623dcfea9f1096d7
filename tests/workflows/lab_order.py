"""A lab order pathway, declared as a developer would add one (here only for the tests)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging.model import MessageKind
    from workflows.models import PathwayInput, PathwayResult
    from workflows.steps import OutboundStep, PathwayWorkflow, ReplyStep


@workflow.defn
class LabOrderWorkflow(PathwayWorkflow):
    """A lab order: the referral goes to the lab, and its test result is awaited (test_result_deadline)."""

    steps = (
        OutboundStep("referral", MessageKind.REFERRAL),
        ReplyStep("test_result", MessageKind.TEST_RESULT, deadline="test_result_deadline"),
    )

    @workflow.run
    async def run(self, pathway_input: PathwayInput) -> PathwayResult:
        return await self.run_pathway(pathway_input)
