"""careflow.deadlines inside real workflow code: sandboxed, replay-safe, on the time-skipping server;
a rule-book change after start leaves a running pathway's deadlines alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from careflow.deadlines import COPENHAGEN, RULES_2026_1, DeadlineRuleBook, DeadlineRules, Track
from tests.careflow.deadline_watch import DeadlineWatchInput, DeadlineWatchResult, DeadlineWatchWorkflow, MetRequest

PASSTHROUGH = ("pydantic", "pydantic_core", "annotated_types", "careflow", "holidays")


def _runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))


async def test_deadlines_escalate_by_rule_and_keep_their_version(time_skipping_server: WorkflowEnvironment) -> None:
    config = time_skipping_server.client.config()
    config["data_converter"] = pydantic_data_converter
    client = Client(**config)
    task_queue = f"deadlines-{uuid.uuid4()}"
    now = await time_skipping_server.get_current_time()
    # a book whose current version the operator later replaces with a stricter one
    v1 = RULES_2026_1.model_copy(update={"version": "t-1", "valid_from": date(2000, 1, 1)})
    book = DeadlineRuleBook(versions=(v1,))
    pinned = book.in_force(now)

    async with Worker(client, task_queue=task_queue, workflows=[DeadlineWatchWorkflow], workflow_runner=_runner()):
        handle = await client.start_workflow(
            DeadlineWatchWorkflow.run,
            DeadlineWatchInput(rules=pinned, track=Track.CANCER, referral_received_at=now),
            id=f"deadline-watch-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        # the rules change while the pathway runs: 1 day for everything
        stricter = DeadlineRules(
            version="t-2",
            valid_from=date(2001, 1, 1),
            rules=tuple(r.model_copy(update={"amount": 1}) for r in v1.rules),
        )
        book = DeadlineRuleBook(versions=(v1, stricter))
        assert book.in_force(now).version == "t-2"  # new pathways would get it
        await handle.signal(DeadlineWatchWorkflow.met, MetRequest(rule_id="patient-informed"))
        # time skips the ~14 days; a failing workflow task would otherwise hang the test
        result: DeadlineWatchResult = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.rules_version == "t-1"
    assert len(result.escalations) == 1
    reason = result.escalations[0]
    assert "cancer-assessment-start" in reason and "t-1" in reason and "within 14 days" in reason
    due = (now + timedelta(days=14)).astimezone(COPENHAGEN).date()
    assert f"due {due.isoformat()}" in reason

    # the recorded history replays in the sandbox: the computation is deterministic
    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[DeadlineWatchWorkflow], workflow_runner=_runner(), data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(history)
