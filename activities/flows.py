"""Activities that keep the coordinators' read model current."""

from __future__ import annotations

import json

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models import ActivityErrors, RecordStateRequest
from store.models import Escalation, Flow, FlowEvent, utcnow


class FlowActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn
    def record_state(self, request: RecordStateRequest) -> None:
        """Project the pathway's state; idempotent (events and escalations by key, flow by version)."""
        state = request.state
        with Session(self.engine) as session:
            flow = session.get(Flow, state.flow_id, with_for_update=True)
            if flow is None:
                raise ApplicationError(
                    f"flow {state.flow_id} has no read-model row",
                    type=ActivityErrors.FLOW_NOT_FOUND,
                    non_retryable=True,
                )
            if state.version > flow.state_version:
                flow.state_version = state.version
                flow.status = state.status.value
                flow.step = state.step
                flow.next_deadline = state.next_deadline
                flow.open_escalations = len(state.open_escalations)
                flow.steps_json = json.dumps([step.model_dump(mode="json") for step in state.steps])
                if state.party_changes:  # the API confines inbound messages to the parties as they are now
                    parties = json.loads(flow.parties_json or "{}")
                    flow.parties_json = json.dumps({**parties, **state.party_changes})
                flow.updated_at = utcnow()
                if state.status.value in ("completed", "cancelled") and flow.completed_at is None:
                    flow.completed_at = utcnow()
                session.add(flow)
            known = (
                set(session.exec(select(FlowEvent.event_key).where(FlowEvent.flow_id == state.flow_id)).all())
                if request.events
                else set()
            )
            for event in request.events:
                if event.key not in known:
                    session.add(
                        FlowEvent(
                            flow_id=state.flow_id,
                            event_key=event.key,
                            at=event.at,
                            kind=event.kind,
                            step=event.step,
                            detail=event.detail,
                            message_header_id=event.message_header_id,
                            actor=event.actor,
                        )
                    )
            stored = {
                e.escalation_key: e
                for e in session.exec(select(Escalation).where(Escalation.flow_id == state.flow_id)).all()
            }
            for escalation in state.escalations:
                row = stored.get(escalation.key) or Escalation(
                    flow_id=state.flow_id,
                    escalation_key=escalation.key,
                    step=escalation.step,
                    reason=escalation.reason,
                    opened_at=escalation.opened_at,
                )
                if escalation.resolved_at and row.resolved_at is None:
                    row.resolved_at, row.resolution = escalation.resolved_at, escalation.resolution
                session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                raise  # a concurrent attempt wrote the same keys: retry sees them as known
