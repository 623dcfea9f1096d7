"""Console pages: overview, flow list (with CPR search), flow detail, message view, escalation inbox."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from api.console.web import (
    COPENHAGEN,
    ConsoleRoute,
    ConsoleUser,
    CsrfCheckedCoordinator,
    CurrentCoordinator,
    aware,
    render,
    templates,
)
from api.deps import DirectoryDep, KeyRingDep, SessionDep, SettingsDep
from api.flows_query import SORTS, FlowFilter, flow_detail, list_flows
from api.scoping import in_scope, restrict
from careflow.crypto import KeyRing, cpr_lookup_hash
from messaging import Directory, from_xml
from messaging.formats import looks_like_xml
from store.audit import search_detail
from store.models import AuditEntry, Escalation, Flow, FlowStatus, InboundMessage, OutboundMessage, sealed_as, utcnow
from workflows.declare import AwaitEvent, OnEvent, SendOnEvent
from workflows.registry import Pathways, messages_sent

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50
OPEN_STATUSES = (FlowStatus.ACTIVE, FlowStatus.ESCALATED)
STATUSES = (FlowStatus.ACTIVE, FlowStatus.ESCALATED, FlowStatus.COMPLETED, FlowStatus.CANCELLED, FlowStatus.FAILED)


def _awaiting_ack_flow_ids():  # noqa: ANN202
    """Flows with an outbound message sent but not (yet) acknowledged."""
    return select(OutboundMessage.flow_id).where(
        col(OutboundMessage.ack_code).is_(None), col(OutboundMessage.sent_at).is_not(None)
    )


@dataclass
class ConsoleFilter(FlowFilter):
    """The API's flow filter, plus what the console's overview links into."""

    awaiting_ack: bool | None = None

    def apply(self, query):  # noqa: ANN001, ANN201
        query = super().apply(query)
        if self.overdue or self.awaiting_ack:
            # Overdue or unanswered only matters while the pathway is still running.
            query = query.where(col(Flow.status).in_(OPEN_STATUSES))
        if self.awaiting_ack:
            query = query.where(col(Flow.id).in_(_awaiting_ack_flow_ids()))
        return query


def _flag(value: str | None) -> bool | None:
    return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get((value or "").lower())


def _step_names(pathways: Pathways) -> list[str]:
    names: list[str] = []
    for definition in pathways:
        names += [s.name for s in definition.all_steps() if s.name not in names]
    return [*names, "completed"]


def _filter_choices(directory: DirectoryDep, pathways: Pathways) -> dict:
    sent = {kind for p in pathways for kinds in messages_sent(p).values() for kind in kinds}
    return {
        "pathways": [(name, f"{d.title} · {d.title_da}") for name, d in pathways.items()],
        "steps": _step_names(pathways),
        "statuses": STATUSES,
        "organisations": [(e.sor, e.name) for e in directory.entries if e.accepted_codes & sent],
        "sorts": list(SORTS),
    }


def _names(directory: DirectoryDep) -> dict[str, str]:
    return {e.sor: e.name for e in directory.entries}


# ----- overview -----------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request, user: CurrentCoordinator, session: SessionDep) -> Response:
    """Counts by pathway and step, overdue flows, open escalations, unacknowledged messages."""
    scope = user.scope
    by_step = session.exec(
        restrict(
            select(Flow.pathway, Flow.step, func.count()).where(col(Flow.status).in_(OPEN_STATUSES)), scope
        ).group_by(Flow.pathway, Flow.step)
    ).all()
    order = {name: i for i, name in enumerate(_step_names(request.app.state.pathways))}
    by_status = session.exec(
        restrict(select(Flow.pathway, Flow.status, func.count()), scope).group_by(Flow.pathway, Flow.status)
    ).all()
    overdue = session.exec(
        ConsoleFilter(overdue=True, organisations=scope).apply(select(func.count()).select_from(Flow))
    ).one()
    open_escalations = session.exec(
        restrict(
            select(func.count())
            .select_from(Escalation)
            .join(Flow, col(Flow.id) == col(Escalation.flow_id))
            .where(col(Escalation.resolved_at).is_(None)),
            scope,
        )
    ).one()
    awaiting_ack = session.exec(
        restrict(
            select(func.count(func.distinct(OutboundMessage.message_header_id)))
            .join(Flow, col(Flow.id) == col(OutboundMessage.flow_id))
            .where(
                col(OutboundMessage.ack_code).is_(None),
                col(OutboundMessage.sent_at).is_not(None),
                col(Flow.status).in_(OPEN_STATUSES),
            ),
            scope,
        )
    ).one()
    return render(
        request,
        "overview.html",
        {
            "user": user,
            "by_step": sorted(by_step, key=lambda r: (r[0], order.get(r[1], 99))),
            "by_status": sorted(by_status),
            "overdue": overdue,
            "open_escalations": open_escalations,
            "awaiting_ack": awaiting_ack,
            "pathway_titles": {name: f"{d.title} · {d.title_da}" for name, d in request.app.state.pathways.items()},
        },
    )


# ----- flow list ----------------------------------------------------------------------------


@dataclass
class ListQuery:
    """The flow list's query string: filters, sort and page (shared by the page and its table)."""

    pathway: str | None = None
    step: str | None = None
    status: str | None = None
    overdue: str | None = None
    receiving_sor: str | None = None
    escalated: str | None = None
    awaiting_ack: str | None = None
    sort: str = "deadline"
    page: Annotated[int, Query(ge=1, le=100_000)] = 1


