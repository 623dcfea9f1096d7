"""What Temporal holds is ciphertext, failures included, and a client that reaches Temporal without
the key cannot steer a pathway: its plain-text signals and updates are refused by the worker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter

from careflow.auth import Role
from messaging.model import MessageKind
from tests.conftest import Stack, referral_payload, wait_for
from tests.console.conftest import read_flow, start_escalating_flow
from workflows.models import CancelRequest, ExtendDeadlineRequest, InboundMessageSignal
from workflows.referral import ReferralPathwayWorkflow

pytestmark = pytest.mark.e2e


def plain_client(stack: Stack) -> Client:
    """A client that reached the Temporal frontend but has no codec key."""
    config = stack.client.config()
    config["data_converter"] = pydantic_data_converter
    return Client(**config)


async def test_a_plaintext_signal_or_update_changes_nothing(stack: Stack) -> None:
    flow = await start_escalating_flow(stack)
    encrypted = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, flow.workflow_id)
    before = await encrypted.query(ReferralPathwayWorkflow.pathway_state)
    attacker = plain_client(stack).get_workflow_handle(flow.workflow_id)
    forged = InboundMessageSignal(
        message_header_id=str(uuid.uuid4()),
        kind=MessageKind.APPOINTMENT,
        sender_sor="200000000000001",
        received_at=datetime.now(UTC),
    )
    try:
        await attacker.signal("message_received", forged)
        with pytest.raises(WorkflowUpdateFailedError):
            await asyncio.wait_for(
                attacker.execute_update("cancel", CancelRequest(actor="attacker", reason="because")), timeout=20
            )
        # The key holder's update still works: the pathway is not stuck on the refused input.
        later = datetime.now(UTC) + timedelta(days=40)
        await encrypted.execute_update(
            ReferralPathwayWorkflow.extend_deadline,
            ExtendDeadlineRequest(actor="coordinator", reason="ring back", step="appointment", new_deadline=later),
        )
        after = await encrypted.query(ReferralPathwayWorkflow.pathway_state)
        assert after.step == before.step == "appointment"
        assert forged.message_header_id not in after.received_header_ids
        assert before.status.value == "escalated" and after.status.value == "active", (
            "the extension resolved it; nothing cancelled it"
        )
        assert not any("attacker" in (e.resolution or "") for e in after.escalations)
        assert all(e.resolution and "coordinator" in e.resolution for e in after.escalations if e.resolved_at), (
            "resolved only by the key holder's update"
        )
    finally:
        await encrypted.terminate(reason="test finished")


async def test_the_raw_history_holds_no_readable_partner_error_or_patient(stack: Stack) -> None:
    secret_reason = f"Patienten 0505505123 er ukendt i afdelingen {uuid.uuid4().hex[:8]}"
    behaviour = stack.simulator_app.state.simulator.behaviour
    behaviour.failure, behaviour.reject_reason = "reject", secret_reason
    try:
        accepted = (
            await stack.api.post(
                "/referrals", json=referral_payload("0505505123"), headers=stack.headers(Role.CLINICIAN)
            )
        ).json()

        async def escalated() -> bool:
            row = read_flow(stack, accepted["id"])
            return bool(row and row.open_escalations)

        await wait_for(escalated, timeout=30)
    finally:
        behaviour.failure, behaviour.reject_reason = "none", "receiver cannot process this message"
    workflow_id = f"referral-{accepted['id']}"
    raw = (await plain_client(stack).get_workflow_handle(workflow_id).fetch_history()).to_json()
    assert "ukendt i afdelingen" not in raw and "0505505123" not in raw and "Syntetisk" not in raw
    assert "Encoded failure" in raw, "the failure is there, its text encrypted"
    # The key holder reads it all.
    readable = await stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, workflow_id).query(
        ReferralPathwayWorkflow.pathway_state
    )
    assert any(secret_reason in e.reason for e in readable.escalations)
    await stack.client.get_workflow_handle(workflow_id).terminate(reason="test finished")
