"""Coordinators (and clinicians) follow pathways: `GET /flows`, `GET /flows/{id}`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from api.deps import Coordinator, FlowReader, KeyRingDep, SessionDep, SettingsDep
from api.flows_query import FlowFilter, flow_detail, list_flows
from api.schemas import CprSearch, FlowDetail, FlowPublic, Page
from careflow.crypto import cpr_lookup_hash
from store.models import AuditEntry, Flow

router = APIRouter(prefix="/flows", tags=["flows"])

Sort = Literal["deadline", "newest", "oldest", "updated"]


@router.get("", response_model=Page[FlowPublic])
def get_flows(
    user: FlowReader,
    session: SessionDep,
    status: str | None = None,
    step: str | None = None,
    pathway: str | None = None,
    receiving_sor: str | None = None,
    overdue: bool | None = None,
    escalated: bool | None = None,
    sort: Sort = "deadline",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[FlowPublic]:
    """List pathways (no patient data), filtered and paginated, soonest deadline first."""
    flt = FlowFilter(status=status, step=step, pathway=pathway, receiving_sor=receiving_sor, overdue=overdue, escalated=escalated)
    items, total = list_flows(session, flt, limit=limit, offset=offset, sort=sort)
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.post("/search", response_model=Page[FlowPublic])
def search_by_cpr(search: CprSearch, user: Coordinator, session: SessionDep, settings: SettingsDep, limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0)] = 0) -> Page[FlowPublic]:
    """Find a patient's pathways by CPR (POSTed, so it never lands in a URL or access log)."""
    flt = FlowFilter(cpr_hash=cpr_lookup_hash(search.cpr, settings.cpr_hash_key))
    items, total = list_flows(session, flt, limit=limit, offset=offset, sort="newest")
    session.add(AuditEntry(actor=user.subject, role=user.role.value, action="search-by-cpr", detail=f"{total} flows"))
    session.commit()
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{flow_id}", response_model=FlowDetail)
def get_flow(flow_id: str, user: FlowReader, session: SessionDep, key_ring: KeyRingDep) -> FlowDetail:
    """One pathway with its patient, timeline, deadlines, escalations and messages (audited)."""
    flow = session.get(Flow, flow_id)
    if flow is None:
        raise HTTPException(404, f"no flow {flow_id}")
    session.add(AuditEntry(actor=user.subject, role=user.role.value, action="read-flow", flow_id=flow_id))
    session.commit()
    return flow_detail(session, flow, key_ring)
