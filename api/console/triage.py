"""The console's triage queue: held messages, each with attach, reprocess and reject; and reporting
an event a flow waits for (a clinician's or coordinator's fact outside messaging)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.console.web import (
    ConsoleRoute,
    ConsoleUser,
    CsrfCheckedCoordinator,
    CurrentCoordinator,
    flash_redirect,
    render,
)
from api.deps import SessionDep, TemporalDep
from api.scoping import in_scope
from exchange.enveloping import refused_envelopes
from exchange.triage import Triage, TriageRefused, held
from store.models import AuditEntry, Flow
from workflows.models import EventReport
from workflows.steps import PathwayWorkflow

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

Reason = Annotated[str, Form(max_length=2000)]


def _whole_region(user: ConsoleUser) -> None:
    """Held messages belong to no flow yet, so to no organisation's scope: triage is for coordinators
    of every organisation (`*`) and admins."""
    if user.scope is not None:
        raise HTTPException(
            403, "The triage queue is for coordinators of all organisations: held messages belong to no flow yet."
        )


@router.get("/triage", response_class=HTMLResponse)
def triage_page(request: Request, user: CurrentCoordinator, session: SessionDep) -> Response:
    """Messages that match no flow (or came after their flow ended), oldest first."""
    _whole_region(user)
    return render(
        request, "triage.html", {"user": user, "items": held(session), "envelopes": refused_envelopes(session, 50)}
    )


@router.post("/triage/{message_id}/{action}")
async def act_on_held(
    request: Request,
    message_id: Annotated[int, Path(ge=1, le=2**62)],
    action: Literal["attach", "reprocess", "reject"],
    user: CsrfCheckedCoordinator,
    session: SessionDep,
    reason: Reason = "",
    flow_id: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Attach a held message to a flow, have careflow look again, or reject it (fatal-error acknowledgement)."""
    _whole_region(user)
    triage = Triage(request.app.state.receiver, request.app.state.key_ring)
    if action in ("attach", "reject") and not reason.strip():
        return flash_redirect(request, "/console/triage", "error", "Not done: a reason is required.")
    try:
        if action == "attach":
            row = await run_in_threadpool(
                triage.attach, session, message_id, flow_id.strip(), user.subject, user.role, reason
            )
        elif action == "reprocess":
            row = await run_in_threadpool(triage.reprocess, session, message_id, user.subject, user.role)
        else:
            row = await run_in_threadpool(triage.reject, session, message_id, user.subject, user.role, reason)
    except TriageRefused as err:
        return flash_redirect(request, "/console/triage", "error", f"Not done: {err.detail}.")
    request.app.state.after_store(row.id)
    return flash_redirect(
        request, "/console/triage", "ok", f"Done: message {row.message_header_id} {row.status_reason}."
    )


@router.post("/flows/{flow_id}/events/{event}")
async def report_event(
    request: Request,
    flow_id: str,
    event: str,
    user: CsrfCheckedCoordinator,
    session: SessionDep,
    temporal: TemporalDep,
    reason: Reason = "",
) -> Response:
    """Report an event the flow's pathway awaits (e.g. the patient discharged), as the coordinator."""
    back = f"/console/flows/{flow_id}"
    flow = await run_in_threadpool(session.get, Flow, flow_id)
    if flow is None:
        return flash_redirect(request, "/console/flows", "error", f"There is no flow {flow_id}.")
    if not in_scope(flow, user.scope):
        raise HTTPException(403, "This pathway is outside your organisations. Nothing was changed.")
    report = EventReport(event=event, actor=user.subject, role="coordinator", reason=reason)
    try:
        result = await temporal.get_workflow_handle(flow.workflow_id).execute_update(
            PathwayWorkflow.report_event, report, rpc_timeout=timedelta(seconds=20)
        )
    except WorkflowUpdateFailedError as err:
        return flash_redirect(
            request,
            back,
            "error",
            f"The pathway refused it: {getattr(err.cause, 'message', '') or err.cause}. Nothing was changed.",
        )
    except RPCError as err:
        return flash_redirect(
            request, back, "error", f"The workflow service could not take it ({err.message}). Nothing was changed."
        )

    def audit() -> None:
        session.add(
            AuditEntry(
                actor=user.subject,
                role=user.role,
                action=f"console-report-event:{event}",
                flow_id=flow_id,
                detail=reason,
            )
        )
        session.commit()

    await run_in_threadpool(audit)
    return flash_redirect(request, back, "ok", f"Done: {result.detail}.")
