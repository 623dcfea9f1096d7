"""The relay delivers what was stored but never signalled (the API died in between), in order."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from sqlmodel import Session, select

from careflow.crypto import KeyRing
from messaging import Directory
from messaging.acknowledge import build_acknowledgement
from messaging.model import AckCode, MessageKind
from store.db import make_engine
from store.models import FlowEvent, InboundMessage, sealed_as, utcnow
from tests.api.test_inbound import appointment, silent_referral
from tests.conftest import Stack, wait_for
from workers.relay import ACK_GRACE, Relay
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


async def test_the_relay_leaves_an_acknowledgement_to_the_api_for_its_grace_then_sends_it(stack: Stack) -> None:
    """An acknowledgement not yet marked sent may still be on its way from the API (waiting for a
    permit, then for the partner): the relay sends it only once ACK_GRACE has passed, so it does not
    go twice; after that, one lost with a crashed API goes out."""
    engine = make_engine(stack.settings.sqlalchemy_url)
    key_ring = KeyRing.parse(stack.settings.codec_keys)
    header_id = str(uuid.uuid4())
    original = json.loads(appointment(str(uuid.uuid4()), header_id))
    ack = build_acknowledgement(
        original, code=AckCode.OK, message_header_id=str(uuid.uuid4()), bundle_id=str(uuid.uuid4()), timestamp=utcnow()
    )

    def store(made: timedelta) -> int:
        with Session(engine, expire_on_commit=False) as session:
            row = InboundMessage(
                message_header_id=header_id,
                bundle_id=original["id"],
                event_code=MessageKind.APPOINTMENT.value,
                sender_sor=SENDERS[MessageKind.APPOINTMENT],
                content_type="application/fhir+json",
                body_enc=key_ring.encrypt_text("{}"),
                delivery_status="triage",  # nothing to deliver: only its acknowledgement is pending
                received_at=utcnow() - made,
                ack_code=AckCode.OK.value,
                ack_enc=key_ring.encrypt_text(json.dumps(ack), sealed_as(InboundMessage, "ack_enc", header_id)),
            )
            session.add(row)
            session.commit()
            return row.id

    def sent_at(row_id: int) -> datetime | None:
        with Session(engine) as session:
            return session.get(InboundMessage, row_id).ack_sent_at

    simulator = stack.simulator_app.state.simulator

    def acknowledgements_at_partner() -> int:
        return sum(1 for a in simulator.acknowledgements if a["id"] == ack["id"])

    row_id = store(ACK_GRACE - timedelta(seconds=5))
    async with httpx.AsyncClient() as http:
        relay = Relay(engine, stack.client, http, Directory.load(stack.settings.directory_path), key_ring)
        await relay.run_once()
        assert sent_at(row_id) is None and acknowledgements_at_partner() == 0, "left to the API"
        with Session(engine) as session:
            row = session.get(InboundMessage, row_id)
            row.received_at = utcnow() - ACK_GRACE - timedelta(seconds=1)
            session.add(row)
            session.commit()
        await relay.run_once()
    assert sent_at(row_id) is not None
    assert acknowledgements_at_partner() == 1
