"""Coordinator actions on an escalation, each a validated Temporal workflow update.

The workflow decides: its validator refuses what it cannot do (the refusal is shown, nothing
changes) and records what it does in the pathway's timeline. The console adds the audit entry and
who resolved the escalation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from api.console.web import COPENHAGEN, ConsoleRoute, ConsoleUser, CsrfCheckedCoordinator, flash_redirect, safe_next
from api.deps import SessionDep, TemporalDep
from api.scoping import in_scope
from store.models import AuditEntry, Escalation, Flow, OutboundMessage
from workflows.models import ActionResult, CancelRequest, CompleteStepRequest, ExtendDeadlineRequest, ResendRequest
from workflows.steps import PathwayWorkflow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

Action = Literal["resend", "extend-deadline", "complete-step", "cancel"]
UPDATE_TIMEOUT = timedelta(seconds=20)

Reason = Annotated[str, Form(max_length=2000)]


def _refusal(err: WorkflowUpdateFailedError) -> str:
    """The validator's own words (ValueError in the workflow becomes the failure's message)."""
    cause = err.cause
    while getattr(cause, "cause", None) is not None and not getattr(cause, "message", ""):
        cause = cause.cause
    return getattr(cause, "message", "") or str(cause or err)


def _parse_deadline(value: str) -> datetime:
    """A datetime-local value is Danish wall-clock time; an explicit offset is kept."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("the new deadline is not a date and time (YYYY-MM-DD HH:MM)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=COPENHAGEN)


async def _update(
    client: Client,
    flow: Flow,
    action: Action,
    escalation: Escalation,
    user: ConsoleUser,
    reason: str,
    new_deadline: datetime | None,
) -> ActionResult:
    handle = client.get_workflow_handle(flow.workflow_id)
    if action == "resend":
        return await handle.execute_update(
            PathwayWorkflow.resend, ResendRequest(actor=user.subject, reason=reason), rpc_timeout=UPDATE_TIMEOUT
        )
    if action == "extend-deadline":
        assert new_deadline is not None
        request = ExtendDeadlineRequest(
            actor=user.subject, reason=reason, step=escalation.step, new_deadline=new_deadline
        )
        return await handle.execute_update(PathwayWorkflow.extend_deadline, request, rpc_timeout=UPDATE_TIMEOUT)
    if action == "complete-step":
        return await handle.execute_update(
            PathwayWorkflow.complete_step,
            CompleteStepRequest(actor=user.subject, reason=reason, step=escalation.step),
            rpc_timeout=UPDATE_TIMEOUT,
        )
    return await handle.execute_update(
        PathwayWorkflow.cancel, CancelRequest(actor=user.subject, reason=reason), rpc_timeout=UPDATE_TIMEOUT
    )


def _mark_resolved_by(session: Session, flow: Flow, action: Action, escalation: Escalation, actor: str) -> None:
    """Who resolved it. The workflow's projection sets resolved_at and resolution on its own time;
    this marks the escalations the action resolves, as the workflow does: the step's for a deadline
    or a step done outside careflow, the resent message's step for a resend, all for a cancellation."""
    query = select(Escalation).where(Escalation.flow_id == flow.id, col(Escalation.resolved_by).is_(None))
    if action in ("extend-deadline", "complete-step"):
        query = query.where(
            Escalation.step == escalation.step,
            (col(Escalation.resolved_at).is_(None)) | (Escalation.id == escalation.id),
        )
    elif action == "resend":
        resent_step = session.exec(
            select(OutboundMessage.step)
            .where(OutboundMessage.flow_id == flow.id)
            .order_by(col(OutboundMessage.id).desc())
            .limit(1)
        ).first()
        query = query.where(Escalation.step == resent_step, col(Escalation.resolved_at).is_(None))
    else:
        query = query.where((col(Escalation.resolved_at).is_(None)) | (Escalation.id == escalation.id))
    for row in session.exec(query).all():
        row.resolved_by = actor
        session.add(row)


def _load(session: Session, escalation_id: int) -> tuple[Escalation, Flow]:
    escalation = session.get(Escalation, escalation_id)
    if escalation is None:
        raise HTTPException(404, f"There is no escalation {escalation_id}.")
    flow = session.get(Flow, escalation.flow_id)
    if flow is None:
        raise HTTPException(404, f"There is no flow {escalation.flow_id}.")
    return escalation, flow


def _audit(session: Session, entry: AuditEntry, also: Callable[[], None] | None = None) -> None:
    """Write the audit entry (and whatever goes with it) in one transaction, in a worker thread."""
    session.add(entry)
    if also is not None:
        also()
    session.commit()


@router.post("/escalations/{escalation_id}/{action}")
async def act_on_escalation(
    request: Request,
    escalation_id: Annotated[int, Path(ge=1, le=2**62)],  # a database id: larger is no id, not a 500
    action: Action,
    user: CsrfCheckedCoordinator,
    session: SessionDep,
    temporal: TemporalDep,
    reason: Reason = "",
    new_deadline: Annotated[str, Form(max_length=40)] = "",
    next: Annotated[str, Form(max_length=500)] = "",  # noqa: A002 - the form field's name
) -> Response:
    """Resend, extend the deadline, record the step done outside careflow, or cancel the pathway."""
    back = safe_next(next)
    escalation, flow = await run_in_threadpool(_load, session, escalation_id)
    if not in_scope(flow, user.scope):
        raise HTTPException(403, "This pathway is outside your organisations. Nothing was changed.")
    if escalation.resolved_at is not None:
        # A stale page: the pathway has moved on since it was loaded.
        return flash_redirect(
            request,
            back,
            "error",
            f"This escalation was already resolved ({escalation.resolution or 'no detail'}). Nothing was changed.",
        )
    deadline = None
    if action == "extend-deadline":
        try:
            deadline = _parse_deadline(new_deadline)
        except ValueError as err:
            return flash_redirect(request, back, "error", f"Not done: {err}.")
    audit_detail = f"escalation {escalation.id} ({escalation.step}): {reason}" + (
        f"; new deadline {deadline.isoformat()}" if deadline else ""
    )
    try:
        result = await _update(temporal, flow, action, escalation, user, reason, deadline)
    except WorkflowUpdateFailedError as err:
        refusal = _refusal(err)
        await run_in_threadpool(
            _audit,
            session,
            AuditEntry(
                actor=user.subject,
                role=user.role,
                action=f"console-{action}-refused",
                flow_id=flow.id,
                detail=f"{audit_detail} — refused: {refusal}",
            ),
        )
        return flash_redirect(
            request, back, "error", f"The pathway refused this action: {refusal}. Nothing was changed."
        )
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        log.warning("console %s on flow %s: no answer from Temporal in time", action, flow.id)
        return flash_redirect(
            request,
            back,
            "error",
            "The workflow service did not answer in time; the action may still take effect. Reload in a moment and "
            "check the timeline.",
        )
    except RPCError as err:
        log.warning("console %s on flow %s failed: %s", action, flow.id, err.status.name if err.status else "rpc error")
        return flash_redirect(
            request,
            back,
            "error",
            f"The workflow service could not take the action ({err.message}). Nothing was changed.",
        )
    await run_in_threadpool(
        _audit,
        session,
        AuditEntry(
            actor=user.subject, role=user.role, action=f"console-{action}", flow_id=flow.id, detail=audit_detail
        ),
        lambda: _mark_resolved_by(session, flow, action, escalation, user.subject),
    )
    log.info("console %s on flow %s by %s", action, flow.id, user.subject)
    return flash_redirect(request, back, "ok", f"Done: {result.detail}.")