ListQueryDep = Annotated[ListQuery, Depends()]


def _list_context(session: Session, query: ListQuery, scope: frozenset[str] | None) -> dict:
    flt = ConsoleFilter(
        organisations=scope,
        pathway=query.pathway or None,
        step=query.step or None,
        status=query.status or None,
        overdue=_flag(query.overdue),
        receiving_sor=query.receiving_sor or None,
        escalated=_flag(query.escalated),
        awaiting_ack=_flag(query.awaiting_ack),
    )
    sort = query.sort if query.sort in SORTS else "deadline"
    page = query.page
    items, total = list_flows(session, flt, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, sort=sort)
    params = {
        "pathway": query.pathway,
        "step": query.step,
        "status": query.status,
        "overdue": query.overdue,
        "receiving_sor": query.receiving_sor,
        "escalated": query.escalated,
        "awaiting_ack": query.awaiting_ack,
        "sort": sort,
    }
    return {
        "items": items,
        "total": total,
        "page": page,
        "pages": max(1, math.ceil(total / PAGE_SIZE)),
        "params": params,
        "now": utcnow(),
    }


@router.get("/flows", response_class=HTMLResponse)
def flows(
    request: Request, user: CurrentCoordinator, session: SessionDep, directory: DirectoryDep, query: ListQueryDep
) -> Response:
    """Pathways (no patient data), filtered, soonest deadline first, paginated; refreshes itself."""
    context = _list_context(session, query, user.scope)
    return render(
        request,
        "flows.html",
        {
            "user": user,
            "choices": _filter_choices(directory, request.app.state.pathways),
            "organisations": _names(directory),
            "search": None,
            **context,
        },
    )


@router.get("/flows/table", response_class=HTMLResponse)
def flows_table(
    request: Request, user: CurrentCoordinator, session: SessionDep, directory: DirectoryDep, query: ListQueryDep
) -> Response:
    """The list's table alone, fetched by the page every few seconds."""
    context = _list_context(session, query, user.scope)
    return templates.TemplateResponse(
        request, "_flows_table.html", {"user": user, "organisations": _names(directory), "search": None, **context}
    )


