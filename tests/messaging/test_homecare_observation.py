"""HomeCareObservation as careflow builds it — new, modified, retracted — against MedCom's official
examples of the same three (read from settings.medcom_examples_dir), and its own rules."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from messaging import Envelope, build_message, parse_message, to_xml, validate_message
from messaging.bundle import as_dict, as_list, resources
from messaging.model import MessageKind
from messaging.types.homecare_observation import HomeCareObservationContent
from tests.messaging.conftest import TIMESTAMP

NEW_EXAMPLE = "homecareobservation/Bundle-401cbc36-db1e-4fe0-bf90-6df331dde179.json"
MODIFIED_EXAMPLE = "homecareobservation/Bundle-73996cdc-3192-4d15-bd16-c365ef0085e7.json"
RETRACTED_EXAMPLE = "homecareobservation/Bundle-5f341feb-9a20-463a-96cc-a9ca8ace5567.json"
KIND = MessageKind.HOMECARE_OBSERVATION

FIRST_HEADER = "6a1b7c2d-0000-4000-8000-000000000001"
SECOND_HEADER = "6a1b7c2d-0000-4000-8000-000000000002"
THIRD_HEADER = "6a1b7c2d-0000-4000-8000-000000000003"


def report(**changes: object) -> HomeCareObservationContent:
    data = {
        "report_id": "5c3e1a9b-7d2f-4e8a-9b1c-2d3e4f5a6b7c",
        "effective": TIMESTAMP,
        "observations": [
            {"code": "MCS88122", "display": "Pt—Respiration; frekvens", "value": 19, "unit": "1/min"},
            {"code": "NPU21692", "value": 92, "unit": "1/min", "note": "Har lige været ude at gå."},
            {"code": "NPU08676", "value": 38.7, "unit": "°C"},
            {"code": "MCS88125", "value": 3},
        ],
        "conclusion": "ABCDE: påvirket, feber.",
        "gp_ydernummer": "061654",
        "gp_initials": "O.K.M.",
        "author": {"name": "Mia", "phone": "+45 05577668"},
    }
    return HomeCareObservationContent.model_validate(data | changes)


@pytest.fixture
def versions(envelope: Envelope) -> dict[str, dict]:
    """The three versions of one report, as the pathway sends them: new, modified, then retracted."""
    first = envelope.model_copy(update={"message_header_id": FIRST_HEADER})
    second = envelope.model_copy(
        update={"message_header_id": SECOND_HEADER, "bundle_id": "b2", "timestamp": TIMESTAMP + timedelta(minutes=10)}
    )
    third = envelope.model_copy(
        update={"message_header_id": THIRD_HEADER, "bundle_id": "b3", "timestamp": TIMESTAMP + timedelta(minutes=30)}
    )
    history = [{"message_header_id": FIRST_HEADER, "activity": "new-message", "at": TIMESTAMP}]
    modified = report(
        activity="modified-message",
        replaces_header_id=FIRST_HEADER,
        history=history,
        conclusion="ABCDE: påvirket, feber. Har nægtet at spise og drikke i dag.",
    )
    history2 = [
        *history,
        {
            "message_header_id": SECOND_HEADER,
            "activity": "modified-message",
            "at": second.timestamp,
            "previous_header_id": FIRST_HEADER,
        },
    ]
    retracted = report(
        activity="retract-message",
        replaces_header_id=SECOND_HEADER,
        history=history2,
        conclusion="Annulleret: sendt på forkert CPR-nummer",
    )
    return {
        "new": build_message(KIND, first, report()),
        "modified": build_message(KIND, second, modified),
        "retracted": build_message(KIND, third, retracted),
    }


def _coding(concept: object) -> tuple[object, object]:
    coding = next((as_dict(c) for c in as_list(as_dict(concept).get("coding"))), {})
    return coding.get("system"), coding.get("code")


def shape(bundle: dict) -> dict:
    """What a HomeCareObservation must look like, with the particulars (ids, names, values) left out.

    Only the Provenance of this message is compared: MedCom's prose asks a modification or retraction
    to carry the earlier message's Provenance too, which its examples leave out."""
    header = next(r for _, r in resources(bundle, "MessageHeader"))
    by_ref = {f"{r['resourceType']}/{r['id']}": r for _, r in resources(bundle)}
    sender = by_ref[header["sender"]["reference"]]
    receiver = by_ref[header["destination"][0]["receiver"]["reference"]]
    focus = by_ref[header["focus"][0]["reference"]]
    observations = [by_ref[r["reference"]] for r in focus["result"]]
    own = [
        p
        for _, p in resources(bundle, "Provenance")
        if {"reference": f"MessageHeader/{header['id']}"} in as_list(p.get("target"))
    ]
    return {
        "bundle profile": bundle["meta"]["profile"],
        "event": (header["eventCoding"]["system"], header["eventCoding"]["code"]),
        "definition": header.get("definition"),
        "profiles": sorted(
            {(r["resourceType"], p) for _, r in resources(bundle) for p in as_dict(r.get("meta")).get("profile", [])}
        ),
        "resource types": sorted({r["resourceType"] for _, r in resources(bundle)}),
        "sender identifiers": sorted(i["system"] for i in sender["identifier"]),
        "receiver identifiers": sorted(i["system"] for i in receiver["identifier"]),
        "receiver contact has initials": bool(receiver["contact"][0]["name"]["given"][0]),
        "report": (focus["status"], _coding(focus["code"]), "issued" in focus),
        "performers": sorted(p["reference"].split("/")[0] for p in focus["performer"]),
        "observations": sorted(
            {
                (o["status"], _coding(o["code"])[0], _coding(o["interpretation"][0]), "effectiveDateTime" in o)
                for o in observations
            }
        ),
        "unitless values": sorted(
            {tuple(sorted(o["valueQuantity"])) for o in observations if "code" in o["valueQuantity"]}
        ),
        "own provenance": [
            (
                _coding(p["activity"]),
                [(e["role"], e["what"]["reference"].split("/")[0]) for e in as_list(p.get("entity"))],
                "occurredDateTime" in p and "recorded" in p,
            )
            for p in own
        ],
    }


