"""Console fixtures: a logged-in console client, and pathways that escalate within seconds."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest_asyncio
from sqlmodel import Session, col, select
from temporalio.service import RPCError

from careflow.auth import Role
from careflow.crypto import KeyRing, cpr_lookup_hash
from messaging import Directory
from messaging.model import PatientData
from store.db import make_engine
from store.models import AuditEntry, Escalation, Flow
from tests.conftest import Stack, token, wait_for
from workflows.models import PathwayInput, PathwayTimings
from workflows.referral import ReferralPathwayWorkflow
from workflows.registry import PATHWAYS

GP_SOR = "100000000000001"
HOSPITAL_SOR = "200000000000001"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def synthetic_cpr() -> str:
    """A valid-format CPR of someone born in 2050 (7th digit 5, year 50): it belongs to nobody."""
    return f"{random.randint(1, 28):02d}{random.randint(1, 12):02d}505{random.randint(0, 999):03d}"


def csrf_of(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@asynccontextmanager
async def console_client(
    stack: Stack, role: Role = Role.COORDINATOR, subject: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client logged in to the console (as a browser would: login form, then cookie)."""
    async with httpx.AsyncClient(base_url=stack.settings.public_url, timeout=30) as client:
        form = await client.get("/console/login")
        response = await client.post(
            "/console/login",
            data={"token": token(stack.settings, role, subject=subject), "csrf_token": csrf_of(form.text)},
        )
        assert response.status_code == 303 and response.headers["location"] == "/console", response.text
        yield client


@dataclass
class EscalatedFlow:
    flow_id: str
    workflow_id: str
    cpr: str


def _session(stack: Stack) -> Session:
    return Session(make_engine(stack.settings.sqlalchemy_url), expire_on_commit=False)


def read_escalations(stack: Stack, flow_id: str) -> list[Escalation]:
    with _session(stack) as session:
        return list(
            session.exec(select(Escalation).where(Escalation.flow_id == flow_id).order_by(col(Escalation.id))).all()
        )


def read_flow(stack: Stack, flow_id: str) -> Flow | None:
    with _session(stack) as session:
        return session.get(Flow, flow_id)


def read_audit(stack: Stack, flow_id: str) -> list[AuditEntry]:
    with _session(stack) as session:
        return list(
            session.exec(select(AuditEntry).where(AuditEntry.flow_id == flow_id).order_by(col(AuditEntry.id))).all()
        )


async def start_escalating_flow(stack: Stack, appointment_deadline: timedelta = timedelta(seconds=2)) -> EscalatedFlow:
    """A referral whose hospital acknowledges but never books: the appointment deadline (seconds,
    not 30 days) passes and opens an escalation. The flow row is made as POST /referrals makes it."""
    settings = stack.settings
    definition = PATHWAYS["referral"]
    directory = Directory.load(settings.directory_path)
    key_ring = KeyRing.parse(settings.codec_keys)
    cpr = synthetic_cpr()
    patient = PatientData(cpr=cpr, given_name="Testa", family_name="Syntetisk")
    flow_id = str(uuid.uuid4())
    reason = "Brystsmerter ved anstrengelse"
    with _session(stack) as session:
        session.add(
            Flow(
                id=flow_id,
                workflow_id=definition.workflow_id(flow_id),
                pathway=definition.name,
                referring_sor=GP_SOR,
                receiving_sor=HOSPITAL_SOR,
                cpr_hash=cpr_lookup_hash(cpr, settings.cpr_hash_key),
                patient_enc=key_ring.encrypt_text(patient.model_dump_json()),
                reason_enc=key_ring.encrypt_text(reason),
            )
        )
        session.commit()
    behaviour = stack.simulator_app.state.simulator.behaviour
    behaviour.reply = False
    try:
        await stack.client.start_workflow(
            ReferralPathwayWorkflow.run,
            PathwayInput(
                flow_id=flow_id,
                pathway=definition.name,
                patient=patient,
                referring=directory.get(GP_SOR).organization,
                receiving=directory.get(HOSPITAL_SOR).organization,
                reason=reason,
                timings=PathwayTimings(appointment_deadline=appointment_deadline),
            ),
            id=definition.workflow_id(flow_id),
            task_queue=settings.task_queue,
        )

        async def escalated() -> bool:
            flow = read_flow(stack, flow_id)
            return bool(flow and flow.open_escalations > 0 and flow.step == "appointment")

        await wait_for(escalated, timeout=30)
    finally:
        behaviour.reply = True
    return EscalatedFlow(flow_id=flow_id, workflow_id=definition.workflow_id(flow_id), cpr=cpr)


@pytest_asyncio.fixture
async def escalated_flow(stack: Stack) -> AsyncIterator[Callable[[], Awaitable[EscalatedFlow]]]:
    """Makes escalated flows on demand, and ends their workflows after the test."""
    started: list[EscalatedFlow] = []

    async def make() -> EscalatedFlow:
        flow = await start_escalating_flow(stack)
        started.append(flow)
        return flow

    yield make
    for flow in started:
        handle = stack.client.get_workflow_handle(flow.workflow_id)
        try:
            await handle.terminate(reason="test finished")
        except RPCError:  # already ended (e.g. cancelled by the test): nothing to clean up
            pass


__all__ = ["EscalatedFlow", "console_client", "csrf_of", "read_audit", "read_escalations", "read_flow", "synthetic_cpr"]
