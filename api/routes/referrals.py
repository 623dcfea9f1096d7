"""Clinicians start referrals: `POST /referrals`, the referral pathway's alias of `POST /pathways/referral/flows`."""

from __future__ import annotations

from fastapi import APIRouter, Header, HTTPException, Response

from api.deps import Clinician, DirectoryDep, EngineDep, KeyRingDep, PathwaysDep, SettingsDep, TemporalDep
from api.schemas import FlowAccepted, ReferralCreate
from careflow.auth import Role
from exchange.starting import IDEMPOTENCY_NAMESPACE, flow_id_for, start_flow
from workflows.referral import ReferralInput

router = APIRouter(prefix="/referrals", tags=["referrals"])

__all__ = ["IDEMPOTENCY_NAMESPACE", "router"]


@router.post(
    "",
    status_code=202,
    response_model=FlowAccepted,
    responses={
        409: {"description": "already started (same Idempotency-Key)"},
        503: {"description": "Temporal unreachable; nothing was started"},
    },
)
async def create_referral(
    referral: ReferralCreate,
    response: Response,
    clinician: Clinician,
    pathways: PathwaysDep,
    engine: EngineDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    directory: DirectoryDep,
    key_ring: KeyRingDep,
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> FlowAccepted:
    """Start a referral pathway; answers at once with the flow's id and URL."""
    pathway = pathways.get(referral.pathway)
    if pathway is None or not issubclass(ReferralInput, pathway.input_model) or not pathway.api_start:
        known = ", ".join(p.name for p in pathways if p.api_start and issubclass(ReferralInput, p.input_model))
        raise HTTPException(422, f"no pathway {referral.pathway!r} that takes a referral; known: {known}")
    started = await start_flow(
        pathway,
        pathway.input_model.model_validate(referral.model_dump(exclude={"pathway"})),
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
        audit_action="create-referral",
    )
    response.headers["Location"] = started.url
    return FlowAccepted(id=started.flow_id, url=started.url)
