"""careflow's VANS inbound (`POST /vans/envelope`) and MedCom's receiver rules, on the real stack:
an envelope's round trip (receipt apart from the acknowledgement), transport duplicates recognised
from the store (a second API process on the same database knows them), each bad envelope answered
4xx and kept for triage, a duplicate's acknowledgement sent again, a reused Bundle.id refused, and an
unreachable store answered 503 (transient) — over both transports where the rule is the FHIR layer's."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from sqlmodel import Session, select

from api.main import create_app
from careflow.auth import Role
from careflow.crypto import KeyRing
from messaging.vans import (
    DocumentType,
    ReceiptKind,
    VansMessage,
    VansReceipt,
    build_envelope,
    parse_envelope,
)
from store.db import make_engine
from store.models import InboundEnvelope, InboundMessage, sealed_as
from tests.api.test_inbound import GP, HOSPITAL, appointment, silent_referral
from tests.conftest import LoopbackServer, Stack, free_port, post_as_partner, token, wait_for

pytestmark = pytest.mark.e2e

AGREED = DocumentType(name="CAREFLOW:careflow-appointment-message", version="1.0")


def envelope_of(bundle: bytes | dict, *, mime_type: str = "application/fhir+json") -> bytes:
    as_dict = json.loads(bundle) if isinstance(bundle, bytes) else bundle
    return build_envelope(
        as_dict,
        sender_gln=HOSPITAL.ean,
        receiver_gln=GP.ean,
        sent=datetime.now(UTC),
        mime_type=mime_type,
        document=AGREED,
    )


def post_envelope(stack: Stack, body: bytes, *, url: str | None = None, sor: str = HOSPITAL.sor):  # noqa: ANN201
    headers = {"Authorization": f"Bearer {token(stack.settings, Role.PARTNER, sor)}", "Content-Type": "application/xml"}
    if url is None:
        return stack.api.post("/vans/envelope", content=body, headers=headers)
    return httpx.AsyncClient(timeout=30).post(f"{url}/vans/envelope", content=body, headers=headers)


def post_message(stack: Stack, body: bytes):  # noqa: ANN201
    """A partner's message over the stack's transport: bare, or in an envelope."""
    return post_as_partner(stack, body, HOSPITAL.sor)


def engine_of(stack: Stack):  # noqa: ANN201
    return make_engine(stack.settings.sqlalchemy_url)


def envelopes(stack: Stack) -> list[InboundEnvelope]:
    with Session(engine_of(stack)) as session:
        return list(session.exec(select(InboundEnvelope).order_by(InboundEnvelope.id)).all())


def stored(stack: Stack, header_id: str) -> list[InboundMessage]:
    with Session(engine_of(stack)) as session:
        return list(session.exec(select(InboundMessage).where(InboundMessage.message_header_id == header_id)).all())


def acknowledgements_of(stack: Stack, header_id: str) -> list[dict]:
    """The acknowledgements of a message the simulated hospital received from careflow."""
    simulator = stack.simulator_app.state.simulator
    return [a for a in simulator.acknowledgements if a["entry"][0]["resource"]["response"]["identifier"] == header_id]


@asynccontextmanager
async def another_api(stack: Stack, **overrides: object) -> AsyncIterator[str]:
    """A second API process on the stack's database (and Temporal), with these settings changed."""
    port = free_port()
    settings = stack.settings.model_copy(update={"api_port": port, **overrides})
    async with LoopbackServer(create_app(settings, run_migrations=False), port) as server:
        yield server.url


# ----- round trip -----------------------------------------------------------------------------------


async def test_an_envelope_round_trip_receipt_apart_from_the_acknowledgement(vans_stack: Stack) -> None:
    stack = vans_stack
    accepted = await silent_referral(stack, "0606505123")
    body = appointment(accepted["id"], cpr="0606505123")
    header_id = json.loads(body)["entry"][0]["resource"]["id"]
    sent = envelope_of(body)
    response = await post_envelope(stack, sent)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    receipt = parse_envelope(response.content)
    ours = parse_envelope(sent)
    assert isinstance(receipt, VansReceipt) and isinstance(ours, VansMessage)
    assert receipt.kind is ReceiptKind.POSITIVE
    assert receipt.original_envelope_identifier == ours.envelope_identifier
    assert receipt.original == ours.meta, "the receipt echoes the MetaInformation it received"
    assert (receipt.sender.value, receipt.receiver.value) == (GP.ean, HOSPITAL.ean)
    # The message inside was stored and goes to its pathway like any other.
    (row,) = stored(stack, header_id)
    assert row.flow_id == accepted["id"] and row.content_type == "application/fhir+json"
    (kept,) = [e for e in envelopes(stack) if e.envelope_identifier == ours.envelope_identifier]
    assert (kept.status, kept.message_header_id, kept.message_identifier) == (
        "accepted",
        header_id,
        ours.meta.identifier,
    )
    # The MedCom acknowledgement travels apart, as its own message in its own envelope.
    acks = await wait_for(lambda: _some(acknowledgements_of(stack, header_id)))
    assert acks[0]["entry"][0]["resource"]["response"]["code"] == "ok"
    assert acks[0]["id"] != receipt.envelope_identifier
    await stack.client.get_workflow_handle(f"referral-{accepted['id']}").terminate("test finished")


