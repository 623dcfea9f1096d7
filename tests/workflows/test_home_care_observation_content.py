"""The home-care observation pathway's content builders: each version of the report as the pathway
sends it, built from the input and the reported events, and what the simulated GP makes of each."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from messaging import Envelope, build_message, parse_message, validate_message
from messaging.bundle import resources
from messaging.model import MessageKind, Organization, PatientData
from simulator.app import revises_earlier, sample_content
from workflows.declare import SendContext
from workflows.home_care_observation import (
    DEMO_ACUTE_TEAM,
    DEMO_VISITING_GP,
    HomeCareObservationInput,
    example_input,
    modified_content,
    observation_content,
    refuse_modification,
    refuse_retraction,
    retracted_content,
)
from workflows.models import EventReport, OutboundState, PathwayInput

KIND = MessageKind.HOMECARE_OBSERVATION.value
SENT_AT = datetime(2026, 1, 15, 9, 45, tzinfo=UTC)
TEAM = Organization(sor=DEMO_ACUTE_TEAM, ean="5790040000027", name="Demo Kommune Akutteam")
GP = Organization(sor=DEMO_VISITING_GP, ean="5790010000026", name="Lægehuset Vesterbro (simulated GP)")


def Context(  # noqa: N802 - reads like the SendContext it makes
    given: PathwayInput, event: dict[str, Any], sent: tuple[OutboundState, ...] = (), reported: tuple = ()
) -> SendContext:
    """What the engine hands an OnEvent's content builder and its refusal."""
    return SendContext(input=given, event=event, sent=sent, received=(), reported=reported, now=SENT_AT)


def pathway_input() -> PathwayInput:
    start = HomeCareObservationInput.model_validate(example_input(random.Random(7)))
    return PathwayInput(
        flow_id=str(uuid.uuid4()),
        pathway="home-care-observation",
        patient=start.patient.data(),
        parties={"team": TEAM, "gp": GP},
        data=start.model_dump(mode="json", exclude={"patient"}),
    )


def sent(step: str, minutes: int, ack: str | None = "ok") -> OutboundState:
    return OutboundState(
        step=step,
        kind=KIND,
        message_header_id=str(uuid.uuid4()),
        first_sent_at=SENT_AT + timedelta(minutes=minutes),
        receiver_sor=GP.sor,
        ack_code=ack,
    )


def built(content: object, header_id: str, patient: PatientData) -> dict:
    envelope = Envelope(
        message_header_id=header_id,
        bundle_id=str(uuid.uuid4()),
        timestamp=SENT_AT,
        sender=TEAM,
        receiver=GP,
        patient=patient,
        pathway="home-care-observation",
    )
    return build_message(KIND, envelope, content)


CORRECTION = {
    "observations": [{"code": "NPU08676", "value": 39.1, "unit": "°C"}],
    "conclusion": "Temperatur målt igen: 39,1.",
}


def test_the_first_version_is_the_input_as_a_valid_report() -> None:
    given = pathway_input()
    content = observation_content(given)
    assert content.activity == "new-message" and content.report_id == given.flow_id
    assert content.gp_initials == given.data["gp_initials"] and len(content.observations) == 4
    assert validate_message(built(content, str(uuid.uuid4()), given.patient)) == []


def test_a_modification_revises_the_latest_version_and_carries_the_history() -> None:
    given = pathway_input()
    first, second = sent("observation", 0), sent("modified", 10)
    content = modified_content(Context(given, CORRECTION, (first, second)))
    assert content.activity == "modified-message"
    assert content.replaces_header_id == second.message_header_id
    assert [(h.message_header_id, h.activity, h.previous_header_id) for h in content.history] == [
        (first.message_header_id, "new-message", None),
        (second.message_header_id, "modified-message", first.message_header_id),
    ]
    assert [m.value for m in content.observations] == [39.1]
    bundle = built(content, str(uuid.uuid4()), given.patient)
    assert validate_message(bundle) == []
    assert len(list(resources(bundle, "Provenance"))) == 3


def test_a_retraction_removes_the_latest_version_with_its_reason() -> None:
    given = pathway_input()
    first = sent("observation", 0)
    content = retracted_content(Context(given, {"reason": "Sendt på forkert CPR-nummer"}, (first,)))
    assert content.activity == "retract-message" and content.replaces_header_id == first.message_header_id
    assert content.conclusion == "Sendt på forkert CPR-nummer"
    bundle = built(content, str(uuid.uuid4()), given.patient)
    assert validate_message(bundle) == []
    own = [p for _, p in resources(bundle, "Provenance") if p.get("entity")]
    assert own[0]["entity"] == [{"role": "removal", "what": {"reference": f"MessageHeader/{first.message_header_id}"}}]


def test_reports_that_cannot_be_sent_are_refused_with_a_reason() -> None:
    given = pathway_input()
    first = sent("observation", 0)
    assert refuse_modification(Context(given, CORRECTION, ())) == "the observation has not been sent yet"
    assert refuse_modification(Context(given, CORRECTION, (first,))) is None
    assert "observations" in refuse_modification(Context(given, {"conclusion": "x"}, (first,)))
    assert "12 characters" in refuse_modification(
        Context(given, {"observations": [{"code": "NPU08676", "value": 38.123456789012}]}, (first,))
    )
    assert "reason" in refuse_retraction(Context(given, {}, (first,)))
    retracted = (first, sent("retracted", 5, ack=None))
    assert refuse_modification(Context(given, CORRECTION, retracted)) == "the report has been retracted"
    assert refuse_retraction(Context(given, {"reason": "igen"}, retracted)) == "the report has been retracted"
    # a retraction reported but not yet sent already closes the report to corrections
    queued = (EventReport(event="cancel", actor="team", role="clinician", data={"reason": "forkert CPR"}),)
    assert refuse_modification(Context(given, CORRECTION, (first,), queued)) == "the report has been retracted"


def test_a_retraction_after_a_correction_restates_the_corrected_report() -> None:
    given = pathway_input()
    first, second = sent("observation", 0), sent("modified", 10)
    corrected = (EventReport(event="modify", actor="team", role="clinician", data=CORRECTION),)
    content = retracted_content(Context(given, {"reason": "Forkert patient"}, (first, second), corrected))
    assert [m.value for m in content.observations] == [39.1]
    assert content.conclusion == "Forkert patient" and content.replaces_header_id == second.message_header_id


def test_the_simulated_gp_answers_the_report_but_not_its_later_versions() -> None:
    given = pathway_input()
    first = sent("observation", 0)
    new = parse_message(built(observation_content(given), first.message_header_id, given.patient))
    modified = parse_message(built(modified_content(Context(given, CORRECTION, (first,))), "m", given.patient))
    retracted = parse_message(built(retracted_content(Context(given, {"reason": "x"}, (first,))), "r", given.patient))
    assert [revises_earlier(m) for m in (new, modified, retracted)] == [False, True, True]
    answer = sample_content(MessageKind.CARE_COMMUNICATION.value, "", answering=KIND)
    assert answer.category == "examination-results" and answer.service_request_id is None
    assert sample_content(MessageKind.CARE_COMMUNICATION.value, "x").category == "other"


def test_a_visit_time_without_its_offset_is_refused() -> None:
    """A naive time would be read as UTC: an hour or two off in Denmark. The API answers 422."""
    body = example_input(random.Random(3)) | {"visit_at": "2026-01-15T09:30:00"}
    with pytest.raises(ValidationError, match="timezone"):
        HomeCareObservationInput.model_validate(body)
