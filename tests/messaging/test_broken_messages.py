"""Real examples with one rule broken each: the validator names that rule, and the fatal-error
acknowledgement answering the broken message is itself valid and carries the MedCom error code."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from messaging import (
    AckCode,
    MessageError,
    Organization,
    build_acknowledgement,
    needs_acknowledgement,
    parse_message,
    validate_message,
)
from messaging.bundle import organization_of
from messaging.terminology import MEDCOM_ERROR_SYSTEM
from tests.messaging.conftest import SYNTHETIC_CPR, TIMESTAMP

CARE_COMMUNICATION = "carecommunication/Bundle-add5e7e2-0c0f-4a4a-bfff-f6f984fa7e3c.json"
HOSPITAL_NOTIFICATION = "hospitalnotification/Bundle-a5e5b880-c087-4055-b9ec-99108695f81d.json"
ACK_OK = "acknowledgement/Bundle-a8c041b8-c65a-4fde-a90f-962076918834.json"
ACK_FATAL = "acknowledgement/Bundle-bc9535ef-ed94-4060-a928-7baddec7ee71.json"


def res(bundle: dict, resource_type: str, n: int = 0) -> dict:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type][n]


def header(bundle: dict) -> dict:
    return res(bundle, "MessageHeader")


def org(bundle: dict, role: str) -> dict:
    reference = header(bundle)["sender"] if role == "sender" else header(bundle)["destination"][0]["receiver"]
    return next(
        e["resource"]
        for e in bundle["entry"]
        if f"{e['resource']['resourceType']}/{e['resource']['id']}" == reference["reference"]
    )


def ident(resource: dict, system_part: str) -> dict:
    return next(i for i in resource["identifier"] if system_part in i["system"])


def set_(path: Callable[[dict], dict], key: str, value: object) -> Callable[[dict], None]:
    def mutate(bundle: dict) -> None:
        path(bundle)[key] = value

    return mutate


def drop(path: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    return lambda bundle: path(bundle).pop(key)


def move_header_last(bundle: dict) -> None:
    bundle["entry"].append(bundle["entry"].pop(0))


def duplicate_patient(bundle: dict) -> None:
    twin = copy.deepcopy(next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"))
    twin["resource"]["id"] = "twin-patient"
    twin["fullUrl"] = twin["fullUrl"].rsplit("/", 1)[0] + "/twin-patient"
    bundle["entry"].append(twin)


def add_patient_to_ack(bundle: dict) -> None:
    bundle["entry"].append(
        {
            "fullUrl": "https://example.org/Patient/p1",
            "resource": {
                "resourceType": "Patient",
                "id": "p1",
                "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": SYNTHETIC_CPR}],
            },
        }
    )


def add_cc_destination(bundle: dict) -> None:
    cc = copy.deepcopy(header(bundle)["destination"][0])
    cc["extension"][0]["valueCoding"]["code"] = "cc"
    header(bundle)["destination"].append(cc)


def add_second_primary(bundle: dict) -> None:
    header(bundle)["destination"].append(copy.deepcopy(header(bundle)["destination"][0]))


def remove_provenances(bundle: dict) -> None:
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Provenance"]


def remove_first_provenance(bundle: dict) -> None:
    first = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Provenance")
    bundle["entry"].pop(first)


def remove_identifier(role: str, system_part: str) -> Callable[[dict], None]:
    def mutate(bundle: dict) -> None:
        o = org(bundle, role)
        o["identifier"] = [i for i in o["identifier"] if system_part not in i["system"]]

    return mutate


def break_gln_check_digit(role: str) -> Callable[[dict], None]:
    def mutate(bundle: dict) -> None:
        gln = ident(org(bundle, role), "gln")
        gln["value"] = gln["value"][:12] + str((int(gln["value"][12]) + 1) % 10)

    return mutate


def receiver_is_the_patient(bundle: dict) -> None:
    header(bundle)["destination"][0]["receiver"] = {"reference": "Patient/" + res(bundle, "Patient")["id"]}


def unknown_resource_type(bundle: dict) -> None:
    bundle["entry"].append({"fullUrl": "https://example.org/Bogus/1", "resource": {"resourceType": "Bogus", "id": "1"}})


@dataclass
class Broken:
    name: str
    example: str
    mutate: Callable[[dict], None]
    rule: str
    error_code: str
    also: frozenset[str] = frozenset()  # rules that necessarily break together with it


BROKEN = [
    Broken(
        "bundle type collection",
        CARE_COMMUNICATION,
        lambda b: b.update(type="collection"),
        "bundle-type",
        "MSG_VALUESET_VALUE_UNKNOWN",
    ),
    Broken("no bundle id", CARE_COMMUNICATION, lambda b: b.pop("id"), "bundle-id", "MSG_Datatype_Wrong"),
    Broken("no timestamp", CARE_COMMUNICATION, lambda b: b.pop("timestamp"), "bundle-timestamp", "MSG_Datatype_Wrong"),
    Broken(
        "bundle id too long",
        CARE_COMMUNICATION,
        lambda b: b.update(id="a" * 65),
        "element-too-long",
        "MSG_Element_To_Long",
    ),
    Broken("header not first", CARE_COMMUNICATION, move_header_last, "header-first", "MSG_Datatype_Wrong"),
    Broken(
        "unknown event code",
        CARE_COMMUNICATION,
        set_(lambda b: header(b)["eventCoding"], "code", "no-such-message"),
        "event-code",
        "MSG_CodeSystem_VALUE_UNKNOWN",
    ),
    Broken(
        "foreign event system",
        CARE_COMMUNICATION,
        set_(lambda b: header(b)["eventCoding"], "system", "http://example.org/events"),
        "event-code",
        "MSG_VALUESET_VALUE_UNKNOWN",
    ),
    Broken("two patients", CARE_COMMUNICATION, duplicate_patient, "patient-count", "MSG_Datatype_Wrong"),
    Broken(
        "CPR month 13",
        CARE_COMMUNICATION,
        set_(lambda b: res(b, "Patient")["identifier"][0], "value", "0113010000"),
        "patient-cpr",
        "MSG_Datatype_Wrong",
    ),
    Broken(
        "CPR day 00",
        HOSPITAL_NOTIFICATION,
        set_(lambda b: res(b, "Patient")["identifier"][0], "value", "0001010000"),
        "patient-cpr",
        "MSG_Datatype_Wrong",
    ),
    Broken(
        "CPR nine digits",
        CARE_COMMUNICATION,
        set_(lambda b: res(b, "Patient")["identifier"][0], "value", "010101000"),
        "patient-cpr",
        "MSG_Datatype_Wrong",
    ),
    Broken(
        "patient without CPR",
        CARE_COMMUNICATION,
        set_(lambda b: res(b, "Patient"), "identifier", []),
        "patient-cpr",
        "MSG_Datatype_Wrong",
    ),
    Broken(
        "sender without SOR",
        CARE_COMMUNICATION,
        remove_identifier("sender", "1.2.208.176.1.1"),
        "sor-identifier",
        "MSG_Datatype_Wrong",
    ),
    Broken(
        "sender EAN check digit",
        CARE_COMMUNICATION,
        break_gln_check_digit("sender"),
        "ean-identifier",
        "MSG_Datatype_Wrong",
    ),
    Broken(
        "receiver EAN check digit",
        HOSPITAL_NOTIFICATION,
        break_gln_check_digit("receiver"),
        "ean-identifier",
        "MSG_Receiver_Identifier_UNKNOWN",
    ),
    Broken(
        "receiver without EAN",
        CARE_COMMUNICATION,
        remove_identifier("receiver", "gln"),
        "ean-identifier",
        "MSG_Receiver_Identifier_MISSING",
    ),
    Broken(
        "receiver not an Organization",
        CARE_COMMUNICATION,
        receiver_is_the_patient,
        "receiver-organization",
        "MSG_Receiver_Identifier_MISSING",
    ),
    Broken(
        "cc on a CareCommunication",
        CARE_COMMUNICATION,
        add_cc_destination,
        "destination-cc",
        "MSG_VALUESET_VALUE_UNKNOWN",
    ),
    Broken(
        "two primary destinations",
        HOSPITAL_NOTIFICATION,
        add_second_primary,
        "destination-primary",
        "MSG_Receiver_Identifier_MISSING",
    ),
    Broken("no Provenance", CARE_COMMUNICATION, remove_provenances, "provenance-present", "MSG_Datatype_Wrong"),
    Broken(
        "Provenance targets another header",
        CARE_COMMUNICATION,
        set_(lambda b: res(b, "Provenance"), "target", [{"reference": "MessageHeader/another"}]),
        "provenance-target",
        "MSG_Datatype_Wrong",
    ),
    Broken(
        "unknown activity",
        HOSPITAL_NOTIFICATION,
        set_(lambda b: res(b, "Provenance")["activity"]["coding"][0], "code", "teleport-patient"),
        "provenance-activity",
        "MSG_CodeSystem_VALUE_UNKNOWN",
    ),
    Broken(
        "dangling reference",
        CARE_COMMUNICATION,
        set_(lambda b: res(b, "Communication"), "subject", {"reference": "Patient/not-in-bundle"}),
        "reference-resolves",
        "MSG_Datatype_Wrong",
    ),
    Broken(
        "bad birthDate",
        CARE_COMMUNICATION,
        set_(lambda b: res(b, "Patient"), "birthDate", "1901-13-45"),
        "fhir-structure",
        "MSG_Datatype_Wrong",
    ),
    Broken("unknown resource type", CARE_COMMUNICATION, unknown_resource_type, "fhir-structure", "MSG_Datatype_Wrong"),
    # response.identifier is also 1..1 in FHIR itself
    Broken(
        "ack without response.identifier",
        ACK_OK,
        drop(lambda b: header(b)["response"], "identifier"),
        "ack-response",
        "MSG_Datatype_Wrong",
        frozenset({"fhir-structure"}),
    ),
    Broken(
        "ack with unknown response.code",
        ACK_OK,
        set_(lambda b: header(b)["response"], "code", "maybe"),
        "ack-response",
        "MSG_VALUESET_VALUE_UNKNOWN",
    ),
    Broken("ack with one Provenance", ACK_OK, remove_first_provenance, "ack-provenance", "MSG_Datatype_Wrong"),
    Broken(
        "fatal ack without OperationOutcome",
        ACK_FATAL,
        drop(lambda b: header(b)["response"], "details"),
        "ack-outcome",
        "MSG_Datatype_Wrong",
    ),
    Broken("ack carrying a Patient", ACK_OK, add_patient_to_ack, "patient-count", "MSG_Datatype_Wrong"),
]


def broken_message(medcom_examples: Path, case: Broken) -> tuple[dict, dict]:
    original = json.loads((medcom_examples / case.example).read_text(encoding="utf-8"))
    broken = copy.deepcopy(original)
    case.mutate(broken)
    return original, broken


@pytest.mark.parametrize("case", BROKEN, ids=lambda c: c.name)
def test_broken_message_names_its_rule(medcom_examples: Path, case: Broken) -> None:
    original, broken = broken_message(medcom_examples, case)
    assert validate_message(original) == []
    issues = validate_message(broken)
    assert {i.rule for i in issues} == {case.rule} | case.also
    assert case.error_code in {i.error_code for i in issues}
    for issue in issues:
        assert issue.path.startswith("Bundle")
        assert (
            SYNTHETIC_CPR not in issue.message
            and "2509479989" not in issue.message
            and "1901-13-45" not in issue.message
        )


@pytest.mark.parametrize("case", [c for c in BROKEN if "acknowledgement" not in c.example], ids=lambda c: c.name)
def test_broken_message_gets_a_valid_fatal_error_ack(medcom_examples: Path, case: Broken) -> None:
    original, broken = broken_message(medcom_examples, case)
    issues = validate_message(broken)
    # The API knows both parties from authentication and its directory, and passes them on when the
    # broken message cannot say who they are (as here, where their identifiers were removed).
    ack = build_acknowledgement(
        broken,
        code=AckCode.FATAL_ERROR,
        message_header_id="ack-" + case.rule,
        bundle_id="ack-bundle-" + case.rule,
        timestamp=TIMESTAMP,
        issues=issues,
        sender=_party(original, "receiver"),
        receiver=_party(original, "sender"),
    )
    assert validate_message(ack) == []
    parsed = parse_message(ack)
    assert parsed.response_code is AckCode.FATAL_ERROR
    assert parsed.response_identifier == header(original)["id"]
    outcome = res(ack, "OperationOutcome")
    codings = [c for issue in outcome["issue"] for c in issue["details"]["coding"]]
    assert {"system": MEDCOM_ERROR_SYSTEM, "code": case.error_code} in codings


def _party(original: dict, role: str) -> Organization:
    party = organization_of(org(original, role))
    assert party is not None
    return party


@pytest.mark.parametrize("case", [c for c in BROKEN if "acknowledgement" in c.example], ids=lambda c: c.name)
def test_broken_acknowledgements_are_not_acknowledged(medcom_examples: Path, case: Broken) -> None:
    _, broken = broken_message(medcom_examples, case)
    try:
        parsed = parse_message(broken)
    except MessageError:
        return
    assert not needs_acknowledgement(parsed)
