"""What the pathways' e2e modules read of a flow: the coordinators' view of it (`GET /flows/{id}`), now
or once it has reached a state, and the messages careflow sent for it, from the message store."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlmodel import Session, select

from careflow.auth import Role
from careflow.crypto import KeyRing
from store.db import make_engine
from store.models import OutboundMessage, sealed_as
from tests.conftest import Stack, wait_for


async def coordinator_view(stack: Stack, flow_id: str) -> dict:
    response = await stack.api.get(f"/flows/{flow_id}", headers=stack.headers(Role.COORDINATOR))
    assert response.status_code == 200, response.text
    return response.json()


async def view_when(
    stack: Stack, flow_id: str, reached: Callable[[dict], bool], timeout: float = 60, interval: float = 0.2
) -> dict:
    """The coordinators' view of the flow once `reached` holds for it (TimeoutError after `timeout`)."""

    async def check() -> dict | None:
        view = await coordinator_view(stack, flow_id)
        return view if reached(view) else None

    return await wait_for(check, timeout=timeout, interval=interval)


def sent_bundles(stack: Stack, flow_id: str, event_code: str) -> list[tuple[OutboundMessage, dict]]:
    """The messages of this type careflow sent for the flow, read back from the message store: the
    first send of each (a resend keeps its MessageHeader.id), in order, with its Bundle."""
    key_ring = KeyRing.parse(stack.settings.codec_keys)
    engine = make_engine(stack.settings.sqlalchemy_url)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(OutboundMessage)
                .where(
                    OutboundMessage.flow_id == flow_id,
                    OutboundMessage.event_code == event_code,
                    OutboundMessage.attempt == 0,
                )
                .order_by(OutboundMessage.id)
            ).all()
    finally:
        engine.dispose()
    return [
        (row, json.loads(key_ring.decrypt_text(row.body_enc, sealed_as(OutboundMessage, "body_enc", row.bundle_id))))
        for row in rows
    ]
