"""The workflow's search attributes let Temporal's own tools find pathways (no patient data in them)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import Stack, wait_for
from workflows.steps import SA_NEXT_DEADLINE, SA_PATHWAY, SA_STATUS, SA_STEP

pytestmark = pytest.mark.e2e


async def test_running_flow_is_found_by_visibility_query(stack: Stack, escalated_flow) -> None:  # noqa: ANN001
    flow = await escalated_flow()

    def finder(query: str):  # noqa: ANN202
        async def found() -> list:
            # Visibility is eventually consistent: poll.
            return [w async for w in stack.client.list_workflows(f"{query} AND WorkflowId = '{flow.workflow_id}'")]

        return found

    executions = await wait_for(
        finder("CareflowPathway = 'referral' AND CareflowStep = 'appointment' AND CareflowStatus = 'escalated'"),
        timeout=30,
        interval=0.3,
    )
    assert [w.id for w in executions] == [flow.workflow_id]
    attributes = executions[0].typed_search_attributes
    assert (attributes.get(SA_PATHWAY), attributes.get(SA_STEP), attributes.get(SA_STATUS)) == (
        "referral",
        "appointment",
        "escalated",
    )
    assert attributes.get(SA_NEXT_DEADLINE) is not None
    # Overdue pathways are those whose next deadline has passed.
    overdue = await wait_for(
        finder(f"CareflowNextDeadline < '{datetime.now(UTC).isoformat()}'"), timeout=30, interval=0.3
    )
    assert [w.id for w in overdue] == [flow.workflow_id]
    # Nothing about the patient is searchable: the attributes are exactly careflow's four.
    assert {
        key.name for key in (pair.key for pair in attributes.search_attributes) if key.name.startswith("Careflow")
    } <= {"CareflowPathway", "CareflowStep", "CareflowStatus", "CareflowNextDeadline"}
