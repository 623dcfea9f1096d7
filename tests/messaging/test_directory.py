"""The directory: the demo file loads, bad rows are named, sends to non-accepting receivers are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from messaging import Directory, DirectoryError, MessageKind, NotAccepted, UnknownOrganization
from messaging.identifiers import is_valid_gln
from tests.messaging.conftest import GP_SOR, HOSPITAL_SOR, LAB_SOR, MUNICIPALITY_SOR


def test_demo_directory_loads(directory: Directory) -> None:
    assert 140 <= len(directory.entries) <= 160
    assert [e.sor for e in directory.entries[:4]] == [GP_SOR, HOSPITAL_SOR, LAB_SOR, MUNICIPALITY_SOR]
    assert {e.kind for e in directory.entries} == {"hospital-department", "gp", "lab", "municipality"}
    assert all(is_valid_gln(e.ean) for e in directory.entries)


def test_fixed_demo_entries(directory: Directory) -> None:
    gp = directory.get(GP_SOR)
    assert (gp.name, gp.kind, gp.endpoint) == (
        "Lægerne Nørrebro (demo GP)",
        "gp",
        "http://127.0.0.1:8000/fhir/$process-message",
    )
    careflow_kinds = {k for k in MessageKind if k.value.startswith("careflow-")}
    assert all(
        gp.accepts_kind(k) for k in careflow_kinds | {MessageKind.ACKNOWLEDGEMENT, MessageKind.CARE_COMMUNICATION}
    )
    hospital = directory.get(HOSPITAL_SOR)
    assert hospital.endpoint == "http://127.0.0.1:8100/partners/200000000000001/$process-message"
    assert hospital.accepted_codes == {
        "careflow-referral-message",
        "careflow-cancellation-message",
        "acknowledgement-message",
        "care-communication-message",
    }
    assert directory.get(LAB_SOR).accepted_codes == {"acknowledgement-message", "careflow-referral-message"}
    municipality = directory.get(MUNICIPALITY_SOR)
    assert (municipality.name, municipality.kind) == ("Demo Kommune Hjemmepleje", "municipality")
    assert municipality.accepted_codes == {
        "care-communication-message",
        "hospital-notification-message",
        "acknowledgement-message",
        "careflow-home-care-request-message",
    }


def test_lookup_by_ean_and_organization(directory: Directory) -> None:
    entry = directory.get(HOSPITAL_SOR)
    assert directory.find_by_ean(entry.ean) is entry
    assert entry.organization.model_dump() == {"sor": entry.sor, "ean": entry.ean, "name": entry.name}


def test_unknown_organization_is_a_key_error(directory: Directory) -> None:
    with pytest.raises(KeyError):
        directory.get("999999999999999")
    with pytest.raises(UnknownOrganization):
        directory.find_by_ean("5790000000000")


def test_require_accepts(directory: Directory) -> None:
    assert directory.require_accepts(HOSPITAL_SOR, MessageKind.REFERRAL).sor == HOSPITAL_SOR
    with pytest.raises(NotAccepted):
        directory.require_accepts(LAB_SOR, MessageKind.APPOINTMENT)
    with pytest.raises(NotAccepted):
        directory.require_accepts(MUNICIPALITY_SOR, MessageKind.REFERRAL)


def test_versioned_accepts_match_on_the_code(directory: Directory) -> None:
    versioned = next(e for e in directory.entries if any("|" in a for a in e.accepts))
    code = next(a for a in versioned.accepts if "|" in a).split("|")[0]
    assert directory.require_accepts(versioned.sor, code) is versioned


def test_bad_rows_are_named(tmp_path: Path, directory: Directory) -> None:
    good = directory.get(GP_SOR).model_dump()
    rows = [
        good,
        {**good, "sor": "200000000000009", "ean": good["ean"][:12] + str((int(good["ean"][12]) + 1) % 10)},
        {**good, "sor": "200000000000010", "ean": "5790000209354", "kind": "pharmacy"},
        {key: value for key, value in good.items() if key != "endpoint"}
        | {"sor": "200000000000011", "ean": "5790000127092"},
        {**good, "ean": "5790001348120"},  # duplicate SOR of row 0
    ]
    path = tmp_path / "directory.json"
    path.write_text(json.dumps({"entries": rows}))
    with pytest.raises(DirectoryError) as caught:
        Directory.load(path)
    problems = caught.value.problems
    assert any(p.startswith("row 1 field 'ean'") for p in problems)
    assert any(p.startswith("row 2 field 'kind'") for p in problems)
    assert any(p.startswith("row 3 field 'endpoint'") for p in problems)
    assert any(p.startswith("row 4 field 'sor'") and "duplicate" in p for p in problems)
    assert not any(p.startswith("row 0") for p in problems)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError):
        Directory.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DirectoryError):
        Directory.load(tmp_path / "bad.json")


def test_each_entry_names_its_transport_and_the_switch_overrides_it(tmp_path: Path) -> None:
    from tests.conftest import DEMO_DIRECTORY

    own = Directory.load(DEMO_DIRECTORY)
    assert own.route(HOSPITAL_SOR).transport == "process-message"
    assert own.route(HOSPITAL_SOR).url.endswith(f"/partners/{HOSPITAL_SOR}/$process-message")
    vans = Directory.load(DEMO_DIRECTORY, transport="vans")
    assert vans.route(HOSPITAL_SOR).transport == "vans"
    assert vans.route(HOSPITAL_SOR).url == f"http://127.0.0.1:8100/partners/{HOSPITAL_SOR}/vans"
    assert vans.route(GP_SOR).url == "http://127.0.0.1:8000/vans/envelope", "careflow's own VANS endpoint"
    remote = next(e for e in vans.entries if e.vans_endpoint is None)
    assert vans.route(remote.sor).transport == "process-message", "no VANS endpoint: its own transport"
    rows = [own.get(HOSPITAL_SOR).model_dump() | {"transport": "vans", "vans_endpoint": None}]
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"entries": rows}))
    with pytest.raises(DirectoryError) as caught:
        Directory.load(path)
    assert any(p.startswith("row 0 field 'vans_endpoint'") for p in caught.value.problems)


def test_careflow_acts_for_its_own_organisations_whose_endpoints_are_careflows(directory: Directory) -> None:
    acted_for = directory.acted_for
    assert {e.sor for e in acted_for} == {GP_SOR, "200000000000002", "400000000000002"}
    assert all(e.endpoint.startswith("http://127.0.0.1:8000/") for e in acted_for)
    assert all(e.vans_endpoint == "http://127.0.0.1:8000/vans/envelope" for e in acted_for)
    assert not directory.acts_for(HOSPITAL_SOR) and not directory.acts_for("999")


def test_vans_document_agreements_for_types_without_a_catalogue_entry(directory: Directory) -> None:
    agreed = directory.vans_document(HOSPITAL_SOR, MessageKind.REFERRAL)
    assert (agreed.name, agreed.version) == ("CAREFLOW:careflow-referral-message", "1.0")
    assert directory.vans_document(HOSPITAL_SOR, MessageKind.HOMECARE_OBSERVATION).version == "1.2.1"
    assert Directory(directory.entries).vans_document(HOSPITAL_SOR, MessageKind.REFERRAL) is None