def example(medcom_examples: Path, name: str) -> dict:
    return json.loads((medcom_examples / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("version", "example_name"),
    [("new", NEW_EXAMPLE), ("modified", MODIFIED_EXAMPLE), ("retracted", RETRACTED_EXAMPLE)],
)
def test_each_version_has_the_shape_of_medcoms_example(
    versions: dict[str, dict], medcom_examples: Path, version: str, example_name: str
) -> None:
    built, official = versions[version], example(medcom_examples, example_name)
    assert validate_message(built) == []
    assert validate_message(official) == []
    assert shape(built) == shape(official)


def test_later_versions_carry_the_history_and_point_at_the_latest_version(versions: dict[str, dict]) -> None:
    chains = {}
    for version, bundle in versions.items():
        chains[version] = [
            (
                p["target"][0]["reference"],
                _coding(p["activity"])[1],
                [(e["role"], e["what"]["reference"]) for e in as_list(p.get("entity"))],
            )
            for _, p in resources(bundle, "Provenance")
        ]
    first = (f"MessageHeader/{FIRST_HEADER}", "new-message", [])
    second = (
        f"MessageHeader/{SECOND_HEADER}",
        "modified-message",
        [("revision", f"MessageHeader/{FIRST_HEADER}")],
    )
    third = (f"MessageHeader/{THIRD_HEADER}", "retract-message", [("removal", f"MessageHeader/{SECOND_HEADER}")])
    assert chains == {"new": [first], "modified": [first, second], "retracted": [first, second, third]}
    # an earlier version's Provenance keeps the id it had in its own message
    first_id = next(p["id"] for _, p in resources(versions["new"], "Provenance"))
    assert first_id in {p["id"] for _, p in resources(versions["retracted"], "Provenance")}
    # each version is a message of its own: a new MessageHeader.id (as MedCom's examples do)
    assert len({next(resources(b, "MessageHeader"))[1]["id"] for b in versions.values()}) == 3


def test_every_version_travels_as_xml_and_reads_back(versions: dict[str, dict]) -> None:
    for bundle in versions.values():
        parsed = parse_message(to_xml(bundle), "application/fhir+xml")
        assert parsed.kind == KIND
        assert [link.activity for link in parsed.provenance] == [
            _coding(p["activity"])[1] for _, p in resources(bundle, "Provenance")
        ]


def test_a_retraction_gives_its_reason_and_a_later_version_names_the_one_it_replaces() -> None:
    with pytest.raises(ValidationError, match="reason"):
        report(activity="retract-message", replaces_header_id=FIRST_HEADER, conclusion=" ")
    with pytest.raises(ValidationError, match="replaces_header_id"):
        report(activity="modified-message")
    with pytest.raises(ValidationError, match="gp_initials"):
        report(gp_initials="")


def test_a_value_longer_than_twelve_characters_is_refused(envelope: Envelope) -> None:
    with pytest.raises(ValidationError, match="12 characters"):
        report(observations=[{"code": "NPU08676", "value": 38.123456789012, "unit": "°C"}])
    bundle = build_message(KIND, envelope, report())
    observation = next(r for _, r in resources(bundle, "Observation"))
    observation["valueQuantity"]["value"] = 1234567.1234567
    assert [i.rule for i in validate_message(bundle)] == ["homecare-observation-value"]


def test_an_observation_coded_outside_npu_and_mcs_is_refused(envelope: Envelope) -> None:
    bundle = build_message(KIND, envelope, report())
    observation = next(r for _, r in resources(bundle, "Observation"))
    observation["code"]["coding"][0]["system"] = "http://loinc.org"
    assert [i.rule for i in validate_message(bundle)] == ["homecare-observation-code"]


def test_a_retraction_that_names_its_version_as_a_revision_is_refused(versions: dict[str, dict]) -> None:
    bundle = versions["retracted"]
    own = next(p for _, p in resources(bundle, "Provenance") if p["target"][0]["reference"].endswith(THIRD_HEADER))
    own["entity"][0]["role"] = "revision"
    assert [i.rule for i in validate_message(bundle)] == ["homecare-version"]


def test_a_restricted_report_carries_the_confidentiality_label(envelope: Envelope) -> None:
    bundle = build_message(KIND, envelope, report(restricted=True))
    diagnostic_report = next(r for _, r in resources(bundle, "DiagnosticReport"))
    assert diagnostic_report["meta"]["security"][0]["code"] == "R"
    assert diagnostic_report["meta"]["profile"]  # the profile is kept beside it
    assert validate_message(bundle) == []
