"""A minimal workflow that keeps legal deadlines, as a pathway on the platform will (tests only)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from careflow.deadlines import ClockStart, DeadlineRules, Track, deadlines_for


class DeadlineWatchInput(BaseModel):
    rules: DeadlineRules  # pinned at start: the version in force then, carried in the history
    track: Track
    referral_received_at: datetime


class MetRequest(BaseModel):
    rule_id: str


class DeadlineWatchResult(BaseModel):
    rules_version: str
    escalations: list[str]


@workflow.defn
class DeadlineWatchWorkflow:
    """Waits for each deadline of the referral's track; a deadline not met in time escalates, naming its rule."""

    def __init__(self) -> None:
        self.met: set[str] = set()

    @workflow.run
    async def run(self, watch: DeadlineWatchInput) -> DeadlineWatchResult:
        deadlines = deadlines_for(watch.rules, watch.track, ClockStart.REFERRAL_RECEIVED, watch.referral_received_at)
        escalations = []
        for deadline in sorted(deadlines, key=lambda d: d.due_at):
            try:
                await workflow.wait_condition(
                    lambda: deadline.rule_id in self.met,
                    timeout=max(deadline.due_at - workflow.now(), timedelta(seconds=1)),
                )
            except TimeoutError:
                escalations.append(deadline.escalation_reason())
        return DeadlineWatchResult(rules_version=watch.rules.version, escalations=escalations)

    @workflow.signal
    def met(self, request: MetRequest) -> None:
        self.met.add(request.rule_id)
