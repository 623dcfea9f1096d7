"""Conformance gaps found on MedCom material: regional replacement-CPR arcs, Provenance history naming
organisations the Bundle lacks, and meta.profile on the messages careflow builds."""

from __future__ import annotations

import copy
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from messaging import (
    AckCode,
    Envelope,
    MessageKind,
    ReferralContent,
    build_acknowledgement,
    build_message,
    parse_message,
    validate_message,
)
from messaging.identifiers import is_replacement_cpr_system, replacement_cpr_issuer
from messaging.profiles import PROFILES, declared_profiles, expected_profile
from tests.messaging.conftest import TIMESTAMP, example_files, require_examples_dir
from tests.messaging.test_builders import CONTENTS

ARC = "urn:oid:1.2.208.176.1.6.1"


# --- replacement CPR under deeper arcs -------------------------------------------------------------


@pytest.mark.parametrize(
    "system",
    [
        f"{ARC}.1",
        f"{ARC}.3",
        f"{ARC}.3.177",
        f"{ARC}.3.179",
        f"{ARC}.3.181",
        f"{ARC}.3.183",
        f"{ARC}.3.187",
        f"{ARC}.3.190.2",
    ],
)
def test_replacement_cpr_systems_under_the_arc_are_valid(system: str) -> None:
    assert is_replacement_cpr_system(system)
    assert replacement_cpr_issuer(system)


@pytest.mark.parametrize(
    "system",
    [
        ARC,
        f"{ARC}.",
        f"{ARC}.3.",
        f"{ARC}.03",
        f"{ARC}.3.x",
        "urn:oid:1.2.208.176.1.6.2.1",
        "urn:oid:1.2.208.176.1.2",
        f"{ARC}.1 ",
        None,
        7,
    ],
)
def test_other_systems_are_not_replacement_cpr(system: object) -> None:
    assert not is_replacement_cpr_system(system)
    assert replacement_cpr_issuer(system) is None


def test_regional_issuers_are_named() -> None:
    assert replacement_cpr_issuer(f"{ARC}.3.187") == "D-eCPR Region Hovedstaden"
    assert replacement_cpr_issuer(f"{ARC}.3.190") == "replacement CPR"


def _referral(envelope: Envelope) -> dict:
    return build_message(
        MessageKind.REFERRAL,
        envelope,
        ReferralContent(service_request_id="ab12cd34-0000-4000-8000-000000000001", reason="x"),
    )


def _patient(bundle: dict) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


@pytest.mark.parametrize("system", [f"{ARC}.1", f"{ARC}.3.177", f"{ARC}.3.187"])
def test_message_with_a_regional_replacement_cpr_validates_and_parses(envelope: Envelope, system: str) -> None:
    bundle = _referral(envelope)
    _patient(bundle)["identifier"] = [{"system": system, "value": "0703921VJ4"}]
    assert validate_message(bundle) == []
    assert parse_message(bundle).patient.cpr == "0703921VJ4"


def test_a_system_outside_the_arc_is_still_refused(envelope: Envelope) -> None:
    bundle = _referral(envelope)
    _patient(bundle)["identifier"] = [{"system": "urn:oid:1.2.208.176.1.6.2.3", "value": "0703921VJ4"}]
    assert [i.rule for i in validate_message(bundle)] == ["patient-cpr"]


# --- Provenance history naming organisations the Bundle does not contain ---------------------------


def _with_absent_history_senders(bundle: dict, *, current_too: bool = False) -> tuple[dict, int]:
    """The shape of MedCom's HospitalNotification test-script messages: the Provenances of earlier
    messages name their senders as Organizations that this Bundle does not carry."""
    changed = copy.deepcopy(bundle)
    header_id = changed["entry"][0]["resource"]["id"]
    count = 0
    for e in changed["entry"]:
        resource = e["resource"]
        if resource["resourceType"] != "Provenance":
            continue
        current = any(t.get("reference") == f"MessageHeader/{header_id}" for t in resource["target"])
        if current and not current_too:
            continue
        for agent in resource.get("agent", []):
            agent["who"] = {"reference": f"Organization/absent-earlier-sender-{count}"}
            count += 1
    return changed, count


def _examples_with_history(folder: Path) -> list[Path]:
    found = []
    for path in example_files(folder):
        bundle = json.loads(path.read_bytes())
        if sum(e["resource"]["resourceType"] == "Provenance" for e in bundle["entry"]) > 1:
            found.append(path)
    return found


def test_provenance_history_may_name_organisations_the_bundle_lacks(medcom_examples: Path) -> None:
    paths = _examples_with_history(medcom_examples)
    assert len(paths) >= 5, "MedCom's examples of follow-up messages carry earlier Provenances"
    for path in paths:
        changed, count = _with_absent_history_senders(json.loads(path.read_bytes()))
        assert count >= 1
        assert validate_message(changed) == [], path.name


def test_current_provenance_may_name_an_absent_organisation_too(medcom_examples: Path) -> None:
    # One of MedCom's own test-script messages (a start-leave notice) does exactly this.
    for path in _examples_with_history(medcom_examples):
        changed, _ = _with_absent_history_senders(json.loads(path.read_bytes()), current_too=True)
        assert validate_message(changed) == [], path.name


def test_other_dangling_references_are_still_refused(medcom_examples: Path) -> None:
    path = next(p for p in _examples_with_history(medcom_examples) if p.parent.name == "hospitalnotification")
    bundle = json.loads(path.read_bytes())
    encounter = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
    encounter["serviceProvider"] = {"reference": "Organization/not-in-this-bundle"}
    assert "reference-resolves" in {i.rule for i in validate_message(bundle)}

    bundle = json.loads(path.read_bytes())
    provenance = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
    provenance["agent"][0]["who"] = {"reference": "Patient/not-in-this-bundle"}  # only organisations are excused
    assert "reference-resolves" in {i.rule for i in validate_message(bundle)}


