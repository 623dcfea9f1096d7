"""Keeps the read model honest about pathways that ended outside their own code: a workflow
terminated or cancelled by an operator, or a flow row whose workflow was never started (the API
died in between). Coordinators then see them as failed instead of forever active."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from store.models import Escalation, Flow, FlowEvent, FlowStatus, utcnow

log = logging.getLogger(__name__)

# Closed executions whose last projected status still says running: they ended from outside.
ENDED_FROM_OUTSIDE = "ExecutionStatus != 'Running' AND CareflowStatus IN ('active', 'escalated')"
# A flow row this old with no workflow behind it will not get one.
NEVER_STARTED_AFTER = timedelta(minutes=5)


class Reconciler:
    def __init__(self, engine: Engine, client: Client) -> None:
        self.engine, self.client = engine, client

    async def run_once(self, limit: int = 200) -> int:
        """One pass; returns how many flows it marked as ended."""
        marked = 0
        async for execution in self.client.list_workflows(ENDED_FROM_OUTSIDE, limit=limit):
            status = execution.status.name.lower() if execution.status else "closed"
            marked += self._mark(execution.id, f"workflow {status} outside the pathway")
        for workflow_id in self._unprojected(limit):
            try:
                await self.client.get_workflow_handle(workflow_id).describe()
            except RPCError as err:
                if err.status is RPCStatusCode.NOT_FOUND:
                    marked += self._mark(workflow_id, "the workflow was never started")
        if marked:
            log.warning("marked %d pathways as failed: they ended outside their own code", marked)
        return marked

    def _unprojected(self, limit: int) -> list[str]:
        """Rows the workflow has never projected into, older than a start could take."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(Flow.workflow_id)
                .where(
                    Flow.state_version == 0,
                    col(Flow.status).in_([FlowStatus.ACTIVE, FlowStatus.ESCALATED]),
                    Flow.created_at < utcnow() - NEVER_STARTED_AFTER,
                )
                .limit(limit)
            ).all()
        return list(rows)

    def _mark(self, workflow_id: str, reason: str) -> int:
        with Session(self.engine) as session:
            flow = session.exec(select(Flow).where(Flow.workflow_id == workflow_id)).first()
            if flow is None or flow.status not in (FlowStatus.ACTIVE, FlowStatus.ESCALATED):
                return 0
            now = utcnow()
            flow.status, flow.updated_at, flow.completed_at, flow.open_escalations, flow.next_deadline = (
                FlowStatus.FAILED,
                now,
                now,
                0,
                None,
            )
            session.add(flow)
            session.add(
                FlowEvent(
                    flow_id=flow.id, event_key="ended-outside", at=now, kind="failed", step=flow.step, detail=reason
                )
            )
            for escalation in session.exec(
                select(Escalation).where(Escalation.flow_id == flow.id, col(Escalation.resolved_at).is_(None))
            ).all():
                escalation.resolved_at, escalation.resolution = now, f"pathway ended: {reason}"
                session.add(escalation)
            session.commit()
            return 1
