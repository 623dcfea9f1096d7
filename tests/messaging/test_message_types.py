"""Message types as plug-ins: the registry, a type declared in one test module, MedCom profiles."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from messaging import (
    MESSAGE_TYPES,
    AckCode,
    Envelope,
    MessageKind,
    MessageTypes,
    UnknownMessageType,
    build_acknowledgement,
    build_message,
    needs_acknowledgement,
    parse_message,
    to_xml,
    validate_message,
)
from messaging.directory import Directory
from messaging.model import message_label, message_label_da
from messaging.terminology import CAREFLOW_EVENT_SYSTEM, MEDCOM_EVENT_SYSTEM, event_system_for
from messaging.types import BUILT_IN
from messaging.types.referral import TYPE as REFERRAL
from tests.messaging import example_type
from tests.messaging.conftest import HOSPITAL_SOR, TIMESTAMP, example_files
from tests.messaging.test_builders import CONTENTS

PATHWAY = "3f2e1d0c-9b8a-4765-8432-10fedcba9876"
SUMMARY = {
    "service_request_id": PATHWAY,
    "discharged": TIMESTAMP.isoformat(),
    "summary": "Udskrevet til eget hjem <uden> komplikationer",
}


# --- the registry --------------------------------------------------------------------------------


def test_every_built_in_kind_is_registered_and_every_module_is_listed() -> None:
    assert {k.value for k in MessageKind} <= MESSAGE_TYPES.codes()
    modules = {p.stem for p in Path(importlib.import_module("messaging.types").__file__).parent.glob("*.py")} - {
        "__init__",
        "base",
    }
    assert modules == set(BUILT_IN), "each type module is listed in BUILT_IN, and only those"


def test_registry_refuses_a_second_type_with_the_same_code() -> None:
    registry = MessageTypes([REFERRAL])
    impostor = dataclasses.replace(REFERRAL, label="something else")
    with pytest.raises(ValueError, match=r"careflow-referral-message.*already registered.*referral"):
        registry.register(impostor)
    assert registry.get(REFERRAL.code) is REFERRAL


def test_registering_the_same_type_again_is_a_no_op() -> None:
    registry = MessageTypes([REFERRAL])
    assert registry.register(REFERRAL) is REFERRAL
    # what a re-imported module (Temporal's sandbox) makes: equal declaration, new object
    assert registry.register(dataclasses.replace(REFERRAL)) is REFERRAL
    assert len(registry) == 1
    assert MESSAGE_TYPES.register(importlib.reload(example_type).TYPE).code == example_type.CODE


def test_unknown_codes_are_refused_with_a_clear_error() -> None:
    with pytest.raises(UnknownMessageType) as caught:
        MESSAGE_TYPES.get("no-such-message")
    assert isinstance(caught.value, KeyError)
    assert "no message type with event code 'no-such-message'" in str(caught.value)
    assert "careflow-referral-message" in str(caught.value)  # says which codes are known
    assert MESSAGE_TYPES.find("no-such-message") is None and MESSAGE_TYPES.find(None) is None
    assert "no-such-message" not in MESSAGE_TYPES
    with pytest.raises(UnknownMessageType):
        event_system_for("no-such-message")


def test_build_message_refuses_unknown_codes_wrong_content_and_acknowledgements(envelope: Envelope) -> None:
    with pytest.raises(UnknownMessageType, match="no-such-message"):
        build_message("no-such-message", envelope, CONTENTS[MessageKind.REFERRAL])
    with pytest.raises(ValueError, match="build_acknowledgement"):
        build_message(MessageKind.ACKNOWLEDGEMENT, envelope, {})
    with pytest.raises(ValidationError):
        build_message(MessageKind.REFERRAL, envelope, {"reason": "no service request id"})


def test_a_type_declaration_must_be_whole() -> None:
    with pytest.raises(ValueError, match="go together"):
        dataclasses.replace(REFERRAL, build=None)
    with pytest.raises(ValueError, match="focus"):
        dataclasses.replace(REFERRAL, focus=None)
    with pytest.raises(TypeError, match="MessageType"):
        MessageTypes().register("careflow-referral-message")  # type: ignore[arg-type]


def test_labels_come_from_the_registry() -> None:
    assert MESSAGE_TYPES.label(MessageKind.TEST_RESULT) == "test result"
    assert MESSAGE_TYPES.label(MessageKind.TEST_RESULT, lang="da") == "prøvesvar"
    assert message_label(MessageKind.REFERRAL) == "referral (henvisning)"  # as timelines have always said it
    assert message_label_da("careflow-appointment-message") == "indkaldelse"
    assert message_label("not-registered") == MESSAGE_TYPES.label("not-registered") == "not-registered"
    with pytest.raises(ValueError, match="en or da"):
        MESSAGE_TYPES.label(MessageKind.REFERRAL, lang="sv")


def test_built_in_kinds_and_plain_codes_are_the_same(envelope: Envelope) -> None:
    content = CONTENTS[MessageKind.APPOINTMENT]
    assert build_message(MessageKind.APPOINTMENT, envelope, content) == build_message(
        "careflow-appointment-message", envelope, content
    )
    as_dict = build_message("careflow-appointment-message", envelope, content.model_dump(mode="json"))
    assert as_dict == build_message(MessageKind.APPOINTMENT, envelope, content)


# --- a new type in one module --------------------------------------------------------------------


def test_a_type_declared_in_one_module_is_built_parsed_validated_and_labelled(envelope: Envelope) -> None:
    code = example_type.CODE
    assert code not in {importlib.import_module(f"messaging.types.{m}").TYPE.code for m in BUILT_IN}
    bundle = build_message(code, envelope, SUMMARY)  # plain data, as a workflow would pass it
    assert validate_message(bundle) == []
    header = bundle["entry"][0]["resource"]
    assert header["eventCoding"] == {"system": CAREFLOW_EVENT_SYSTEM, "code": code}
    assert "meta" not in bundle, "a careflow type claims no MedCom profile"
    for body, media_type in ((bundle, "application/fhir+json"), (to_xml(bundle), "application/fhir+xml")):
        parsed = parse_message(body, media_type)
        assert parsed.kind == code and parsed.event_code == code
        assert parsed.service_request_id == parsed.correlation.service_request_id == PATHWAY  # its own extractor
        assert parsed.correlation.based_on == [PATHWAY]
    assert event_system_for(code) == CAREFLOW_EVENT_SYSTEM
    assert (message_label(code), message_label_da(code)) == (
        "discharge summary (udskrivningsresumé)",
        "udskrivningsresumé",
    )
    assert needs_acknowledgement(parse_message(bundle))
    ack = build_acknowledgement(
        bundle, code=AckCode.OK, message_header_id="ack-1", bundle_id="ack-bundle-1", timestamp=TIMESTAMP
    )
    assert validate_message(ack) == []


def test_the_new_types_own_rule_and_declared_focus_are_checked(envelope: Envelope) -> None:
    bundle = build_message(example_type.CODE, envelope, SUMMARY)
    composition = bundle["entry"][2]["resource"]
    assert composition["resourceType"] == "Composition"
    composition["section"][0].pop("text")
    assert [(i.rule, i.path) for i in validate_message(bundle)] == [
        ("discharge-summary-section", "Bundle.entry[2].resource.section")
    ]
    bundle["entry"][0]["resource"]["focus"] = [{"reference": bundle["entry"][1]["fullUrl"]}]  # the Patient
    assert "message-focus" in {i.rule for i in validate_message(bundle)}


def test_the_directory_and_console_know_the_new_type(envelope: Envelope) -> None:
    from api.console.web import term

    row = {
        "sor": HOSPITAL_SOR,
        "ean": envelope.receiver.ean,
        "name": "Afdeling",
        "kind": "hospital-department",
        "endpoint": "http://127.0.0.1:1/fhir",
        "accepts": [example_type.CODE],
    }
    directory = Directory.from_rows([row])
    assert directory.require_accepts(HOSPITAL_SOR, example_type.CODE).sor == HOSPITAL_SOR
    assert not directory.get(HOSPITAL_SOR).accepts_kind(MessageKind.REFERRAL)
    assert term(example_type.CODE) == "Discharge summary · udskrivningsresumé"
    assert term(MessageKind.REFERRAL.value) == "Referral · henvisning"


def test_a_code_of_another_system_is_not_that_type(envelope: Envelope) -> None:
    bundle = build_message(example_type.CODE, envelope, SUMMARY)
    bundle["entry"][0]["resource"]["eventCoding"]["system"] = MEDCOM_EVENT_SYSTEM
    assert [i.rule for i in validate_message(bundle)] == ["event-code"]


# --- correlation ---------------------------------------------------------------------------------


def test_correlation_of_the_released_types(envelope: Envelope) -> None:
    communication = parse_message(
        build_message(MessageKind.CARE_COMMUNICATION, envelope, CONTENTS[MessageKind.CARE_COMMUNICATION])
    )
    assert communication.correlation.thread_id == CONTENTS[MessageKind.CARE_COMMUNICATION].communication_id
    notification = parse_message(
        build_message(MessageKind.HOSPITAL_NOTIFICATION, envelope, CONTENTS[MessageKind.HOSPITAL_NOTIFICATION])
    )
    assert notification.correlation.episode_of_care_id == "eoc-1" and notification.correlation.encounter_id
    assert notification.service_request_id is None


def test_hospital_notification_without_episode_of_care_is_refused(envelope: Envelope) -> None:
    content = CONTENTS[MessageKind.HOSPITAL_NOTIFICATION].model_copy(update={"episode_of_care_id": None})
    issues = validate_message(build_message(MessageKind.HOSPITAL_NOTIFICATION, envelope, content))
    assert [i.rule for i in issues] == ["hospital-notification-episode"]


# --- MedCom profiles -----------------------------------------------------------------------------


def _example_profiles(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in example_files(folder):
        bundle = json.loads(path.read_bytes())
        code = bundle["entry"][0]["resource"]["eventCoding"]["code"]
        found.setdefault(code, set()).update(bundle.get("meta", {}).get("profile", []))
    return found


def test_built_released_types_carry_the_examples_profile(envelope: Envelope, medcom_examples: Path) -> None:
    expected = _example_profiles(medcom_examples)
    released = [t for t in MESSAGE_TYPES if t.system == MEDCOM_EVENT_SYSTEM]
    assert {t.code for t in released} <= set(expected), "every released type has an official example"
    for message_type in released:
        assert {message_type.profile} == expected[message_type.code]
        if message_type.content is not None:
            bundle = build_message(message_type.code, envelope, CONTENTS[MessageKind(message_type.code)])
        else:
            original = build_message(MessageKind.REFERRAL, envelope, CONTENTS[MessageKind.REFERRAL])
            bundle = build_acknowledgement(
                original, code=AckCode.OK, message_header_id="ack-2", bundle_id="ack-bundle-2", timestamp=TIMESTAMP
            )
        assert bundle["meta"]["profile"] == [message_type.profile]
        assert validate_message(bundle) == []
    for message_type in MESSAGE_TYPES:
        if message_type.system == CAREFLOW_EVENT_SYSTEM:
            assert message_type.profile is None


def test_a_plug_in_that_trips_over_a_broken_message_refuses_it_instead_of_crashing(envelope: Envelope) -> None:
    def fragile_rule(bundle: dict) -> list:
        return bundle["entry"][99]  # a careless plug-in

    def fragile_extract(bundle: dict):  # noqa: ANN202
        raise KeyError("careless")

    fragile = dataclasses.replace(
        example_type.TYPE, code="careflow-fragile-test-message", rules=(fragile_rule,), extract=fragile_extract
    )
    registry_before = MESSAGE_TYPES.codes()
    MESSAGE_TYPES.register(fragile)
    try:
        bundle = build_message(fragile.code, envelope, SUMMARY)
        assert [(i.rule, i.message) for i in validate_message(bundle)] == [
            ("message-type-rule", "the discharge summary rule fragile_rule cannot read this message")
        ]
        parsed = parse_message(bundle)  # falls back to the default extraction
        assert parsed.kind == fragile.code and parsed.correlation.service_request_id is None
    finally:
        MESSAGE_TYPES._by_code.pop(fragile.code)  # leave the shared registry as it was
    assert MESSAGE_TYPES.codes() == registry_before


def test_the_vans_document_type_comes_from_the_message_type(envelope: Envelope) -> None:
    from messaging.vans import NoVansDocumentType, document_type_for

    notification = build_message(
        MessageKind.HOSPITAL_NOTIFICATION, envelope, CONTENTS[MessageKind.HOSPITAL_NOTIFICATION]
    )
    assert (document_type_for(notification).name, document_type_for(notification).version) == (
        "MCM:FDIS20#AdmissionInpatient",
        "3.0.0",
    )
    summary = build_message(example_type.CODE, envelope, SUMMARY)
    with pytest.raises(NoVansDocumentType):
        document_type_for(summary)  # declares no VANS document
    catalogued = dataclasses.replace(
        example_type.TYPE,
        code="careflow-catalogued-test-message",
        vans_document=lambda bundle: ("MCM:XTEST#summary", "1.0"),
    )
    MESSAGE_TYPES.register(catalogued)
    try:
        bundle = build_message(catalogued.code, envelope, SUMMARY)
        assert (document_type_for(bundle).name, document_type_for(bundle).version) == ("MCM:XTEST#summary", "1.0")
    finally:
        MESSAGE_TYPES._by_code.pop(catalogued.code)  # leave the shared registry as it was
