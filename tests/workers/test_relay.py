"""The relay delivers what was stored but never signalled (the API died in between), in order."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from careflow.crypto import KeyRing
from messaging import Directory
from messaging.model import MessageKind
from store.db import make_engine
from store.models import FlowEvent, InboundMessage
from tests.api.test_inbound import silent_referral
from tests.conftest import Stack, wait_for
from workers.relay import Relay
from workflows.referral import ReferralPathwayWorkflow

pytestmark = pytest.mark.e2e

# Who answers a referral: the hospital books and plans, its lab reports the test result.
SENDERS = {
    MessageKind.APPOINTMENT: "200000000000001",
    MessageKind.TEST_RESULT: "300000000000001",
    MessageKind.TREATMENT_PLAN: "200000000000001",
}


async def test_relay_delivers_stored_messages_in_arrival_order(stack: Stack) -> None:
    accepted = await silent_referral(stack, "1010505123")
    handle = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{accepted['id']}")

    async def at_appointment() -> bool:
        return (await handle.query(ReferralPathwayWorkflow.pathway_state)).step == "appointment"

    await wait_for(at_appointment)
    engine = make_engine(stack.settings.sqlalchemy_url)
    key_ring = KeyRing.parse(stack.settings.codec_keys)
    header_ids = [str(uuid.uuid4()) for _ in range(3)]
    # Stored as the API stores them, never signalled: the process died right after the commit.
    with Session(engine) as session:
        for header_id, kind in zip(
            header_ids, (MessageKind.APPOINTMENT, MessageKind.TEST_RESULT, MessageKind.TREATMENT_PLAN), strict=True
        ):
            session.add(
                InboundMessage(
                    message_header_id=header_id,
                    bundle_id=str(uuid.uuid4()),
                    event_code=kind.value,
                    sender_sor=SENDERS[kind],
                    flow_id=accepted["id"],
                    content_type="application/fhir+json",
                    body_enc=key_ring.encrypt_text("{}"),
                )
            )
        session.commit()
    async with httpx.AsyncClient() as http:
        relay = Relay(engine, stack.client, http, Directory.load(stack.settings.directory_path), key_ring)
        assert await relay.run_once(grace=timedelta(0)) == 3
        assert await relay.run_once(grace=timedelta(0)) == 0, "delivered once"

    async def completed():  # noqa: ANN202
        state = await handle.query(ReferralPathwayWorkflow.pathway_state)
        return state if state.status.value == "completed" else None

    state = await wait_for(completed, timeout=30)
    received = [h for h in state.received_header_ids if h in header_ids]
    assert received == header_ids, "applied in arrival order, each once"


async def test_a_second_reply_is_applied_and_a_reply_after_the_end_is_held_for_triage(stack: Stack) -> None:
    """A partner that answers twice (a rescheduled appointment, or a partner that lost track of a
    resend) is heard both times; a reply that comes after the pathway has ended is kept for a
    coordinator. Before: the second was logged and ignored, the late one marked undeliverable —
    accepted and acknowledged, then dropped (issue 8)."""
    accepted = await silent_referral(stack, "1110505123")
    handle = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{accepted['id']}")

    async def at_appointment() -> bool:
        return (await handle.query(ReferralPathwayWorkflow.pathway_state)).step == "appointment"

    await wait_for(at_appointment)
    engine = make_engine(stack.settings.sqlalchemy_url)
    key_ring = KeyRing.parse(stack.settings.codec_keys)
    kinds = (
        MessageKind.APPOINTMENT,
        MessageKind.APPOINTMENT,
        MessageKind.TEST_RESULT,
        MessageKind.TREATMENT_PLAN,
        MessageKind.TREATMENT_PLAN,
    )
    header_ids = [str(uuid.uuid4()) for _ in kinds]

    def store(pairs) -> list[int]:  # noqa: ANN001
        with Session(engine, expire_on_commit=False) as session:
            rows = [
                InboundMessage(
                    message_header_id=h,
                    bundle_id=str(uuid.uuid4()),
                    event_code=k.value,
                    sender_sor=SENDERS[k],
                    flow_id=accepted["id"],
                    content_type="application/fhir+json",
                    body_enc=key_ring.encrypt_text("{}"),
                )
                for h, k in pairs
            ]
            session.add_all(rows)
            session.commit()
            return [r.id for r in rows]

    store(list(zip(header_ids[:4], kinds[:4], strict=True)))
    async with httpx.AsyncClient() as http:
        relay = Relay(engine, stack.client, http, Directory.load(stack.settings.directory_path), key_ring)
        assert await relay.run_once(grace=timedelta(0)) == 4

        async def completed():  # noqa: ANN202
            state = await handle.query(ReferralPathwayWorkflow.pathway_state)
            return state if state.status.value == "completed" else None

        state = await wait_for(completed, timeout=30)
        assert [h for h in state.received_header_ids if h in header_ids] == header_ids[:4], (
            "the second appointment is applied too"
        )
        await handle.result()
        [late_id] = store([(header_ids[4], kinds[4])])
        assert await relay.run_once(grace=timedelta(0)) == 0
    with Session(engine) as session:
        late = session.get(InboundMessage, late_id)
        assert (late.delivery_status, late.status_reason) == ("triage", "its pathway had ended when it arrived")
        events = session.exec(
            select(FlowEvent.detail).where(
                FlowEvent.flow_id == accepted["id"], FlowEvent.message_header_id == header_ids[1]
            )
        ).all()
    assert any("replaces the earlier one" in detail for detail in events), events
