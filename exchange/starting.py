"""Starting a declared pathway: the same path for the API, the referral alias and inbound triggers."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from careflow.crypto import KeyRing, cpr_lookup_hash
from careflow.deadlines import rule_book
from careflow.settings import Settings
from messaging import Directory, NotAccepted, UnknownOrganization
from messaging.model import Organization
from store.audit import audit_session, chain_key
from store.models import AuditEntry, Flow, sealed_as, utcnow
from workflows.models import PathwayInput, PathwayStart
from workflows.registry import messages_sent
from workflows.steps import PathwayWorkflow

log = logging.getLogger(__name__)

IDEMPOTENCY_NAMESPACE = uuid.UUID("5d1b7c2e-8a43-4f0e-9a51-3c1a1d6f0b7e")


class StartRefused(Exception):
    """The start cannot go ahead: `status` is the HTTP answer (404, 409, 422, 503)."""

    def __init__(self, status: int, detail: str, expression: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.expression = status, detail, expression


def invalid_input(err: ValidationError) -> StartRefused:
    """A 422 naming every bad field (never echoing a value: the input holds patient data)."""
    errors = err.errors(include_input=False)
    messages = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors]
    return StartRefused(422, "; ".join(messages), ".".join(map(str, errors[0]["loc"])) if errors else None)


@dataclass(frozen=True)
class Started:
    flow_id: str
    url: str


def flow_id_for(actor: str, idempotency_key: str | None) -> str:
    """A retry with the same Idempotency-Key (per actor) names the same flow."""
    return (
        str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{actor}:{idempotency_key}")) if idempotency_key else str(uuid.uuid4())
    )


def resolve_parties(
    pathway: type[PathwayWorkflow], start: PathwayStart, directory: Directory
) -> dict[str, Organization]:
    """Each declared party's organisation: from its input field, else the directory's first entry of
    its kind; and every party must accept what the pathway sends it."""
    parties: dict[str, Organization] = {}
    for party in pathway.parties:
        sor = getattr(start, party.field, None) if party.field else None
        try:
            if sor:
                parties[party.role] = directory.get(sor).organization
            elif party.directory_kind:
                entry = next((e for e in directory.entries if e.kind == party.directory_kind), None)
                if entry is None:
                    raise StartRefused(
                        422, f"no {party.directory_kind} in the directory for the {party.title}", party.field
                    )
                parties[party.role] = entry.organization
            else:
                raise StartRefused(422, f"the {party.title} ({party.field}) is required", party.field)
        except UnknownOrganization as err:
            raise StartRefused(422, f"unknown organisation for the {party.title}: {err}", party.field) from None
        expected_kind = party.kind or party.directory_kind
        if expected_kind and directory.get(parties[party.role].sor).kind != expected_kind:
            raise StartRefused(
                422,
                f"the {party.title} must be a {expected_kind}, and SOR {parties[party.role].sor} is not",
                party.field,
            )
    for role, kinds in messages_sent(pathway).items():
        for kind in sorted(kinds):
            try:
                directory.require_accepts(parties[role].sor, kind)
            except NotAccepted as err:
                field = next((p.field for p in pathway.parties if p.role == role), None)
                raise StartRefused(422, str(err), field) from None
    return parties


@dataclass
class Prepared:
    """A flow ready to commit: its read-model row, its audit entry and its workflow's input."""

    pathway: type[PathwayWorkflow]
    flow: Flow
    audit: AuditEntry
    input: PathwayInput


