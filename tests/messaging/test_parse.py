"""parse_message: media types, correlation ids, errors that carry issues and no patient data."""

from __future__ import annotations

import json
from datetime import UTC

import pytest

from messaging import (
    Envelope,
    MessageError,
    MessageKind,
    ReferralContent,
    build_message,
    parse_message,
    to_json,
    to_xml,
)
from tests.messaging.conftest import SYNTHETIC_CPR

PATHWAY = "0d9c8b7a-6f5e-4d3c-8b2a-190817161514"


@pytest.fixture
def referral(envelope: Envelope) -> dict:
    return build_message(MessageKind.REFERRAL, envelope, ReferralContent(service_request_id=PATHWAY, reason="test"))


@pytest.mark.parametrize(
    "content_type",
    [
        "application/fhir+json",
        "application/json",
        "application/fhir+json; charset=utf-8",
        "APPLICATION/FHIR+JSON;fhirVersion=4.0",
        "",
        "text/plain",
    ],
)
def test_json_media_types(referral: dict, content_type: str) -> None:
    assert parse_message(to_json(referral), content_type).service_request_id == PATHWAY


@pytest.mark.parametrize(
    "content_type",
    ["application/fhir+xml", "application/xml", "text/xml; charset=utf-8", "", "application/octet-stream"],
)
def test_xml_media_types(referral: dict, content_type: str) -> None:
    assert parse_message(to_xml(referral), content_type).service_request_id == PATHWAY


def test_str_and_dict_bodies(referral: dict) -> None:
    assert parse_message(json.dumps(referral)) == parse_message(referral) == parse_message(to_json(referral))


def test_unknown_event_code_gives_no_kind(referral: dict) -> None:
    referral["entry"][0]["resource"]["eventCoding"]["code"] = "something-else"
    parsed = parse_message(referral)
    assert parsed.kind is None and parsed.event_code == "something-else"


@pytest.mark.parametrize(
    "body, content_type, rule",
    [
        (b"{not json", "application/fhir+json", "syntax"),
        (b"<Bundle", "application/fhir+xml", "syntax"),
        (b"[1, 2]", "application/fhir+json", "bundle-type"),
        (json.dumps({"resourceType": "Patient", "id": "x"}).encode(), "application/fhir+json", "bundle-type"),
        (b'<Patient xmlns="http://hl7.org/fhir"><id value="x"/></Patient>', "application/fhir+xml", "bundle-type"),
        (
            json.dumps({"resourceType": "Bundle", "type": "message", "entry": []}).encode(),
            "application/fhir+json",
            "header-first",
        ),
    ],
)
def test_unreadable_messages_raise_with_issues(body: bytes, content_type: str, rule: str) -> None:
    with pytest.raises(MessageError) as caught:
        parse_message(body, content_type)
    assert isinstance(caught.value, ValueError)
    assert [i.rule for i in caught.value.issues] == [rule]


def test_errors_never_quote_patient_data(referral: dict) -> None:
    del referral["entry"][0]["resource"]["id"]
    with pytest.raises(MessageError) as caught:
        parse_message(referral)
    text = str(caught.value) + repr(caught.value.issues)
    assert SYNTHETIC_CPR not in text
    xml = to_xml(build_message_with_bad_birthdate())
    with pytest.raises(MessageError) as caught:
        parse_message(xml.replace(b"1901-01-01", b"1901-13-45"), "application/fhir+xml")
    assert "1901-13-45" not in str(caught.value) + repr(caught.value.issues)


def build_message_with_bad_birthdate() -> dict:
    from datetime import datetime

    from messaging import Organization, PatientData

    envelope = Envelope(
        message_header_id="h1",
        bundle_id="b1",
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        sender=Organization(sor="100000000000001", ean="5790000209354", name="a"),
        receiver=Organization(sor="200000000000001", ean="5790001348120", name="b"),
        patient=PatientData(cpr=SYNTHETIC_CPR),
    )
    bundle = build_message(MessageKind.REFERRAL, envelope, ReferralContent(service_request_id=PATHWAY, reason="x"))
    bundle["entry"][1]["resource"]["birthDate"] = "1901-01-01"
    return bundle


def test_correlation_through_based_on(envelope: Envelope) -> None:
    from messaging import AppointmentContent
    from tests.messaging.conftest import TIMESTAMP

    appointment = build_message(
        MessageKind.APPOINTMENT, envelope, AppointmentContent(service_request_id=PATHWAY, start=TIMESTAMP)
    )
    assert parse_message(appointment).service_request_id == PATHWAY