@router.post("/flows/search", response_class=HTMLResponse)
def search_by_cpr(
    request: Request,
    user: CsrfCheckedCoordinator,
    session: SessionDep,
    settings: SettingsDep,
    directory: DirectoryDep,
    cpr: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """A patient's pathways by CPR: POSTed and looked up by keyed hash, so the number stays out of URLs and logs."""
    normalised = cpr.replace("-", "").replace(" ", "").strip()
    if not (len(normalised) == 10 and normalised.isdigit()):
        context = _list_context(session, ListQuery(), user.scope)
        return render(
            request,
            "flows.html",
            {
                "user": user,
                "choices": _filter_choices(directory, request.app.state.pathways),
                "organisations": _names(directory),
                "search": {"error": "A CPR number has 10 digits (DDMMYY-XXXX)."},
                **context,
            },
            status_code=422,
        )
    cpr_hash = cpr_lookup_hash(normalised, settings.cpr_hash_key)
    items, total = list_flows(
        session, FlowFilter(cpr_hash=cpr_hash, organisations=user.scope), limit=200, offset=0, sort="newest"
    )
    session.add(
        AuditEntry(
            actor=user.subject,
            role=user.role,
            action="console-search-by-cpr",
            detail=search_detail(cpr_hash, total, [f.id for f in items]),
        )
    )
    session.commit()
    context = {"items": items, "total": total, "page": 1, "pages": 1, "params": {}, "now": utcnow()}
    return render(
        request,
        "flows.html",
        {
            "user": user,
            "choices": _filter_choices(directory, request.app.state.pathways),
            "organisations": _names(directory),
            "search": {"total": total},
            **context,
        },
    )


# ----- flow detail --------------------------------------------------------------------------


def _steps(flow: Flow, pathways: Pathways) -> list[dict]:
    steps = json.loads(flow.steps_json or "[]")
    if not steps and flow.pathway in pathways:
        steps = [{"name": s.name, "status": "pending", "deadline": None} for s in pathways[flow.pathway].all_steps()]
    beside = {s.name for s in pathways[flow.pathway].alongside} if flow.pathway in pathways else set()
    for step in steps:
        step["deadline"] = datetime.fromisoformat(step["deadline"]) if step.get("deadline") else None
        step["current"] = step["name"] == flow.step and flow.status in OPEN_STATUSES
        step["alongside"] = step["name"] in beside  # drawn beside the sequence: may happen any number of times
    return steps


@router.get("/flows/{flow_id}", response_class=HTMLResponse)
def flow_page(
    request: Request,
    flow_id: str,
    user: CurrentCoordinator,
    session: SessionDep,
    key_ring: KeyRingDep,
    directory: DirectoryDep,
) -> Response:
    """One pathway: its steps, messages and acknowledgements, deadlines and escalations (audited)."""
    flow = session.get(Flow, flow_id)
    if flow is None:
        raise HTTPException(404, f"There is no flow {flow_id}.")
    if not in_scope(flow, user.scope):
        return render(request, "break_glass.html", {"user": user, "flow_id": flow_id}, status_code=403)
    session.add(AuditEntry(actor=user.subject, role=user.role, action="console-read-flow", flow_id=flow_id))
    session.commit()
    return _flow_page(request, flow, user, session, key_ring, directory)


@router.post("/flows/{flow_id}/break-glass", response_class=HTMLResponse)
def break_glass(
    request: Request,
    flow_id: str,
    user: CsrfCheckedCoordinator,
    session: SessionDep,
    key_ring: KeyRingDep,
    directory: DirectoryDep,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Read a pathway outside one's organisations, giving the reason: flagged in the audit log."""
    flow = session.get(Flow, flow_id)
    if flow is None:
        raise HTTPException(404, f"There is no flow {flow_id}.")
    if not reason.strip():
        return render(
            request,
            "break_glass.html",
            {"user": user, "flow_id": flow_id, "error": "Say why you need to read this pathway."},
            status_code=422,
        )
    session.add(
        AuditEntry(
            actor=user.subject,
            role=user.role,
            action="console-break-glass-read-flow",
            flow_id=flow_id,
            detail=reason.strip(),
            break_glass=True,
        )
    )
    session.commit()
    return _flow_page(request, flow, user, session, key_ring, directory)


def _flow_page(
    request: Request, flow: Flow, user: ConsoleUser, session: Session, key_ring: KeyRing, directory: Directory
) -> Response:
    detail = flow_detail(session, flow, key_ring)
    names = _names(directory)
    return render(
        request,
        "flow.html",
        {
            "user": user,
            "flow": detail,
            "steps": _steps(flow, request.app.state.pathways),
            "organisations": names,
            "open_escalations": [e for e in detail.escalations if e.resolved_at is None],
            "now": utcnow(),
            "default_deadline": _default_deadline(flow),
            "awaited_events": _awaited_events(flow, request.app.state.pathways),
        },
    )


def _awaited_events(flow: Flow, pathways: Pathways) -> list[dict]:
    """The events a coordinator may report from this page: the one the current step waits for, and
    those the pathway takes at any time (its `alongside` events; the workflow refuses what it cannot take)."""
    pathway = pathways.get(flow.pathway)
    if pathway is None or flow.status not in OPEN_STATUSES:
        return []
    step = pathway.steps_by_name().get(flow.step)
    found = [step] if isinstance(step, AwaitEvent | SendOnEvent) else []
    found += [s for s in pathway.alongside if isinstance(s, OnEvent)]
    return [
        {"event": s.event, "title": s.title or s.event, "alongside": isinstance(s, OnEvent)}
        for s in found
        if "coordinator" in s.roles
    ]


def _default_deadline(flow: Flow) -> str:
    """A week past the current deadline (or from now), as the datetime-local value in Danish time."""
    base = max(filter(None, [aware(flow.next_deadline), utcnow()]))
    return (base + timedelta(days=7)).astimezone(COPENHAGEN).strftime("%Y-%m-%dT%H:%M")


@router.get("/flows/{flow_id}/messages/{direction}/{message_id}", response_class=HTMLResponse)
def message_page(
    request: Request,
    flow_id: str,
    direction: str,
    message_id: Annotated[int, Path(ge=1, le=2**62)],
    user: CurrentCoordinator,
    session: SessionDep,
    key_ring: KeyRingDep,
) -> Response:
    """One stored message as formatted FHIR (it holds patient data: audited)."""
    table = {"out": OutboundMessage, "in": InboundMessage}.get(direction)
    row = session.get(table, message_id) if table else None
    if row is None or row.flow_id != flow_id:
        raise HTTPException(404, "There is no such message on this flow.")
    flow = session.get(Flow, flow_id)
    if flow is None or not in_scope(flow, user.scope):
        raise HTTPException(
            403, "This pathway is outside your organisations (a break-glass read shows its page, not its messages)."
        )
    session.add(
        AuditEntry(
            actor=user.subject,
            role=user.role,
            action="console-read-message",
            flow_id=flow_id,
            detail=f"{direction} {row.message_header_id}",
        )
    )
    session.commit()
    key = row.bundle_id if direction == "out" else row.message_header_id
    body = _formatted(key_ring.decrypt_text(row.body_enc, sealed_as(table, "body_enc", key)))
    acknowledgement = (
        _formatted(key_ring.decrypt_text(row.ack_enc, sealed_as(InboundMessage, "ack_enc", key)))
        if direction == "in" and row.ack_enc
        else None
    )
    return render(
        request,
        "message.html",
        {
            "user": user,
            "flow_id": flow_id,
            "direction": direction,
            "message": row,
            "body": body,
            "acknowledgement": acknowledgement,
        },
    )


def _formatted(text: str) -> str:
    """Pretty-printed FHIR JSON; an XML message is shown as its JSON equivalent."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    if looks_like_xml(text):
        try:
            return json.dumps(from_xml(text), indent=2, ensure_ascii=False)
        except Exception:  # noqa: BLE001 - a stored message that no longer parses is shown as received
            return text
    return text


# ----- escalation inbox ---------------------------------------------------------------------


@router.get("/escalations", response_class=HTMLResponse)
def escalations(request: Request, user: CurrentCoordinator, session: SessionDep) -> Response:
    """Open escalations, oldest first, each with its actions; and the latest resolved ones."""
    open_rows = session.exec(
        restrict(
            select(Escalation, Flow)
            .join(Flow, col(Flow.id) == col(Escalation.flow_id))
            .where(col(Escalation.resolved_at).is_(None)),
            user.scope,
        )
        .order_by(col(Escalation.opened_at), col(Escalation.id))
        .limit(500)
    ).all()
    resolved = session.exec(
        restrict(
            select(Escalation)
            .join(Flow, col(Flow.id) == col(Escalation.flow_id))
            .where(col(Escalation.resolved_at).is_not(None)),
            user.scope,
        )
        .order_by(col(Escalation.resolved_at).desc())
        .limit(20)
    ).all()
    items = [{"escalation": e, "flow": f, "default_deadline": _default_deadline(f)} for e, f in open_rows]
    return render(request, "escalations.html", {"user": user, "items": items, "resolved": resolved, "now": utcnow()})
