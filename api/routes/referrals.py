"""Clinicians start pathways: `POST /referrals`."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Header, HTTPException, Response
from fastapi.concurrency import run_in_threadpool
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.deps import Clinician, DirectoryDep, KeyRingDep, SessionDep, SettingsDep, TemporalDep
from api.schemas import ReferralAccepted, ReferralCreate
from careflow.crypto import cpr_lookup_hash
from messaging import NotAccepted, UnknownOrganization
from messaging.model import MessageKind, PatientData
from store.models import AuditEntry, Flow
from workflows.models import PathwayInput
from workflows.registry import PATHWAYS

log = logging.getLogger(__name__)
router = APIRouter(prefix="/referrals", tags=["referrals"])

IDEMPOTENCY_NAMESPACE = uuid.UUID("5d1b7c2e-8a43-4f0e-9a51-3c1a1d6f0b7e")


@router.post("", status_code=202, response_model=ReferralAccepted, responses={409: {"description": "already started (same Idempotency-Key)"}, 503: {"description": "Temporal unreachable; nothing was started"}})
async def create_referral(
    referral: ReferralCreate,
    response: Response,
    clinician: Clinician,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    directory: DirectoryDep,
    key_ring: KeyRingDep,
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> ReferralAccepted:
    """Start a referral pathway; answers at once with the flow's id and URL."""
    definition = PATHWAYS.get(referral.pathway)
    if definition is None:
        raise HTTPException(422, f"unknown pathway {referral.pathway!r}; known: {', '.join(PATHWAYS)}")
    try:
        referring = directory.get(referral.referring_sor).organization
        receiving = directory.require_accepts(referral.receiving_sor, MessageKind.REFERRAL).organization
    except UnknownOrganization as err:
        raise HTTPException(422, f"unknown organisation: {err}") from None
    except NotAccepted as err:
        raise HTTPException(422, str(err)) from None

    flow_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{clinician.subject}:{idempotency_key}")) if idempotency_key else str(uuid.uuid4())
    url = f"{settings.public_url}/flows/{flow_id}"
    patient = PatientData(cpr=referral.patient.cpr, given_name=referral.patient.given_name, family_name=referral.patient.family_name)
    cpr_hash = cpr_lookup_hash(patient.cpr, settings.cpr_hash_key)
    def store_flow() -> Flow:
        """The read-model row, committed before the workflow starts (in a worker thread)."""
        flow = session.get(Flow, flow_id)
        if flow is None:
            flow = Flow(
                id=flow_id,
                workflow_id=definition.workflow_id(flow_id),
                pathway=definition.name,
                referring_sor=referring.sor,
                receiving_sor=receiving.sor,
                priority=referral.priority,
                cpr_hash=cpr_hash,
                patient_enc=key_ring.encrypt_text(patient.model_dump_json()),
                reason_enc=key_ring.encrypt_text(referral.reason),
            )
            session.add(flow)
            session.add(AuditEntry(actor=clinician.subject, role=clinician.role.value, action="create-referral", flow_id=flow_id))
            session.commit()
        elif flow.cpr_hash != cpr_hash or flow.receiving_sor != receiving.sor:
            raise HTTPException(409, "this Idempotency-Key was already used for another referral")
        # else: a retry with the same Idempotency-Key. Its first attempt may have died before (or
        # while) starting the workflow, so start it now; a workflow that did start answers 409 below.
        return flow

    def take_back(flow: Flow) -> None:
        session.delete(flow)
        session.commit()

    flow = await run_in_threadpool(store_flow)
    try:
        await temporal.start_workflow(
            definition.workflow.run,
            PathwayInput(
                flow_id=flow_id,
                pathway=definition.name,
                patient=patient,
                referring=referring,
                receiving=receiving,
                reason=referral.reason,
                priority=referral.priority,
                timings=settings.timings(definition.name),
            ),
            id=flow.workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise HTTPException(409, f"this referral was already started: {url}") from None
    except Exception as err:
        # Unknown whether it started. With an Idempotency-Key the row stays: the client's retry
        # starts the workflow or learns that it did. Without one, take the row back.
        if idempotency_key is None:
            await run_in_threadpool(take_back, flow)
        log.error("could not start workflow for flow %s: %s", flow_id, type(err).__name__)
        raise HTTPException(503, "the workflow service is unreachable; the referral was not accepted, try again") from None
    response.headers["Location"] = url
    log.info("referral flow %s started (%s → %s)", flow_id, referring.sor, receiving.sor)
    return ReferralAccepted(id=flow_id, url=url)
