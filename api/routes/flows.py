"""Coordinators (and clinicians) follow pathways: `GET /flows`, `GET /flows/{id}`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    Coordinator,
    CurrentUser,
    FlowReader,
    KeyRingDep,
    PathwaysDep,
    Scope,
    SessionDep,
    SettingsDep,
    TemporalDep,
)
from api.flows_query import FlowFilter, flow_detail, list_flows
from api.schemas import ApplyRulesIn, CprSearch, EventIn, FlowDetail, FlowPublic, Page
from api.scoping import BREAK_GLASS_HEADER, in_scope, visible_organisations
from careflow.auth import Role
from careflow.crypto import cpr_lookup_hash
from careflow.deadlines import rule_book
from store.audit import search_detail
from store.models import AuditEntry, Flow
from workflows.models import ActionResult, ApplyRulesRequest, EventReport
from workflows.registry import events
from workflows.steps import PathwayWorkflow

router = APIRouter(prefix="/flows", tags=["flows"])

Sort = Literal["deadline", "newest", "oldest", "updated"]


@router.get("", response_model=Page[FlowPublic])
def get_flows(
    user: FlowReader,
    scope: Scope,
    session: SessionDep,
    status: str | None = None,
    step: str | None = None,
    pathway: str | None = None,
    receiving_sor: str | None = None,
    overdue: bool | None = None,
    escalated: bool | None = None,
    sort: Sort = "deadline",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Page[FlowPublic]:
    """List the pathways in the caller's scope (no patient data), filtered and paginated, soonest deadline first."""
    flt = FlowFilter(
        status=status,
        step=step,
        pathway=pathway,
        receiving_sor=receiving_sor,
        overdue=overdue,
        escalated=escalated,
        organisations=scope,
    )
    items, total = list_flows(session, flt, limit=limit, offset=offset, sort=sort)
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.post("/search", response_model=Page[FlowPublic])
def search_by_cpr(
    search: CprSearch,
    user: Coordinator,
    scope: Scope,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Page[FlowPublic]:
    """Find a patient's pathways by CPR (POSTed, so it never lands in a URL or access log)."""
    cpr_hash = cpr_lookup_hash(search.cpr, settings.cpr_hash_key)
    items, total = list_flows(
        session, FlowFilter(cpr_hash=cpr_hash, organisations=scope), limit=limit, offset=offset, sort="newest"
    )
    session.add(
        AuditEntry(
            actor=user.subject,
            role=user.role.value,
            action="search-by-cpr",
            detail=search_detail(cpr_hash, total, [f.id for f in items]),
        )
    )
    session.commit()
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{flow_id}", response_model=FlowDetail)
def get_flow(
    flow_id: str,
    user: FlowReader,
    scope: Scope,
    session: SessionDep,
    key_ring: KeyRingDep,
    break_glass_reason: Annotated[
        str,
        Header(
            alias=BREAK_GLASS_HEADER,
            max_length=500,
            description="to read a pathway outside your organisations: why (audited, flagged)",
        ),
    ] = "",
) -> FlowDetail:
    """One pathway with its patient, timeline, deadlines, escalations and messages (audited)."""
    flow = session.get(Flow, flow_id)
    if flow is None:
        raise HTTPException(404, f"no flow {flow_id}")
    if in_scope(flow, scope):
        session.add(AuditEntry(actor=user.subject, role=user.role.value, action="read-flow", flow_id=flow_id))
    elif break_glass_reason.strip():
        session.add(
            AuditEntry(
                actor=user.subject,
                role=user.role.value,
                action="break-glass-read-flow",
                flow_id=flow_id,
                detail=break_glass_reason.strip(),
                break_glass=True,
            )
        )
    else:
        raise HTTPException(
            403,
            "this pathway is outside your organisations; to read it anyway, give the reason in the "
            f"{BREAK_GLASS_HEADER} header (a break-glass read, flagged in the audit log)",
        )
    session.commit()
    return flow_detail(session, flow, key_ring)


@router.post(
    "/{flow_id}/events/{event}",
    response_model=ActionResult,
    responses={
        403: {"description": "role may not report it"},
        404: {"description": "no such flow or event"},
        409: {"description": "refused by the pathway"},
    },
)
async def report_event(
    flow_id: str,
    event: str,
    body: EventIn,
    user: CurrentUser,
    session: SessionDep,
    pathways: PathwaysDep,
    temporal: TemporalDep,
) -> ActionResult:
    """Report an event outside messaging (a discharge) to a running flow, if its pathway awaits it."""
    flow = await run_in_threadpool(session.get, Flow, flow_id)  # database work off the event loop
    pathway = pathways.get(flow.pathway) if flow else None
    if flow is None or pathway is None:
        raise HTTPException(404, f"no flow {flow_id}")
    if user.role is not Role.PARTNER and not in_scope(flow, visible_organisations(user.role, user.organisations)):
        raise HTTPException(403, "this pathway is outside your organisations")
    steps = [s for s in events(pathway) if s.event == event]
    if not steps:
        raise HTTPException(
            404,
            f"the {pathway.name} pathway awaits no event {event!r}; it awaits: "
            f"{', '.join(sorted({s.event for s in events(pathway)})) or 'none'}",
        )
    if user.role is not Role.ADMIN and not any(user.role.value in s.roles for s in steps):
        raise HTTPException(
            403,
            f"role {user.role.value} may not report {event!r}; needs "
            f"{' or '.join(sorted({r for s in steps for r in s.roles}))}",
        )
    session.add(AuditEntry(actor=user.subject, role=user.role.value, action=f"report-event:{event}", flow_id=flow_id))
    await run_in_threadpool(session.commit)
    report = EventReport(event=event, actor=user.subject, role=user.role.value, reason=body.reason, data=body.data)
    return await _update(temporal, flow, PathwayWorkflow.report_event, report)


@router.post(
    "/{flow_id}/rules",
    response_model=ActionResult,
    responses={
        404: {"description": "no such flow or rule version"},
        409: {"description": "refused by the pathway (ended, keeps no legal deadlines, already on that version)"},
    },
)
async def apply_rules(
    flow_id: str,
    body: ApplyRulesIn,
    user: Coordinator,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> ActionResult:
    """Apply another version of the legal deadline rules to a running pathway: its waiting steps'
    legal deadlines are computed again from the new rules (a coordinator's decision, audited)."""
    flow = await run_in_threadpool(session.get, Flow, flow_id)  # database work off the event loop
    if flow is None:
        raise HTTPException(404, f"no flow {flow_id}")
    if not in_scope(flow, visible_organisations(user.role, user.organisations)):
        raise HTTPException(403, "this pathway is outside your organisations")
    try:
        rules = rule_book(settings.deadline_rules_path).get(body.version)
    except KeyError:
        raise HTTPException(404, f"no legal deadline rules version {body.version!r}") from None
    session.add(
        AuditEntry(
            actor=user.subject,
            role=user.role.value,
            action=f"apply-rules:{rules.version}",
            flow_id=flow_id,
            detail=body.reason,
        )
    )
    await run_in_threadpool(session.commit)
    request = ApplyRulesRequest(actor=user.subject, reason=body.reason, rules=rules.model_dump(mode="json"))
    return await _update(temporal, flow, PathwayWorkflow.apply_rules, request)


async def _update(temporal: Client, flow: Flow, update: Any, argument: object) -> ActionResult:
    """Run one of the pathway's updates; its refusal is 409 with the pathway's reason, an ended flow
    409, Temporal unreachable 503."""
    try:
        return await temporal.get_workflow_handle(flow.workflow_id).execute_update(
            update, argument, rpc_timeout=timedelta(seconds=20)
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise HTTPException(409, f"refused by the pathway: {getattr(cause, 'message', '') or cause}") from None
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise HTTPException(409, "the flow has ended") from None
        raise HTTPException(503, "the workflow service is unreachable; try again") from None
