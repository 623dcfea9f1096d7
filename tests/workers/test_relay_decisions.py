"""What a message decides travels with its signal on both ways in: from memory on the route, and
from the stored (sealed) body when the relay delivers it later — a triage Task's decision, the
organisation a forward names, the timeline line, a CareCommunication's thread."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from careflow.crypto import KeyRing
from careflow.settings import DEV_CODEC_KEYS, get_settings
from exchange.delivering import signal_for, stored_correlation
from messaging import Envelope, PatientData, build_message, parse_message
from messaging import referral_draft as draft
from messaging.directory import Directory
from messaging.types.care_communication import CareCommunicationContent
from store.models import InboundMessage, sealed_as
from tests.messaging.conftest import GP_SOR, HOSPITAL_SOR

FLOW = str(uuid.uuid4())


@pytest.fixture(scope="module")
def directory() -> Directory:
    return Directory.load(get_settings().directory_path)


SECOND_HOSPITAL = "200000000000003"


def stored(key_ring: KeyRing, bundle: dict) -> InboundMessage:
    parsed = parse_message(bundle)
    return InboundMessage(
        message_header_id=parsed.message_header_id,
        bundle_id=parsed.bundle_id,
        event_code=parsed.event_code,
        sender_sor=parsed.sender.sor,
        flow_id=FLOW,
        content_type="application/fhir+json",
        thread_id=parsed.correlation.thread_id,
        body_enc=key_ring.encrypt_text(
            json.dumps(bundle), sealed_as(InboundMessage, "body_enc", parsed.message_header_id)
        ),
    )


def message(directory: Directory, kind: str, content: object) -> dict:
    envelope = Envelope(
        message_header_id=str(uuid.uuid4()),
        bundle_id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        sender=directory.get(HOSPITAL_SOR).organization,
        receiver=directory.get(GP_SOR).organization,
        patient=PatientData(cpr="0101505123"),
        previous_header_id=str(uuid.uuid4()),
    )
    return build_message(kind, envelope, content)


def test_the_relay_reads_the_decision_from_the_stored_body_as_the_route_does(directory: Directory) -> None:
    key_ring = KeyRing.parse(DEV_CODEC_KEYS)
    forward = message(
        directory,
        draft.TRIAGE,
        draft.TriageContent(
            service_request_id=FLOW,
            decision=draft.Decision.FORWARD,
            forward_to=directory.get(SECOND_HOSPITAL).organization,
            forwarded_request_id=str(uuid.uuid4()),
        ),
    )
    row = stored(key_ring, forward)
    from_route = signal_for(row, parse_message(forward).correlation)
    from_relay = signal_for(row, stored_correlation(key_ring, row))
    assert from_relay == from_route
    assert (from_relay.outcome, from_relay.forward_to) == ("videresendelse", SECOND_HOSPITAL)
    assert from_relay.summary == f"forwarded to SOR {SECOND_HOSPITAL}"


def test_a_type_without_decisions_is_not_read_again_and_keeps_its_thread(directory: Directory) -> None:
    key_ring = KeyRing.parse(DEV_CODEC_KEYS)
    thread = str(uuid.uuid4())
    question = message(
        directory,
        "care-communication-message",
        CareCommunicationContent(communication_id=thread, text="?", category="regarding-referral"),
    )
    row = stored(key_ring, question)
    assert stored_correlation(key_ring, row) is None, "only types with their own extractor are parsed again"
    signal = signal_for(row, None)
    assert (signal.thread_id, signal.outcome, signal.forward_to) == (thread, None, None)
    # a sealed body that does not open is delivered with what the row holds
    broken = row.model_copy(update={"body_enc": key_ring.encrypt_text("{}", "elsewhere"), "event_code": draft.TRIAGE})
    assert stored_correlation(key_ring, broken) is None