def prepare_flow(
    pathway: type[PathwayWorkflow],
    start: PathwayStart,
    *,
    actor: str,
    role: str,
    settings: Settings,
    directory: Directory,
    key_ring: KeyRing,
    flow_id: str,
    audit_action: str = "start-flow",
    keep_input: bool = False,
) -> Prepared:
    """Resolve the parties and build the row and the input (nothing is written). `keep_input` keeps
    the workflow input, encrypted, on the row: a flow started by an inbound message is started by
    whichever delivers that message first (the API, or the relay after a crash)."""
    parties = resolve_parties(pathway, start, directory)
    patient = start.patient.data()
    cpr_hash = cpr_lookup_hash(patient.cpr, settings.cpr_hash_key)
    data = start.model_dump(mode="json", exclude={"patient"})
    pathway_input = PathwayInput(
        flow_id=flow_id,
        pathway=pathway.name,
        patient=patient,
        parties=parties,
        data=data,
        timings=settings.timings(pathway.name, pathway.timings_model).model_dump(mode="json"),
        patient_hash=cpr_hash,
        # The legal deadline rules in force today stay with the pathway (a later version does not move them).
        rules=rule_book(settings.deadline_rules_path).in_force(utcnow()).model_dump(mode="json")
        if pathway.legal_rules()
        else None,
    )
    flow = Flow(
        id=flow_id,
        workflow_id=pathway.workflow_id(flow_id),
        pathway=pathway.name,
        step=pathway.steps[0].name,  # the read model's default is the referral pathway's first step
        referring_sor=parties[pathway.acting_for].sor,
        receiving_sor=parties[pathway.counterpart].sor,
        priority=str(data.get("priority", "routine")),
        cpr_hash=cpr_hash,
        patient_enc=key_ring.encrypt_text(patient.model_dump_json(), sealed_as(Flow, "patient_enc", flow_id)),
        reason_enc=key_ring.encrypt_text(
            str(data.get("reason", pathway.title)), sealed_as(Flow, "reason_enc", flow_id)
        ),
        parties_json=json.dumps({role: org.sor for role, org in parties.items()}),
        start_enc=key_ring.encrypt_text(pathway_input.model_dump_json(), sealed_as(Flow, "start_enc", flow_id))
        if keep_input
        else None,
    )
    return Prepared(
        pathway,
        flow,
        AuditEntry(actor=actor, role=role, action=audit_action, flow_id=flow_id, detail=pathway.name),
        pathway_input,
    )


async def start_flow(
    pathway: type[PathwayWorkflow],
    start: PathwayStart,
    *,
    actor: str,
    role: str,
    engine: Engine,
    temporal: Client,
    settings: Settings,
    directory: Directory,
    key_ring: KeyRing,
    flow_id: str,
    keep_row_on_failure: bool = False,
    audit_action: str = "start-flow",
    acting_sor: str | None = None,
) -> Started:
    """Store the read-model row, then start the workflow. The row is committed first so the flow
    is visible (and a retry can find it) before its workflow runs; a start that fails for certain
    takes it back unless the caller will retry with the same flow id (`keep_row_on_failure`)."""
    prepared = prepare_flow(
        pathway,
        start,
        actor=actor,
        role=role,
        settings=settings,
        directory=directory,
        key_ring=key_ring,
        flow_id=flow_id,
        audit_action=audit_action,
    )
    if acting_sor is not None and prepared.flow.referring_sor != acting_sor:
        # A clinician acts for the organisation in the token (api/scoping.py), not for another.
        field = next((p.field for p in pathway.parties if p.role == pathway.acting_for), None)
        raise StartRefused(
            403,
            f"a clinician acts for their own organisation (SOR {acting_sor}), not for {prepared.flow.referring_sor}",
            field,
        )
    url = f"{settings.public_url}/flows/{flow_id}"

    def store_flow() -> Flow:
        with audit_session(
            engine, chain_key(settings.cpr_hash_key), expire_on_commit=False
        ) as session:  # the audit entry is chained
            flow = session.get(Flow, flow_id)
            if flow is None:
                session.add(prepared.flow)
                session.add(prepared.audit)
                session.commit()
                return prepared.flow
            if (
                flow.cpr_hash != prepared.flow.cpr_hash
                or flow.receiving_sor != prepared.flow.receiving_sor
                or flow.pathway != pathway.name
            ):
                raise StartRefused(409, "this Idempotency-Key was already used for another flow")
            # A retry. Its first attempt may have died before (or while) starting the workflow, so
            # start it now; a workflow that did start answers 409 below.
            return flow

    def take_back() -> None:
        with Session(engine) as session:
            flow = session.get(Flow, flow_id)
            if flow is not None:
                session.delete(flow)
                session.commit()

    flow = await asyncio.to_thread(store_flow)
    try:
        await temporal.start_workflow(
            pathway.run,
            prepared.input,
            id=flow.workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=pathway.start_attributes(),
        )
    except WorkflowAlreadyStartedError:
        raise StartRefused(409, f"this flow was already started: {url}") from None
    except Exception as err:
        # Unknown whether it started. With an Idempotency-Key the row stays: the client's retry
        # starts the workflow or learns that it did. Without one, take the row back.
        if not keep_row_on_failure:
            await asyncio.to_thread(take_back)
        log.error("could not start workflow for flow %s: %s", flow_id, type(err).__name__)
        raise StartRefused(503, "the workflow service is unreachable; nothing was started, try again") from None
    log.info("%s flow %s started (%s → %s)", pathway.name, flow_id, flow.referring_sor, flow.receiving_sor)
    return Started(flow_id=flow_id, url=url)
