"""The declared pathways: `GET /pathways`, and `POST /pathways/{name}/flows` to start one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Response
from pydantic import ValidationError

from api.deps import Clinician, DirectoryDep, EngineDep, KeyRingDep, PathwaysDep, Reader, SettingsDep, TemporalDep
from api.schemas import FlowAccepted, PathwayPublic
from careflow.auth import Role
from exchange.starting import flow_id_for, invalid_input, start_flow
from workflows.registry import describe

router = APIRouter(prefix="/pathways", tags=["pathways"])


@router.get("", response_model=list[PathwayPublic])
def list_pathways(user: Reader, pathways: PathwaysDep, settings: SettingsDep) -> list[dict]:
    """Every declared pathway: titles, parties, steps (messages, deadlines), start triggers, input schema."""
    return [describe(p, settings.timings(p.name, p.timings_model)) for p in pathways]


@router.post(
    "/{name}/flows",
    status_code=202,
    response_model=FlowAccepted,
    responses={
        404: {"description": "no such pathway"},
        409: {"description": "already started (same Idempotency-Key)"},
        422: {"description": "invalid input; the OperationOutcome names the field"},
        503: {"description": "Temporal unreachable; nothing was started"},
    },
)
async def start_pathway(
    name: str,
    body: Annotated[dict[str, Any], Body(description="The pathway's input: see `input_schema` in `GET /pathways`.")],
    response: Response,
    clinician: Clinician,
    pathways: PathwaysDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    directory: DirectoryDep,
    key_ring: KeyRingDep,
    engine: EngineDep,
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> FlowAccepted:
    """Start a flow of the named pathway; answers at once with the flow's id and URL."""
    pathway = pathways.get(name)
    if pathway is None or not pathway.api_start:
        raise HTTPException(
            404,
            f"no pathway {name!r} to start through the API; known: "
            f"{', '.join(p.name for p in pathways if p.api_start)}",
        )
    try:
        start = pathway.input_model.model_validate(body)
    except ValidationError as err:
        raise invalid_input(err) from None
    started = await start_flow(
        pathway,
        start,
        actor=clinician.subject,
        role=clinician.role.value,
        engine=engine,
        temporal=temporal,
        settings=settings,
        directory=directory,
        key_ring=key_ring,
        flow_id=flow_id_for(clinician.subject, idempotency_key),
        keep_row_on_failure=idempotency_key is not None,
        acting_sor=clinician.sor if clinician.role is Role.CLINICIAN else None,
    )
    response.headers["Location"] = started.url
    return FlowAccepted(id=started.flow_id, url=started.url)
