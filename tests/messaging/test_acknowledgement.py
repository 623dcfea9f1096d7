"""Acknowledgement rules: parties swapped, response.identifier, two Provenances, error codes,
best effort on broken originals, and never an acknowledgement of an acknowledgement."""

from __future__ import annotations

import copy

import pytest

from messaging import (
    AckCode,
    Envelope,
    MessageError,
    MessageKind,
    ReferralContent,
    ValidationIssue,
    build_acknowledgement,
    build_message,
    needs_acknowledgement,
    parse_message,
    validate_message,
)
from messaging.terminology import HL7_OPERATION_OUTCOME_SYSTEM, MEDCOM_ERROR_SYSTEM
from tests.messaging.conftest import TIMESTAMP

ACK_HEADER, ACK_BUNDLE = "d3b07384-d113-4ec6-a7b5-2e5c1f0b6a11", "c157a790-0b8e-4a7b-9a1d-3b7c2f5e8d12"


@pytest.fixture
def referral(envelope: Envelope) -> dict:
    return build_message(
        MessageKind.REFERRAL,
        envelope,
        ReferralContent(service_request_id="ab12cd34-0000-4000-8000-000000000001", reason="test"),
    )


def ack_of(original: dict, code: AckCode = AckCode.OK, **kw) -> dict:  # noqa: ANN003
    return build_acknowledgement(
        original, code=code, message_header_id=ACK_HEADER, bundle_id=ACK_BUNDLE, timestamp=TIMESTAMP, **kw
    )


def types(bundle: dict) -> list[str]:
    return [e["resource"]["resourceType"] for e in bundle["entry"]]


def test_ok_ack_answers_the_original(referral: dict, envelope: Envelope) -> None:
    ack = ack_of(referral)
    assert validate_message(ack) == []
    parsed = parse_message(ack)
    assert parsed.kind == MessageKind.ACKNOWLEDGEMENT
    assert (parsed.message_header_id, parsed.bundle_id) == (ACK_HEADER, ACK_BUNDLE)
    assert parsed.response_identifier == envelope.message_header_id
    assert parsed.response_code is AckCode.OK
    assert parsed.sender == envelope.receiver and parsed.receiver == envelope.sender
    assert parsed.patient is None and "Patient" not in types(ack) and "OperationOutcome" not in types(ack)


def test_ack_carries_exactly_two_provenances(referral: dict, envelope: Envelope) -> None:
    links = parse_message(ack_of(referral)).provenance
    assert [(p.activity, p.target_header_id, p.previous_header_id) for p in links] == [
        ("new-message", envelope.message_header_id, None),
        ("acknowledgement", ACK_HEADER, envelope.message_header_id),
    ]


def test_ack_of_a_reply_keeps_only_the_latest_provenance(medcom_examples) -> None:  # noqa: ANN001
    import json

    original = json.loads(
        (medcom_examples / "carecommunication/Bundle-d11968f5-4bdf-4b50-b146-a8e1cc890fc3.json").read_text()
    )
    ack = ack_of(original)
    assert validate_message(ack) == []
    links = parse_message(ack).provenance
    assert len(links) == 2 and links[0].target_header_id == original["entry"][0]["resource"]["id"]
    assert links[0].activity == "forward-message"


@pytest.mark.parametrize("code", [AckCode.FATAL_ERROR, AckCode.TRANSIENT_ERROR])
def test_not_ok_ack_carries_an_operation_outcome(referral: dict, code: AckCode) -> None:
    issues = [
        ValidationIssue(
            rule="patient-cpr", path="Bundle.entry[1].resource.identifier[0].value", message="CPR malformed"
        ),
        ValidationIssue(rule="x", path="Bundle", message="duplicate", error_code="MSG_DUPLICATE_ID"),
    ]
    ack = ack_of(referral, code, issues=issues)
    assert validate_message(ack) == []
    outcome = next(e["resource"] for e in ack["entry"] if e["resource"]["resourceType"] == "OperationOutcome")
    header = ack["entry"][0]["resource"]
    assert header["response"]["code"] == code.value
    assert header["response"]["details"]["reference"] == f"OperationOutcome/{outcome['id']}"
    assert [i["details"]["coding"][0] for i in outcome["issue"]] == [
        {"system": MEDCOM_ERROR_SYSTEM, "code": "MSG_Datatype_Wrong"},
        {"system": HL7_OPERATION_OUTCOME_SYSTEM, "code": "MSG_DUPLICATE_ID"},
    ]
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource.identifier[0].value"]


def test_not_ok_ack_without_issues_still_has_an_error_code(referral: dict) -> None:
    ack = ack_of(referral, AckCode.TRANSIENT_ERROR)
    outcome = ack["entry"][-1]["resource"]
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "MSG_Mailbox_Out_Of_Operation"


def test_best_effort_on_a_broken_original(referral: dict, envelope: Envelope) -> None:
    broken = copy.deepcopy(referral)
    broken["entry"] = [
        e for e in broken["entry"] if e["resource"]["resourceType"] not in ("Organization", "Provenance")
    ]
    ack = ack_of(broken, AckCode.FATAL_ERROR, sender=envelope.receiver, receiver=envelope.sender)
    assert validate_message(ack) == []
    assert len(parse_message(ack).provenance) == 2
    # without the parties it still answers, though the answer cannot be valid
    unaddressed = ack_of(broken, AckCode.FATAL_ERROR)
    assert parse_message(unaddressed).response_identifier == envelope.message_header_id


def test_no_header_id_means_nothing_to_acknowledge(referral: dict) -> None:
    broken = copy.deepcopy(referral)
    del broken["entry"][0]["resource"]["id"]
    with pytest.raises(MessageError):
        ack_of(broken)
    with pytest.raises(MessageError):
        ack_of({"resourceType": "Bundle"})


def test_acknowledgements_are_never_acknowledged(referral: dict) -> None:
    assert needs_acknowledgement(parse_message(referral))
    assert not needs_acknowledgement(parse_message(ack_of(referral)))
    assert not needs_acknowledgement(parse_message(ack_of(referral, AckCode.FATAL_ERROR)))


@pytest.mark.parametrize("coding", [True, "new-message", 7, {"code": "new-message"}])
def test_ack_of_original_whose_activity_coding_is_not_a_list(referral: dict, coding: object) -> None:
    # Found by the corruption test: a boolean where Provenance.activity.coding belongs crashed the builder.
    broken = copy.deepcopy(referral)
    provenance = next(e["resource"] for e in broken["entry"] if e["resource"]["resourceType"] == "Provenance")
    provenance["activity"]["coding"] = coding
    ack = ack_of(broken, AckCode.FATAL_ERROR)
    assert validate_message(ack) == []
