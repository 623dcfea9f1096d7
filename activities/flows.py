"""Activities that keep the coordinators' read model current."""

from __future__ import annotations

import json

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models import ActivityErrors, RecordStateRequest
from store.models import Escalation, Flow, FlowEvent, utcnow

FLOWS, EVENTS, ESCALATIONS = Flow.__table__, FlowEvent.__table__, Escalation.__table__
ENDED = ("completed", "cancelled")

# The projection's statements, built once with bound parameters (names apart from the columns'):
# a statement built per call is built, and keyed for SQLAlchemy's cache, four times per pathway.
_PROJECTED = {
    column: bindparam(f"p_{name}", type_=FLOWS.c[column].type)
    for column, name in (
        ("state_version", "version"),
        ("status", "status"),
        ("step", "step"),
        ("next_deadline", "next_deadline"),
        ("open_escalations", "open_escalations"),
        ("steps_json", "steps_json"),
        ("updated_at", "now"),
    )
}
_THIS_FLOW_BEHIND = (FLOWS.c.id == bindparam("p_flow_id"), FLOWS.c.state_version < bindparam("p_version"))
_ADVANCE = update(FLOWS).where(*_THIS_FLOW_BEHIND).values(_PROJECTED)
_ADVANCE_ENDED = (
    update(FLOWS)
    .where(*_THIS_FLOW_BEHIND)
    .values({**_PROJECTED, "completed_at": func.coalesce(FLOWS.c.completed_at, _PROJECTED["updated_at"])})
)
_EXISTS = select(func.count()).select_from(FLOWS).where(FLOWS.c.id == bindparam("p_flow_id"))


class FlowActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # INSERT ... ON CONFLICT DO NOTHING (both databases careflow runs on): a retried projection
        # writes its keyed rows once, without reading them first.
        dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(engine.dialect.name)
        self._insert_or_skip = (
            {table: dialect.insert(table).on_conflict_do_nothing() for table in (EVENTS, ESCALATIONS)}
            if dialect is not None
            else None
        )

    @activity.defn
    def record_state(self, request: RecordStateRequest) -> None:
        """Project the pathway's state; idempotent (events and escalations by key, flow by version).
        Plain SQL statements in one transaction, no ORM: this runs several times per pathway (issue 12)."""
        state = request.state
        now = utcnow()
        with self.engine.begin() as connection:
            updated = connection.execute(
                _ADVANCE_ENDED if state.status.value in ENDED else _ADVANCE,
                {
                    "p_flow_id": state.flow_id,
                    "p_version": state.version,
                    "p_status": state.status.value,
                    "p_step": state.step,
                    "p_next_deadline": state.next_deadline,
                    "p_open_escalations": len(state.open_escalations),
                    "p_steps_json": json.dumps([step.model_dump(mode="json") for step in state.steps]),
                    "p_now": now,
                },
            ).rowcount
            exists = updated or connection.execute(_EXISTS, {"p_flow_id": state.flow_id}).scalar()
            if not exists:
                raise ApplicationError(
                    f"flow {state.flow_id} has no read-model row",
                    type=ActivityErrors.FLOW_NOT_FOUND,
                    non_retryable=True,
                )
            if updated and state.party_changes:  # the API confines inbound messages to the parties as they are now
                parties = json.loads(
                    connection.execute(select(FLOWS.c.parties_json).where(FLOWS.c.id == state.flow_id)).scalar() or "{}"
                )
                connection.execute(
                    update(FLOWS)
                    .where(FLOWS.c.id == state.flow_id)
                    .values(parties_json=json.dumps({**parties, **state.party_changes}))
                )
            if request.events:
                self._insert_new(
                    connection,
                    EVENTS,
                    "event_key",
                    [
                        {
                            "flow_id": state.flow_id,
                            "event_key": event.key,
                            "at": event.at,
                            "kind": event.kind,
                            "step": event.step,
                            "detail": event.detail,
                            "message_header_id": event.message_header_id,
                            "actor": event.actor,
                        }
                        for event in request.events
                    ],
                )
            if state.escalations:
                self._insert_new(
                    connection,
                    ESCALATIONS,
                    "escalation_key",
                    [
                        {
                            "flow_id": state.flow_id,
                            "escalation_key": escalation.key,
                            "step": escalation.step,
                            "reason": escalation.reason,
                            "opened_at": escalation.opened_at,
                        }
                        for escalation in state.escalations
                    ],
                )
                for escalation in state.escalations:
                    if escalation.resolved_at:
                        connection.execute(
                            update(ESCALATIONS)
                            .where(
                                ESCALATIONS.c.flow_id == state.flow_id,
                                ESCALATIONS.c.escalation_key == escalation.key,
                                ESCALATIONS.c.resolved_at.is_(None),
                            )
                            .values(resolved_at=escalation.resolved_at, resolution=escalation.resolution)
                        )

    def _insert_new(self, connection, table, key: str, rows: list[dict]) -> None:  # noqa: ANN001
        """Insert the rows whose key this flow does not have yet."""
        if self._insert_or_skip is not None:
            connection.execute(self._insert_or_skip[table], rows)
            return
        keys = [row[key] for row in rows]
        known = set(
            connection.execute(
                select(table.c[key]).where(table.c.flow_id == rows[0]["flow_id"], table.c[key].in_(keys))
            ).scalars()
        )
        if new := [row for row in rows if row[key] not in known]:
            connection.execute(insert(table), new)
