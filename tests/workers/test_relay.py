"""The relay delivers what was stored but never signalled (the API died in between), in order."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session

from careflow.crypto import KeyRing
from messaging import Directory
from messaging.model import MessageKind
from store.db import make_engine
from store.models import InboundMessage
from tests.api.test_inbound import silent_referral
from tests.conftest import Stack, wait_for
from workers.relay import Relay
from workflows.referral import ReferralPathwayWorkflow

pytestmark = pytest.mark.e2e


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
        for header_id, kind in zip(header_ids, (MessageKind.APPOINTMENT, MessageKind.TEST_RESULT, MessageKind.TREATMENT_PLAN), strict=True):
            session.add(InboundMessage(message_header_id=header_id, bundle_id=str(uuid.uuid4()), event_code=kind.value, sender_sor="200000000000001", flow_id=accepted["id"], content_type="application/fhir+json", body_enc=key_ring.encrypt_text("{}")))
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