async def _some(found: list) -> list | None:
    return found or None


async def _at_least(count: int, found: list) -> list | None:
    return found if len(found) >= count else None


# ----- transport duplicates -------------------------------------------------------------------------


async def test_transport_duplicates_are_recognised_on_the_envelope_identifiers(vans_stack: Stack) -> None:
    stack = vans_stack
    accepted = await silent_referral(stack, "0707505123")
    bundle = json.loads(appointment(accepted["id"], cpr="0707505123"))
    header_id = bundle["entry"][0]["resource"]["id"]
    first = envelope_of(bundle)
    answered = await post_envelope(stack, first)
    assert answered.status_code == 200
    # The same envelope again, to another API process on the same store (as after a restart):
    # the first receipt, word for word; the message is not stored twice.
    async with another_api(stack) as url:
        again = await post_envelope(stack, first, url=url)
    assert again.status_code == 200 and again.content == answered.content
    assert len(stored(stack, header_id)) == 1
    # The message under a new envelope identifier (MedCom: its receipt was lost): the original receipt.
    resend = dict(bundle, id=str(uuid.uuid4()))
    lost = await post_envelope(stack, envelope_of(resend))
    assert lost.status_code == 200 and lost.content == answered.content
    assert len(stored(stack, header_id)) == 1
    # An envelope identifier reused for another message: refused, and kept for triage.
    other = json.loads(appointment(accepted["id"], cpr="0707505123"))
    first_id = parse_envelope(first).envelope_identifier
    reused = re.sub(
        rb"<EnvelopeIdentifier>[^<]+</EnvelopeIdentifier>",
        f"<EnvelopeIdentifier>{first_id}</EnvelopeIdentifier>".encode(),
        envelope_of(other),
    )
    refused = await post_envelope(stack, reused)
    assert refused.status_code == 409, refused.text
    negative = parse_envelope(refused.content)
    assert (negative.kind, negative.error_code) == (ReceiptKind.NEGATIVE_VANS, "envelope-reused")
    assert negative.original_envelope_identifier == first_id
    assert stored(stack, other["entry"][0]["resource"]["id"]) == []
    assert envelopes(stack)[-1].reason_code == "envelope-reused"
    await stack.client.get_workflow_handle(f"referral-{accepted['id']}").terminate("test finished")


# ----- bad envelopes ----------------------------------------------------------------------------------


def _not_xml(good: bytes) -> bytes:
    return b"this is { not xml"


def _bad_base64(good: bytes) -> bytes:
    return re.sub(rb"<Data>[^<]+</Data>", b"<Data>!!not*base64??</Data>", good)


def _mime_not_fhir(good: bytes) -> bytes:
    return good.replace(b">application/fhir+json<", b">application/pdf<")


def _doctype(good: bytes) -> bytes:
    return good.replace(b"?>", b'?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>', 1)


def _over_the_limit(good: bytes) -> bytes:
    padding = base64.b64encode(b" " * 6000)
    return good.replace(b"<Data>", b"<Data>" + padding, 1)


@pytest.mark.parametrize(
    ("spoil", "status", "code"),
    [
        (_not_xml, 400, "envelope-not-xml"),
        (_bad_base64, 400, "envelope-bad-base64"),
        (_mime_not_fhir, 415, "envelope-mime-not-fhir"),
        (_doctype, 400, "envelope-doctype"),
        (_over_the_limit, 413, "envelope-too-large"),
    ],
    ids=["not-xml", "bad-base64", "mime-not-fhir", "doctype", "over-the-size-limit"],
)
async def test_a_bad_envelope_gets_a_clear_4xx_and_is_kept_for_triage(
    vans_stack: Stack, spoil, status: int, code: str
) -> None:  # noqa: ANN001
    stack = vans_stack
    good = envelope_of(appointment(str(uuid.uuid4())))
    bad = spoil(good)
    async with another_api(stack, max_envelope_bytes=len(good) + 1000) as url:
        response = await post_envelope(stack, bad, url=url)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and code in outcome["issue"][0]["diagnostics"]
    kept = envelopes(stack)[-1]
    assert (kept.status, kept.reason_code, kept.answer_status, kept.partner_sor) == (
        "refused",
        code,
        status,
        HOSPITAL.sor,
    )
    assert kept.size_bytes == len(bad)
    sealed = KeyRing.parse(stack.settings.codec_keys).decrypt_text(
        kept.body_enc, sealed_as(InboundEnvelope, "body_enc", kept.ref)
    )
    assert sealed.encode() == bad[: 64 * 1024], "kept (sealed) as received"
    listed = await stack.api.get("/triage/envelopes", headers=stack.headers(Role.COORDINATOR))
    assert listed.status_code == 200
    assert listed.json()[0]["id"] == kept.id and listed.json()[0]["reason_code"] == code
    assert "body_enc" not in listed.json()[0]