# MedCom's test-script messages are not among the shared examples; point this variable at a folder
# of them (e.g. the Bundle-*.json pages of medcomdk/dk-medcom-hospitalnotification-testscripts) to
# check them too. Deliberately broken ones (technical-error scripts) fail on other rules.
TESTSCRIPT_ENV = "CAREFLOW_MEDCOM_TESTSCRIPT_EXAMPLES_DIR"


def test_medcom_testscript_messages_are_not_refused_for_their_provenance() -> None:
    folder = Path(os.environ.get(TESTSCRIPT_ENV, "/nonexistent"))
    files = example_files(folder)
    if not files:
        pytest.skip(f"{TESTSCRIPT_ENV} does not name a folder of MedCom test-script messages (optional)")
    for path in files:
        issues = validate_message(json.loads(path.read_bytes()))
        assert not [i for i in issues if i.rule == "reference-resolves"], path.name


# --- meta.profile ------------------------------------------------------------------------------------


def _example_profiles(folder: Path) -> dict[tuple[str, str], set[str]]:
    """(event code, resource type) -> the profiles MedCom's examples declare for it."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in example_files(folder):
        bundle = json.loads(path.read_bytes())
        event = bundle["entry"][0]["resource"]["eventCoding"]["code"]
        found[(event, "Bundle")].update(declared_profiles(bundle))
        for e in bundle["entry"]:
            found[(event, e["resource"]["resourceType"])].update(declared_profiles(e["resource"]))
    return found


def _assert_profiles_like_examples(bundle: dict, examples: dict[tuple[str, str], set[str]]) -> None:
    event = bundle["entry"][0]["resource"]["eventCoding"]["code"]
    for resource_type, resource in [
        ("Bundle", bundle),
        *((e["resource"]["resourceType"], e["resource"]) for e in bundle["entry"]),
    ]:
        declared = declared_profiles(resource)
        assert len(declared) == 1, f"{event} {resource_type} declares {declared}"
        assert declared[0] in examples[(event, resource_type)], f"{event} {resource_type}: {declared[0]}"


MEDCOM_KINDS = [k for k in CONTENTS if k.value in PROFILES]


@pytest.mark.parametrize("kind", MEDCOM_KINDS, ids=str)
def test_built_medcom_messages_declare_the_examples_profiles(
    kind: MessageKind, envelope: Envelope, medcom_examples: Path
) -> None:
    bundle = build_message(kind, envelope, CONTENTS[kind])
    _assert_profiles_like_examples(bundle, _example_profiles(medcom_examples))
    assert validate_message(bundle) == []


def test_homecare_observation_profiles_its_two_parties_differently(envelope: Envelope) -> None:
    bundle = build_message(MessageKind.HOMECARE_OBSERVATION, envelope, CONTENTS[MessageKind.HOMECARE_OBSERVATION])
    orgs = {
        e["resource"]["identifier"][1]["value"]: declared_profiles(e["resource"])[0]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Organization"
    }
    assert orgs[envelope.sender.sor].endswith("medcom-producer-organization")
    assert orgs[envelope.receiver.sor].endswith("medcom-requesterorganization")


@pytest.mark.parametrize("code", list(AckCode), ids=str)
def test_built_acknowledgements_declare_the_examples_profiles(
    code: AckCode, envelope: Envelope, medcom_examples: Path
) -> None:
    original = build_message(MessageKind.CARE_COMMUNICATION, envelope, CONTENTS[MessageKind.CARE_COMMUNICATION])
    ack = build_acknowledgement(
        original,
        code=code,
        message_header_id="a1b2c3d4-0000-4000-8000-00000000000a",
        bundle_id="a1b2c3d4-0000-4000-8000-00000000000b",
        timestamp=TIMESTAMP,
    )
    _assert_profiles_like_examples(ack, _example_profiles(medcom_examples))
    assert validate_message(ack) == []


@pytest.mark.parametrize("kind", [k for k in CONTENTS if k.value not in PROFILES], ids=str)
def test_careflow_message_types_declare_no_medcom_profile(kind: MessageKind, envelope: Envelope) -> None:
    bundle = build_message(kind, envelope, CONTENTS[kind])
    assert "meta" not in bundle
    assert all("meta" not in e["resource"] for e in bundle["entry"])


def test_validator_refuses_a_careflow_type_claiming_a_medcom_profile(envelope: Envelope) -> None:
    bundle = _referral(envelope)
    _patient(bundle)["meta"] = {"profile": [PROFILES["hospital-notification-message"]["Patient"]]}
    assert [i.rule for i in validate_message(bundle)] == ["meta-profile"]


def test_validator_refuses_the_profile_of_another_message_type(envelope: Envelope, medcom_examples: Path) -> None:
    require_examples_dir(medcom_examples)
    bundle = build_message(MessageKind.HOSPITAL_NOTIFICATION, envelope, CONTENTS[MessageKind.HOSPITAL_NOTIFICATION])
    bundle["meta"]["profile"] = [expected_profile("care-communication-message", "Bundle")]
    bundle["entry"][0]["resource"]["meta"]["profile"] = [PROFILES["care-communication-message"]["MessageHeader"]]
    issues = validate_message(bundle)
    assert [(i.rule, i.path) for i in issues] == [
        ("meta-profile", "Bundle.meta.profile"),
        ("meta-profile", "Bundle.entry[0].resource.meta.profile"),
    ]
    # declaring no profile at all is allowed: FHIR does not require a message to name its profile
    del bundle["meta"], bundle["entry"][0]["resource"]["meta"]
    assert validate_message(bundle) == []
