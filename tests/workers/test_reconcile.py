"""Pathways that ended outside their own code show as failed, not forever active."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from careflow.auth import Role
from careflow.crypto import KeyRing
from store.db import make_engine
from store.models import Escalation, Flow, FlowEvent, utcnow
from tests.conftest import Stack, referral_payload, wait_for
from workers.reconcile import Reconciler
from workflows.referral import ReferralPathwayWorkflow

pytestmark = pytest.mark.e2e


def _flow(stack: Stack, flow_id: str) -> Flow:
    with Session(make_engine(stack.settings.sqlalchemy_url)) as session:
        return session.get(Flow, flow_id)


async def test_terminated_workflow_and_never_started_flow_are_marked_failed(stack: Stack) -> None:
    engine = make_engine(stack.settings.sqlalchemy_url)
    reconciler = Reconciler(engine, stack.client)
    simulator = stack.simulator_app.state.simulator
    simulator.behaviour.reply = False
    try:
        accepted = (
            await stack.api.post(
                "/referrals", json=referral_payload("0909505123"), headers=stack.headers(Role.CLINICIAN)
            )
        ).json()
        handle = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{accepted['id']}")

        async def waiting_for_appointment() -> bool:
            return (await handle.query(ReferralPathwayWorkflow.pathway_state)).step == "appointment"

        await wait_for(waiting_for_appointment)
    finally:
        simulator.behaviour.reply = True
    # A healthy running pathway is left alone (other tests' ended workflows may be marked here).
    await reconciler.run_once()
    assert _flow(stack, accepted["id"]).status == "active"
    await handle.terminate("operator cleaned up")
    # An orphan row: the API died between storing it and starting its workflow, long ago.
    orphan_id = str(uuid.uuid4())
    key_ring = KeyRing.parse(stack.settings.codec_keys)
    with Session(engine) as session:
        session.add(
            Flow(
                id=orphan_id,
                workflow_id=f"referral-{orphan_id}",
                pathway="referral",
                referring_sor="100000000000001",
                receiving_sor="200000000000001",
                cpr_hash="h",
                patient_enc=key_ring.encrypt_text("{}"),
                reason_enc=key_ring.encrypt_text("r"),
                created_at=utcnow() - timedelta(minutes=10),
            )
        )
        session.commit()

    async def reconciled() -> bool:  # visibility is eventually consistent
        await reconciler.run_once()
        return _flow(stack, accepted["id"]).status == "failed"

    await wait_for(reconciled, timeout=30, interval=0.5)
    assert _flow(stack, orphan_id).status == "failed"
    with Session(engine) as session:
        details = {e.flow_id: e.detail for e in session.exec(select(FlowEvent).where(FlowEvent.kind == "failed")).all()}
        assert "terminated" in details[accepted["id"]] and "never started" in details[orphan_id]
        assert not session.exec(
            select(Escalation).where(Escalation.flow_id == accepted["id"], Escalation.resolved_at.is_(None))
        ).all()
    assert await reconciler.run_once() == 0, "marked once"