async def test_an_envelope_must_come_from_the_partner_and_be_for_careflow(vans_stack: Stack) -> None:
    stack = vans_stack
    good = envelope_of(appointment(str(uuid.uuid4())))
    as_another = await post_envelope(stack, good, sor="300000000000001")
    assert as_another.status_code == 403, as_another.text
    not_for_careflow = good.replace(GP.ean.encode(), b"5790030000013", 1)  # the lab's GLN
    assert (await post_envelope(stack, not_for_careflow)).status_code == 422
    assert [e.reason_code for e in envelopes(stack)[-2:]] == ["envelope-sender", "envelope-receiver"]


# ----- MedCom's receiver rules, over both transports ---------------------------------------------------


async def test_a_duplicate_gets_its_acknowledgement_sent_again(any_stack: Stack) -> None:
    stack = any_stack
    accepted = await silent_referral(stack, "0808505123")
    bundle = json.loads(appointment(accepted["id"], cpr="0808505123"))
    header_id = bundle["entry"][0]["resource"]["id"]
    first = await post_message(stack, json.dumps(bundle).encode())
    assert first.status_code in (200, 202), first.text
    await wait_for(lambda: _some(acknowledgements_of(stack, header_id)))
    # A resend (same MessageHeader.id, new Bundle.id): not stored again, its acknowledgement sent again.
    resend = dict(bundle, id=str(uuid.uuid4()))
    second = await post_message(stack, json.dumps(resend).encode())
    assert second.status_code == first.status_code
    acks = await wait_for(lambda: _at_least(2, acknowledgements_of(stack, header_id)))
    assert len(acks) == 2, "the simulated hospital received the acknowledgement twice"
    one, two = acks
    assert one["entry"][0]["resource"]["id"] == two["entry"][0]["resource"]["id"], "the same MessageHeader.id"
    assert one["id"] != two["id"], "MedCom: a resent acknowledgement gets a new envelope (Bundle) id"
    same = {k: v for k, v in one.items() if k not in ("id", "timestamp")}
    assert same == {k: v for k, v in two.items() if k not in ("id", "timestamp")}, "identical content"
    assert len(stored(stack, header_id)) == 1
    await stack.client.get_workflow_handle(f"referral-{accepted['id']}").terminate("test finished")


async def test_a_reused_bundle_id_is_refused(any_stack: Stack) -> None:
    """MedCom: a Bundle.id seen before with another MessageHeader.id is an error. careflow's VANS
    mapping makes the Bundle.id the EnvelopeIdentifier, so over VANS the envelope is refused first
    (EnvelopeIdentifier reused: a negative VANS receipt); a sender that numbers its envelopes apart
    reaches the FHIR rule, as $process-message does: 409, stored as rejected, fatal-error acknowledgement."""
    stack = any_stack
    accepted = await silent_referral(stack, "0909505123")
    first = json.loads(appointment(accepted["id"], cpr="0909505123"))
    assert (await post_message(stack, json.dumps(first).encode())).status_code in (200, 202)
    other = json.loads(appointment(accepted["id"], cpr="0909505123"))
    other["id"] = first["id"]  # another message (new MessageHeader.id) under the same Bundle.id
    header_id = other["entry"][0]["resource"]["id"]
    if stack.transport == "vans":
        at_transport = await post_envelope(stack, envelope_of(other))
        assert at_transport.status_code == 409
        assert parse_envelope(at_transport.content).kind is ReceiptKind.NEGATIVE_VANS
        assert stored(stack, header_id) == [] and envelopes(stack)[-1].reason_code == "envelope-reused"
        apart = re.sub(
            rb"<EnvelopeIdentifier>[^<]+</EnvelopeIdentifier>",
            f"<EnvelopeIdentifier>{uuid.uuid4()}</EnvelopeIdentifier>".encode(),
            envelope_of(other),
        )
        refused = await post_envelope(stack, apart)
        assert refused.status_code == 409, refused.text
        receipt = parse_envelope(refused.content)
        assert receipt.kind is ReceiptKind.NEGATIVE_MESSAGE and "never be reused" in receipt.error_description
    else:
        refused = await post_message(stack, json.dumps(other).encode())
        assert refused.status_code == 409, refused.text
        assert "never be reused" in refused.json()["issue"][0]["diagnostics"]
    (row,) = stored(stack, header_id)
    assert row.delivery_status == "rejected" and "never be reused" in row.status_reason
    (ack,) = await wait_for(lambda: _some(acknowledgements_of(stack, header_id)))
    header = ack["entry"][0]["resource"]
    assert header["response"]["code"] == "fatal-error"
    outcome = next(e["resource"] for e in ack["entry"] if e["resource"]["resourceType"] == "OperationOutcome")
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "MSG_DUPLICATE_ID"
    await stack.client.get_workflow_handle(f"referral-{accepted['id']}").terminate("test finished")


