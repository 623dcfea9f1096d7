"""Every builder's output is a valid message that parses back to the same domain values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from messaging import (
    AppointmentContent,
    CancellationContent,
    CareCommunicationContent,
    Envelope,
    HomeCareObservationContent,
    HospitalNotificationContent,
    MessageError,
    MessageKind,
    ObservationValue,
    ReferralContent,
    TreatmentPlanContent,
    build_message,
    from_xml,
    parse_message,
    to_json,
    to_xml,
    validate_message,
)
from messaging.model import TestResultContent as ResultContent  # aliased: pytest would collect Test*
from messaging.terminology import CAREFLOW_EVENT_SYSTEM, MEDCOM_EVENT_SYSTEM
from tests.messaging.conftest import SYNTHETIC_CPR, TIMESTAMP

PATHWAY = "5d1c0d3e-8f2b-4a6c-9e7d-1a2b3c4d5e6f"

CONTENTS: dict[MessageKind, BaseModel] = {
    MessageKind.REFERRAL: ReferralContent(
        service_request_id=PATHWAY, reason="Brystsmerter ved anstrengelse", priority="urgent"
    ),
    MessageKind.APPOINTMENT: AppointmentContent(
        service_request_id=PATHWAY,
        start=TIMESTAMP + timedelta(days=3),
        end=TIMESTAMP + timedelta(days=3, hours=1),
        description="Ekkokardiografi",
    ),
    MessageKind.TEST_RESULT: ResultContent(
        service_request_id=PATHWAY,
        code="NPU19748",
        display="Lipidstatus",
        conclusion="Normale værdier",
        observations=[
            ObservationValue(code="NPU01566", display="P—Kolesterol", value=4.9, unit="mmol/L"),
            ObservationValue(code="NPU01567", display="P—Kolesterol LDL", value=2.8, unit="mmol/L"),
        ],
    ),
    MessageKind.TREATMENT_PLAN: TreatmentPlanContent(
        service_request_id=PATHWAY, description="Statinbehandling, kontrol om 3 mdr.", start=TIMESTAMP
    ),
    MessageKind.CANCELLATION: CancellationContent(
        service_request_id=PATHWAY, reason="Henvisning ikke længere relevant"
    ),
    MessageKind.CARE_COMMUNICATION: CareCommunicationContent(
        communication_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
        text="Spørgsmål om medicin",
        topic="Medicin",
        service_request_id=PATHWAY,
    ),
    MessageKind.HOSPITAL_NOTIFICATION: HospitalNotificationContent(
        encounter_id="enc-1", start=TIMESTAMP, episode_of_care_id="eoc-1"
    ),
    MessageKind.HOMECARE_OBSERVATION: HomeCareObservationContent(
        report_id="1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        effective=TIMESTAMP,
        observations=[ObservationValue(code="NPU08676", display="Pt—Legeme; temp.", value=38.2, unit="Cel")],
        service_request_id=PATHWAY,
        gp_ydernummer="061654",
        gp_initials="O.K.M.",
    ),
}
CORRELATED = {k for k, c in CONTENTS.items() if getattr(c, "service_request_id", None)}


@pytest.mark.parametrize("kind", list(CONTENTS), ids=str)
def test_built_message_is_valid_and_parses_back(kind: MessageKind, envelope: Envelope) -> None:
    bundle = build_message(kind, envelope, CONTENTS[kind])
    assert validate_message(bundle) == []
    for body, content_type in (
        (bundle, "application/fhir+json"),
        (to_json(bundle), "application/fhir+json"),
        (to_xml(bundle), "application/fhir+xml"),
    ):
        parsed = parse_message(body, content_type)
        assert parsed.kind == kind
        assert parsed.event_code == kind.value
        assert parsed.message_header_id == envelope.message_header_id
        assert parsed.bundle_id == envelope.bundle_id
        assert parsed.timestamp == envelope.timestamp
        assert parsed.sender == envelope.sender
        assert parsed.receiver == envelope.receiver
        assert parsed.patient is not None and parsed.patient.cpr == SYNTHETIC_CPR
        assert parsed.service_request_id == (PATHWAY if kind in CORRELATED else None)
        assert [(p.activity, p.target_header_id) for p in parsed.provenance] == [
            (
                "admit-inpatient" if kind == MessageKind.HOSPITAL_NOTIFICATION else "new-message",
                envelope.message_header_id,
            )
        ]


@pytest.mark.parametrize("kind", list(CONTENTS), ids=str)
def test_built_message_envelope_rules(kind: MessageKind, envelope: Envelope) -> None:
    bundle = build_message(kind, envelope, CONTENTS[kind])
    header = bundle["entry"][0]["resource"]
    assert header["resourceType"] == "MessageHeader" and header["id"] == envelope.message_header_id
    expected_system = CAREFLOW_EVENT_SYSTEM if kind.value.startswith("careflow-") else MEDCOM_EVENT_SYSTEM
    assert header["eventCoding"] == {"system": expected_system, "code": kind.value}
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types.count("Patient") == 1 and types.count("Organization") == 2 and types.count("Provenance") == 1
    for e in bundle["entry"]:
        assert e["fullUrl"].endswith(f"{e['resource']['resourceType']}/{e['resource']['id']}")
    assert fhir_xml_round_trip_equal(bundle)


def fhir_xml_round_trip_equal(bundle: dict) -> bool:
    return from_xml(to_xml(bundle)) == bundle


def test_referral_focus_is_the_service_request(envelope: Envelope) -> None:
    bundle = build_message(MessageKind.REFERRAL, envelope, CONTENTS[MessageKind.REFERRAL])
    by_ref = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in bundle["entry"]}
    focus = by_ref[bundle["entry"][0]["resource"]["focus"][0]["reference"]]
    assert focus["resourceType"] == "ServiceRequest"
    assert focus["identifier"][0]["value"] == f"urn:uuid:{PATHWAY}"
    assert focus["priority"] == "urgent" and focus["reasonCode"][0]["text"] == "Brystsmerter ved anstrengelse"


def test_cancellation_revokes_the_service_request(envelope: Envelope) -> None:
    bundle = build_message(MessageKind.CANCELLATION, envelope, CONTENTS[MessageKind.CANCELLATION])
    request = bundle["entry"][2]["resource"]
    assert (request["resourceType"], request["status"]) == ("ServiceRequest", "revoked")


def test_reply_stacks_provenance_on_the_previous_header(envelope: Envelope) -> None:
    previous = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    reply = envelope.model_copy(update={"previous_header_id": previous})
    bundle = build_message(MessageKind.APPOINTMENT, reply, CONTENTS[MessageKind.APPOINTMENT])
    assert validate_message(bundle) == []
    [link] = parse_message(bundle).provenance
    assert (link.activity, link.target_header_id, link.previous_header_id) == (
        "reply-message",
        envelope.message_header_id,
        previous,
    )


def test_resend_keeps_header_and_resources_with_a_new_bundle_id(envelope: Envelope) -> None:
    first = build_message(MessageKind.REFERRAL, envelope, CONTENTS[MessageKind.REFERRAL])
    resend = build_message(
        MessageKind.REFERRAL,
        envelope.model_copy(update={"bundle_id": "another-bundle-id"}),
        CONTENTS[MessageKind.REFERRAL],
    )
    assert resend["id"] != first["id"]
    assert resend["entry"] == first["entry"]


def test_builder_refuses_wrong_content_and_missing_patient(envelope: Envelope) -> None:
    with pytest.raises(TypeError):
        build_message(MessageKind.REFERRAL, envelope, CONTENTS[MessageKind.APPOINTMENT])
    with pytest.raises(ValueError, match="build_acknowledgement"):
        build_message(MessageKind.ACKNOWLEDGEMENT, envelope, CONTENTS[MessageKind.REFERRAL])
    with pytest.raises(MessageError) as caught:
        build_message(
            MessageKind.REFERRAL, envelope.model_copy(update={"patient": None}), CONTENTS[MessageKind.REFERRAL]
        )
    assert caught.value.issues[0].rule == "patient-count"
    with pytest.raises(ValueError, match="priority"):
        build_message(
            MessageKind.REFERRAL, envelope, ReferralContent(service_request_id=PATHWAY, reason="x", priority="whenever")
        )
    with pytest.raises(ValueError, match="activity"):
        build_message(
            MessageKind.HOSPITAL_NOTIFICATION,
            envelope,
            HospitalNotificationContent(encounter_id="e", start=TIMESTAMP, activity="new-message"),
        )
