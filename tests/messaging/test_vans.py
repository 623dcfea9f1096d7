"""The VANSEnvelope adapter: every MedCom example round-trips through the envelope (JSON and XML
payloads), each bad envelope is refused with its own error, transport receipts stay apart from
MedCom acknowledgements, and transport duplicates are told apart on the envelope identifiers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from messaging import Envelope, MessageKind, Organization, build_message, decode_body, parse_message
from messaging.transport import OutboundRequest, ProcessMessageTransport, Transport, VansTransport
from messaging.vans import (
    MAX_ENVELOPE_BYTES,
    VANS_NS,
    DocumentType,
    EnvelopeBadBase64,
    EnvelopeCache,
    EnvelopeDoctype,
    EnvelopeError,
    EnvelopeNotFhir,
    EnvelopeNotXml,
    EnvelopeStructure,
    EnvelopeTooLarge,
    NoVansDocumentType,
    ReceiptKind,
    TransportDuplicate,
    VansMessage,
    VansReceipt,
    as_vans_uuid,
    build_envelope,
    build_receipt,
    classify_envelope,
    document_type_for,
    parse_envelope,
)
from tests.messaging.test_builders import CONTENTS
from tests.messaging.test_examples import fhir_equal_form

SENT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SENDER_GLN, RECEIVER_GLN = "5790000209354", "5790001348120"
# for message types MedCom's catalogue has no VANS document type for: what partners would agree on
AGREED = DocumentType(name="MCM:AGREED#test", version="1.0")


def _envelope(bundle: dict, mime_type: str = "application/fhir+json", document: DocumentType | None = None) -> bytes:
    return build_envelope(
        bundle, sender_gln=SENDER_GLN, receiver_gln=RECEIVER_GLN, sent=SENT, mime_type=mime_type, document=document
    )


def _document_or_agreed(bundle: dict) -> DocumentType | None:
    try:
        document_type_for(bundle)
        return None
    except NoVansDocumentType:
        return AGREED


@pytest.mark.parametrize("mime_type", ["application/fhir+json", "application/fhir+xml"])
def test_every_example_round_trips_through_the_envelope(
    example_path: Path | None, medcom_examples: Path, mime_type: str
) -> None:
    original = json.loads(example_path.read_bytes())
    raw = _envelope(original, mime_type, _document_or_agreed(original))
    received = parse_envelope(raw)
    assert isinstance(received, VansMessage)
    back = decode_body(received.data, received.meta.mime_type)
    assert fhir_equal_form(back) == fhir_equal_form(original)
    # identifiers: envelope from Bundle.id (per transmission), message from MessageHeader.id (per message)
    assert received.envelope_identifier == as_vans_uuid(original["id"])
    assert received.meta.identifier == as_vans_uuid(original["entry"][0]["resource"]["id"])
    assert (received.sender.value, received.receiver.value, received.sent) == (SENDER_GLN, RECEIVER_GLN, SENT)
    assert received.meta.mime_type == mime_type and received.meta.transport_type == "reliable"
    assert received.meta.size_in_bytes == len(received.data)
    assert parse_message(received.data, mime_type).message_header_id == original["entry"][0]["resource"]["id"]


def test_envelope_layout_follows_the_schema(medcom_examples: Path) -> None:
    bundle = json.loads(next((medcom_examples / "hospitalnotification").glob("*.json")).read_bytes())
    root = etree.fromstring(_envelope(bundle))
    assert root.tag == f"{{{VANS_NS}}}VANSEnvelope"
    assert [etree.QName(c).localname for c in root] == [
        "SenderID",
        "ReceiverID",
        "EnvelopeIdentifier",
        "SentDateTime",
        "Message",
    ]
    assert root[0].get("EndPointType") == "EAN"
    meta = root.find(f"{{{VANS_NS}}}Message/{{{VANS_NS}}}MetaInformation")
    assert [etree.QName(c).localname for c in meta] == ["Identifier", "Document", "Transport"]
    tag = meta.find(f"{{{VANS_NS}}}Transport/{{{VANS_NS}}}ServiceTag")
    assert (tag.get("name"), tag.text) == ("MCM:MIME", "application/fhir+json")
    assert meta.findtext(f"{{{VANS_NS}}}Document/{{{VANS_NS}}}Format") == "HL7"


def test_document_types_follow_medcoms_statistical_codes(medcom_examples: Path) -> None:
    names = {}
    for path in sorted(medcom_examples.rglob("*.json")):
        bundle = json.loads(path.read_bytes())
        try:
            names[path.name] = document_type_for(bundle)
        except NoVansDocumentType:
            assert path.parent.name == "homecareobservation" or "empty-message" in path.read_text()
    by_name = {d.name for d in names.values()}
    assert {"MCM:FCTL#ok", "MCM:FCTL#fatal-error", "MCM:FCTL#transient-error"} <= by_name
    assert {
        "MCM:FDIS20#AdmissionInpatient",
        "MCM:FDIS20#AcuteAmbulant",
        "MCM:FDIS20#OnLeave",
        "MCM:FDIS20#EndOfLeave",
        "MCM:FDIS20#EndHospitalStay",
    } <= by_name
    assert "MCM:FDIS91#regarding-referral" in by_name
    versions = {d.name.split("#")[0]: d.version for d in names.values()}
    assert versions == {"MCM:FCTL": "2.0.0", "MCM:FDIS20": "3.0.0", "MCM:FDIS91": "5.0"}


def test_types_without_a_catalogue_entry_are_refused_unless_agreed(envelope: Envelope) -> None:
    referral = build_message(MessageKind.REFERRAL, envelope, CONTENTS[MessageKind.REFERRAL])
    with pytest.raises(NoVansDocumentType):
        _envelope(referral)
    assert parse_envelope(_envelope(referral, document=AGREED)).meta.document == AGREED


def test_a_resend_keeps_the_message_identifier_and_gets_a_new_envelope_identifier(envelope: Envelope) -> None:
    first = build_message(MessageKind.CARE_COMMUNICATION, envelope, CONTENTS[MessageKind.CARE_COMMUNICATION])
    resend = build_message(
        MessageKind.CARE_COMMUNICATION,
        envelope.model_copy(update={"bundle_id": "9d6f3a2b-1c4e-4f5a-8b7c-0d1e2f3a4b5c"}),
        CONTENTS[MessageKind.CARE_COMMUNICATION],
    )
    a, b = parse_envelope(_envelope(first)), parse_envelope(_envelope(resend))
    assert a.meta.identifier == b.meta.identifier
    assert a.envelope_identifier != b.envelope_identifier


def test_ids_that_are_not_uuids_map_to_stable_uuids() -> None:
    assert as_vans_uuid("A5E5B880-C087-4055-B9EC-99108695F81D") == "a5e5b880-c087-4055-b9ec-99108695f81d"
    derived = as_vans_uuid("ReceiveTestExample1-MessageHeader")
    assert (
        derived
        == as_vans_uuid("ReceiveTestExample1-MessageHeader")
        != as_vans_uuid("ReceiveTestExample2-MessageHeader")
    )
    assert len(derived) == 36


# --- bad envelopes ---------------------------------------------------------------------------------


@pytest.fixture
def good(envelope: Envelope) -> bytes:
    return _envelope(build_message(MessageKind.CARE_COMMUNICATION, envelope, CONTENTS[MessageKind.CARE_COMMUNICATION]))


def _replace_data(raw: bytes, data: str) -> bytes:
    root = etree.fromstring(raw)
    root.find(f"{{{VANS_NS}}}Message/{{{VANS_NS}}}Data").text = data
    return etree.tostring(root)


def _replace_mime(raw: bytes, mime: str | None) -> bytes:
    root = etree.fromstring(raw)
    tag = root.find(f".//{{{VANS_NS}}}ServiceTag")
    if mime is None:
        tag.getparent().remove(tag)
    else:
        tag.text = mime
    return etree.tostring(root)


@pytest.mark.parametrize(
    ("mutate", "error", "status"),
    [
        (lambda raw: b'{"resourceType": "Bundle"}', EnvelopeNotXml, 400),
        (lambda raw: raw[: len(raw) // 2], EnvelopeNotXml, 400),
        (
            lambda raw: (
                b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + raw.split(b"?>", 1)[1]
            ),
            EnvelopeDoctype,
            400,
        ),
        (lambda raw: raw.replace(VANS_NS.encode(), b"urn:example:other"), EnvelopeStructure, 400),
        (lambda raw: _replace_data(raw, "not base64 at all!"), EnvelopeBadBase64, 400),
        (lambda raw: _replace_data(raw, "QUJ"), EnvelopeBadBase64, 400),  # length not a multiple of 4
        (lambda raw: _replace_data(raw, ""), EnvelopeStructure, 400),
        (lambda raw: _replace_mime(raw, "application/pdf"), EnvelopeNotFhir, 415),
        (lambda raw: _replace_mime(raw, "application/json"), EnvelopeNotFhir, 415),
        (lambda raw: _replace_mime(raw, None), EnvelopeNotFhir, 415),
    ],
    ids=[
        "json-body",
        "truncated",
        "doctype",
        "wrong-namespace",
        "bad-base64",
        "bad-padding",
        "empty-data",
        "mime-pdf",
        "mime-plain-json",
        "mime-missing",
    ],
)
def test_bad_envelopes_are_refused_each_with_its_own_error(
    good: bytes, mutate, error: type[EnvelopeError], status: int
) -> None:  # noqa: ANN001
    with pytest.raises(error) as caught:
        parse_envelope(mutate(good))
    assert caught.value.status == status and caught.value.code.startswith("envelope-")
    assert "0101010000" not in str(caught.value)  # no patient data in the error text


def test_envelopes_over_the_size_limit_are_refused_before_parsing(good: bytes) -> None:
    assert MAX_ENVELOPE_BYTES == 100 * 1024 * 1024
    with pytest.raises(EnvelopeTooLarge) as caught:
        parse_envelope(good, max_bytes=len(good) - 1)
    assert caught.value.status == 413
    assert isinstance(parse_envelope(good, max_bytes=len(good)), VansMessage)


def test_error_types_are_distinct() -> None:
    kinds = [EnvelopeNotXml, EnvelopeDoctype, EnvelopeStructure, EnvelopeBadBase64, EnvelopeNotFhir, EnvelopeTooLarge]
    assert len({k.code for k in kinds}) == len(kinds)
    assert all(issubclass(k, EnvelopeError) for k in kinds)


# --- transport receipt vs MedCom acknowledgement -------------------------------------------------


def test_positive_receipt_answers_the_envelope_not_the_message(good: bytes) -> None:
    received = parse_envelope(good)
    raw = build_receipt(received, envelope_identifier="4b5a0a1e-7a53-4f7e-9d0e-4a8f2c6d1e55", sent=SENT)
    receipt = parse_envelope(raw)
    assert isinstance(receipt, VansReceipt)
    assert receipt.kind is ReceiptKind.POSITIVE
    assert (receipt.sender, receipt.receiver) == (received.receiver, received.sender)
    assert receipt.original_envelope_identifier == received.envelope_identifier
    assert receipt.original == received.meta
    # it carries no FHIR at all: a pathway step cannot mistake it for a MedCom Acknowledgement
    assert b"<Data>" not in raw and b"acknowledgement-message" not in raw


def test_negative_receipt_carries_its_error(good: bytes) -> None:
    received = parse_envelope(good)
    raw = build_receipt(
        received,
        envelope_identifier="4b5a0a1e-7a53-4f7e-9d0e-4a8f2c6d1e56",
        sent=SENT,
        kind=ReceiptKind.NEGATIVE_MESSAGE,
        error_code="E1",
        error_description="envelope identifier reused",
    )
    receipt = parse_envelope(raw)
    assert (receipt.kind, receipt.error_code, receipt.error_description, receipt.original) == (
        ReceiptKind.NEGATIVE_MESSAGE,
        "E1",
        "envelope identifier reused",
        None,
    )


# --- transport duplicates --------------------------------------------------------------------------

E1, E2, M1, M2 = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 5))


@pytest.mark.parametrize(
    ("envelope_id", "message_id", "message_of_envelope", "message_seen", "expected"),
    [
        (E1, M1, None, False, TransportDuplicate.NEW),
        (E1, M1, M1, True, TransportDuplicate.REPEATED),
        (E2, M1, None, True, TransportDuplicate.RECEIPT_LOST),
        (E1, M2, M1, False, TransportDuplicate.ENVELOPE_REUSED),
    ],
)
def test_classify_envelope_by_medcoms_four_cases(
    envelope_id: str, message_id: str, message_of_envelope: str | None, message_seen: bool, expected: TransportDuplicate
) -> None:
    assert (
        classify_envelope(envelope_id, message_id, message_of_envelope=message_of_envelope, message_seen=message_seen)
        is expected
    )


def test_envelope_cache_detects_duplicates_of_real_envelopes(envelope: Envelope) -> None:
    bundle = build_message(MessageKind.CARE_COMMUNICATION, envelope, CONTENTS[MessageKind.CARE_COMMUNICATION])
    resend = {**bundle, "id": "9d6f3a2b-1c4e-4f5a-8b7c-0d1e2f3a4b5c"}  # same MessageHeader.id, new Bundle.id
    cache = EnvelopeCache()
    first = parse_envelope(_envelope(bundle))
    assert cache.receive(first) is TransportDuplicate.NEW
    assert cache.receive(parse_envelope(_envelope(bundle))) is TransportDuplicate.REPEATED
    assert cache.receive(parse_envelope(_envelope(resend))) is TransportDuplicate.RECEIPT_LOST
    other = build_message(
        MessageKind.CARE_COMMUNICATION,
        envelope.model_copy(update={"message_header_id": M2}),
        CONTENTS[MessageKind.CARE_COMMUNICATION],
    )
    assert cache.receive(parse_envelope(_envelope(other))) is TransportDuplicate.ENVELOPE_REUSED


# --- the transport port ----------------------------------------------------------------------------

GP = Organization(sor="100000000000001", ean=SENDER_GLN, name="GP")
HOSPITAL = Organization(sor="200000000000001", ean=RECEIVER_GLN, name="Hospital")


@pytest.mark.parametrize(
    "transport",
    [
        ProcessMessageTransport(),
        ProcessMessageTransport("application/fhir+xml"),
        VansTransport(),
        VansTransport("application/fhir+xml"),
    ],
    ids=["http-json", "http-xml", "vans-json", "vans-xml"],
)
def test_each_transport_prepares_a_request_the_receiver_can_read(transport: Transport, envelope: Envelope) -> None:
    bundle = build_message(MessageKind.CARE_COMMUNICATION, envelope, CONTENTS[MessageKind.CARE_COMMUNICATION])
    request = transport.prepare(
        bundle, endpoint="http://127.0.0.1:9/fhir/$process-message", sender=GP, receiver=HOSPITAL, sent=SENT
    )
    assert isinstance(request, OutboundRequest)
    assert request.url.endswith("$process-message")
    content_type = request.headers["Content-Type"]
    if isinstance(transport, VansTransport):
        assert content_type == "application/xml"
        received = parse_envelope(request.body)
        assert (received.sender.value, received.receiver.value) == (GP.ean, HOSPITAL.ean)
        payload, payload_type = received.data, received.meta.mime_type
    else:
        payload, payload_type = request.body, content_type
    assert parse_message(payload, payload_type).message_header_id == envelope.message_header_id
    assert fhir_equal_form(decode_body(payload, payload_type)) == fhir_equal_form(bundle)


def test_transports_refuse_non_fhir_formats() -> None:
    with pytest.raises(ValueError):
        ProcessMessageTransport("application/pdf")
    with pytest.raises(ValueError):
        VansTransport("text/plain")