@pytest.mark.parametrize("transport", ["process-message", "vans"])
async def test_an_unreachable_store_answers_transient_so_the_sender_resends(stack: Stack, transport: str) -> None:
    """The database is down (here: a PostgreSQL address where nothing listens) before the message is
    stored: 503 with Retry-After and a `transient` OperationOutcome — never 2xx, nothing acknowledged."""
    body = appointment(str(uuid.uuid4()))
    header_id = json.loads(body)["entry"][0]["resource"]["id"]
    down = f"postgresql://careflow@127.0.0.1:{free_port()}/careflow"
    async with another_api(stack, database_url=down) as url, httpx.AsyncClient(timeout=30) as http:
        auth = {"Authorization": f"Bearer {token(stack.settings, Role.PARTNER, HOSPITAL.sor)}"}
        if transport == "vans":
            response = await http.post(
                f"{url}/vans/envelope", content=envelope_of(body), headers={**auth, "Content-Type": "application/xml"}
            )
        else:
            response = await http.post(
                f"{url}/fhir/$process-message",
                content=body,
                headers={**auth, "Content-Type": "application/fhir+json"},
            )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json()["issue"][0]["code"] == "transient"
    assert acknowledgements_of(stack, header_id) == []


async def test_temporal_down_the_message_is_still_stored_and_answered(stack: Stack) -> None:
    """Temporal unreachable does not stop careflow taking a message: it is stored first (the relay
    delivers it later), so 202 is the honest answer — the store, not Temporal, decides transient."""
    body = appointment(str(uuid.uuid4()))
    header_id = json.loads(body)["entry"][0]["resource"]["id"]
    async with (
        another_api(stack, temporal_address=f"127.0.0.1:{free_port()}") as url,
        httpx.AsyncClient(timeout=30) as http,
    ):
        response = await http.post(
            f"{url}/fhir/$process-message",
            content=body,
            headers={**stack.headers(Role.PARTNER, HOSPITAL.sor), "Content-Type": "application/fhir+json"},
        )
    assert response.status_code == 202, response.text
    assert len(stored(stack, header_id)) == 1


async def test_careflows_resend_is_a_new_envelope_for_the_same_message(vans_stack: Stack) -> None:
    """A resend keeps MessageHeader.id and gets a new Bundle.id: over VANS a new EnvelopeIdentifier
    with the same MetaInformation/Identifier, which the partner recognises (MedCom: the receipt was
    lost) and answers with its original receipt; the step still waits for the acknowledgement."""
    from workflows.models import ResendRequest
    from workflows.steps import PathwayWorkflow

    stack = vans_stack
    simulator = stack.simulator_app.state.simulator
    accepted = await silent_referral(stack, "1111505123")
    handle = stack.client.get_workflow_handle(f"referral-{accepted['id']}")
    before = simulator.stats().transport_duplicates.get("receipt-lost", 0)

    async def acknowledged() -> bool:
        flow = (await stack.api.get(f"/flows/{accepted['id']}", headers=stack.headers(Role.COORDINATOR))).json()
        return flow["step"] != "referral"

    await wait_for(acknowledged)  # a coordinator resends once the referral's own resend window is over
    await handle.execute_update(
        PathwayWorkflow.resend, ResendRequest(actor="test-coordinator", reason="the hospital lost it")
    )

    async def both_sent() -> list[dict] | None:
        flow = (await stack.api.get(f"/flows/{accepted['id']}", headers=stack.headers(Role.COORDINATOR))).json()
        out = [m for m in flow["messages"] if m["direction"] == "out"]
        return out if len(out) == 2 and all(m["transport_receipt"] for m in out) else None

    first, resend = await wait_for(both_sent)
    assert first["message_header_id"] == resend["message_header_id"]
    assert first["envelope_identifier"] != resend["envelope_identifier"]
    assert resend["transport_receipt"] == "PositiveMessage"
    assert simulator.stats().transport_duplicates.get("receipt-lost", 0) == before + 1
    await handle.terminate("test finished")
