"""MedCom's draft referral model: the referral (new, update, cancel), the triage Task (accept, reject,
forward, reprioritise) and the booking, each built, validated and read back in JSON and XML."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from messaging import build_message, parse_message, to_xml, validate_message
from messaging import referral_draft as draft
from messaging.directory import Directory
from messaging.model import Envelope
from messaging.terminology import CAREFLOW_EVENT_SYSTEM, MEDCOM_CS_BASE
from messaging.types import MESSAGE_TYPES
from messaging.types.care_communication import CareCommunicationContent
from tests.messaging.conftest import TIMESTAMP

PATHWAY = "3f2e1d0c-9b8a-4765-8432-10fedcba9876"
FORWARDED = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
SECOND_HOSPITAL = "200000000000003"
DRAFT_TYPES = (draft.NEW_REFERRAL, draft.UPDATE_REFERRAL, draft.CANCEL_REFERRAL, draft.TRIAGE, draft.BOOKING)


def reply_envelope(envelope: Envelope) -> Envelope:
    return envelope.model_copy(
        update={"sender": envelope.receiver, "receiver": envelope.sender, "previous_header_id": "prev-header"}
    )


def both_ways(bundle: dict) -> list:
    return [parse_message(bundle), parse_message(to_xml(bundle), "application/fhir+xml")]


def test_draft_codes_live_in_careflows_code_system_never_medcoms() -> None:
    for code in DRAFT_TYPES:
        system = MESSAGE_TYPES.get(code).system
        assert system == CAREFLOW_EVENT_SYSTEM and not system.startswith(MEDCOM_CS_BASE)
    assert not draft.TRIAGE_DECISION_SYSTEM.startswith("http://medcomfhir.dk")


@pytest.mark.parametrize("code", [draft.NEW_REFERRAL, draft.UPDATE_REFERRAL])
def test_new_and_updated_referral(code: str, envelope: Envelope) -> None:
    content = draft.ReferralRequestContent(
        service_request_id=PATHWAY, reason="Knude i bryst", priority="urgent", track="cancer", note="Ny CT vedlagt"
    )
    bundle = build_message(code, envelope, content)
    assert validate_message(bundle) == []
    request = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    assert (request["status"], request["priority"], request["category"][0]["text"]) == (
        "active",
        "urgent",
        "kræftpakkeforløb",
    )
    header = bundle["entry"][0]["resource"]
    assert header["eventCoding"] == {"system": CAREFLOW_EVENT_SYSTEM, "code": code}
    for parsed in both_ways(bundle):
        assert (parsed.kind, parsed.service_request_id) == (code, PATHWAY)


def test_cancelled_referral_is_revoked_and_a_live_one_is_refused(envelope: Envelope) -> None:
    bundle = build_message(draft.CANCEL_REFERRAL, envelope, draft.CancelReferralContent(service_request_id=PATHWAY))
    assert validate_message(bundle) == []
    assert bundle["entry"][2]["resource"]["status"] == "revoked"
    broken = copy.deepcopy(bundle)
    broken["entry"][2]["resource"]["status"] = "active"
    assert [i.rule for i in validate_message(broken)] == ["cancel-referral-request"]


@pytest.mark.parametrize(
    ("decision", "status", "priority"),
    [
        (draft.Decision.ACCEPT, "accepted", None),
        (draft.Decision.REJECT, "rejected", None),
        (draft.Decision.REPRIORITISE, "completed", "urgent"),
    ],
)
def test_triage_decision_is_a_task_about_the_referral(
    decision: draft.Decision, status: str, priority: str | None, envelope: Envelope
) -> None:
    content = draft.TriageContent(
        service_request_id=PATHWAY, decision=decision, reason="Ikke relevant for afdelingen", priority=priority
    )
    bundle = build_message(draft.TRIAGE, reply_envelope(envelope), content)
    assert validate_message(bundle) == []
    task = bundle["entry"][2]["resource"]
    assert (task["resourceType"], task["status"], task["code"]["coding"][0]["code"]) == ("Task", status, decision)
    for parsed in both_ways(bundle):
        assert (parsed.service_request_id, parsed.correlation.outcome, parsed.correlation.forward_to) == (
            PATHWAY,
            decision.value,
            None,
        )
    summary = parse_message(bundle).correlation.summary
    assert summary.startswith(draft.DECISION_WORDS[decision])
    assert ("Ikke relevant" in summary) == (decision is draft.Decision.REJECT)


def test_forward_carries_the_replacing_service_request_and_the_new_receiver(
    envelope: Envelope, directory: Directory
) -> None:
    content = draft.TriageContent(
        service_request_id=PATHWAY,
        decision=draft.Decision.FORWARD,
        reason="Hører under anden afdeling",
        forward_to=directory.get(SECOND_HOSPITAL).organization,
        forwarded_request_id=FORWARDED,
    )
    bundle = build_message(draft.TRIAGE, reply_envelope(envelope), content)
    assert validate_message(bundle) == []
    replacement = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "ServiceRequest"
        and e["resource"]["identifier"][0]["value"].endswith(FORWARDED)
    )
    assert replacement["replaces"][0]["identifier"]["value"] == f"urn:uuid:{PATHWAY}"
    for parsed in both_ways(bundle):
        # correlated to the pathway's referral, not to the ServiceRequest that replaces it
        assert parsed.service_request_id == PATHWAY
        assert (parsed.correlation.outcome, parsed.correlation.forward_to) == ("videresendelse", SECOND_HOSPITAL)
    # a forward without its replacing ServiceRequest is refused, and cannot be built
    broken = copy.deepcopy(bundle)
    del broken["entry"][2]["resource"]["output"]
    assert "triage-forward" in [i.rule for i in validate_message(broken)]
    with pytest.raises(ValueError, match="new receiver"):
        draft.build_triage(None, draft.TriageContent(service_request_id=PATHWAY, decision="videresendelse"))  # type: ignore[arg-type]


def test_triage_with_a_decision_or_status_the_draft_does_not_know_is_refused(envelope: Envelope) -> None:
    bundle = build_message(
        draft.TRIAGE,
        reply_envelope(envelope),
        draft.TriageContent(service_request_id=PATHWAY, decision=draft.Decision.ACCEPT),
    )
    wrong_status = copy.deepcopy(bundle)
    wrong_status["entry"][2]["resource"]["status"] = "completed"
    assert [i.rule for i in validate_message(wrong_status)] == ["triage-status"]
    unknown = copy.deepcopy(bundle)
    unknown["entry"][2]["resource"]["code"]["coding"][0]["code"] = "forwarded"
    assert [i.rule for i in validate_message(unknown)] == ["triage-decision"]


def test_booking_and_its_rescheduling(envelope: Envelope) -> None:
    first = draft.BookingContent(
        service_request_id=PATHWAY,
        appointment_id="a1",
        start=TIMESTAMP + timedelta(days=5),
        description="Forundersøgelse",
    )
    bundle = build_message(draft.BOOKING, reply_envelope(envelope), first)
    assert validate_message(bundle) == []
    parsed = parse_message(bundle)
    assert parsed.service_request_id == PATHWAY and parsed.correlation.summary == "booked for 2025-03-09T10:30"
    moved = first.model_copy(
        update={"appointment_id": "a2", "start": TIMESTAMP + timedelta(days=9), "replaces_appointment_id": "a1"}
    )
    bundle = build_message(draft.BOOKING, reply_envelope(envelope), moved)
    assert validate_message(bundle) == []
    appointments = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment"]
    assert [(a["status"], a["identifier"][0]["value"]) for a in appointments] == [
        ("booked", "urn:uuid:a2"),
        ("cancelled", "urn:uuid:a1"),
    ]
    for parsed in both_ways(bundle):
        assert parsed.service_request_id == PATHWAY
        assert parsed.correlation.summary == "rescheduled, booked for 2025-03-13T10:30"


def test_regarding_referral_question_carries_a_priority_no_other_category_may(envelope: Envelope) -> None:
    question = CareCommunicationContent(
        communication_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
        text="Er patienten fastende?",
        category="regarding-referral",
        priority="asap",
        service_request_id=PATHWAY,
    )
    bundle = build_message("care-communication-message", envelope, question)
    assert validate_message(bundle) == []
    communication = bundle["entry"][2]["resource"]
    assert communication["priority"] == "asap"
    with pytest.raises(ValueError, match="regarding-referral"):
        build_message("care-communication-message", envelope, question.model_copy(update={"category": "other"}))
    broken = copy.deepcopy(bundle)
    broken["entry"][2]["resource"]["category"][0]["coding"][0]["code"] = "medicine"
    assert [i.rule for i in validate_message(broken)] == ["care-communication-priority"]
