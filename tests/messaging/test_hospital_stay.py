"""HospitalNotification codes of a hospital stay (messaging/hospital_stay.py): each code's Encounter,
activity and Provenance history as MedCom's table says (MEDCOM-FACTS §3), the governance's refusals,
and the messages careflow builds compared with MedCom's official examples, shape for shape."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from messaging import Envelope, Organization, PatientData
from messaging.build import build_message
from messaging.hospital_stay import (
    CANCEL,
    DEATH,
    DISCHARGE,
    LEAVE_END,
    LEAVE_START,
    REVISE,
    Refused,
    Sent,
    Stay,
    StayAdmission,
)
from messaging.model import MessageKind
from messaging.parse import parse_message
from messaging.types.hospital_notification import LEAVE_PERIOD_EXTENSION, REPORT_OF_ADMISSION_EXTENSION
from messaging.validate import validate_message
from tests.messaging.conftest import SYNTHETIC_CPR

HOSPITAL = Organization(sor="200000000000001", ean="5790020000016", name="Kardiologisk afdeling, Demo Hospital")
MUNICIPALITY = Organization(sor="400000000000001", ean="5790040000010", name="Demo Kommune Hjemmepleje")
ADMITTED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EPISODE = "5c9d6f0e-3a5b-4f0e-9d1c-2b7a8e6f4d31"


def _resources(bundle: dict, resource_type: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


class StayScript:
    """Plays a hospital's reports through Stay as the pathway does: each report's notification is
    planned from the notifications sent before it, built, validated and recorded as sent."""

    def __init__(self, acute_ambulant: bool = False, report_of_admission: bool = False) -> None:
        self.admission = StayAdmission(
            admitted_at=ADMITTED,
            acute_ambulant=acute_ambulant,
            encounter_id="flow-1",
            episode_of_care_id=EPISODE,
            report_of_admission=report_of_admission,
        )
        self.sent: list[Sent] = []
        self.bundles: list[dict] = []
        self.codes: list[str] = []
        self.clock = ADMITTED + timedelta(seconds=2)
        self._send("admission", {}, "STAA" if acute_ambulant else "STIN", None)

    def stay(self) -> Stay:
        return Stay(self.admission, self.sent, HOSPITAL.sor)

    def report(self, event: str, after: timedelta = timedelta(hours=5), **data: object) -> dict:
        self.clock += after
        payload = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}
        planned = self.stay().plan(event, payload, self.clock)
        return self._send(event, payload, planned.code, planned.content)

    def _send(self, event: str, data: dict, code: str, content: object) -> dict:
        header_id = f"00000000-0000-4000-8000-{len(self.sent):012d}"
        content = content or self.stay().admission_content()
        envelope = Envelope(
            message_header_id=header_id,
            bundle_id=f"10000000-0000-4000-8000-{len(self.sent):012d}",
            timestamp=self.clock,
            sender=HOSPITAL,
            receiver=MUNICIPALITY,
            patient=PatientData(cpr=SYNTHETIC_CPR, family_name="Syntetisk"),
        )
        bundle = build_message(MessageKind.HOSPITAL_NOTIFICATION, envelope, content)
        assert validate_message(bundle) == [], code
        self.sent.append(Sent(header_id, self.clock, event, data))
        self.bundles.append(bundle)
        self.codes.append(code)
        return bundle


def _summary(bundle: dict) -> dict:
    encounter = _resources(bundle, "Encounter")[0]
    patient = _resources(bundle, "Patient")[0]
    header = bundle["entry"][0]["resource"]
    current = next(
        p for p in _resources(bundle, "Provenance") if p["target"][0]["reference"] == f"MessageHeader/{header['id']}"
    )
    leave = next((e["valuePeriod"] for e in encounter.get("extension", []) if e["url"] == LEAVE_PERIOD_EXTENSION), None)
    return {
        "status": encounter["status"],
        "class": encounter["class"]["code"],
        "activity": current["activity"]["coding"][0]["code"],
        "role": [e["role"] for e in current.get("entity", [])],
        "what": [e["what"]["reference"].split("/")[1] for e in current.get("entity", [])],
        "end": "end" in encounter["period"],
        "leave": sorted(leave) if leave else None,
        "deceased": patient.get("deceasedBoolean"),
        "provenances": len(_resources(bundle, "Provenance")),
    }


def test_admit_leave_return_discharge_follow_medcoms_table() -> None:
    script = StayScript()
    script.report(LEAVE_START)
    script.report(LEAVE_END, after=timedelta(days=1))
    script.report(DISCHARGE, after=timedelta(days=2))
    ids = [s.message_header_id for s in script.sent]
    assert script.codes == ["STIN", "STOR", "SLOR", "SLHJ"]
    summaries = [_summary(b) for b in script.bundles]
    assert summaries[0] == {
        "status": "in-progress",
        "class": "IMP",
        "activity": "admit-inpatient",
        "role": [],
        "what": [],
        "end": False,
        "leave": None,
        "deceased": None,
        "provenances": 1,
    }
    assert summaries[1] | {"leave": summaries[1]["leave"]} == {
        **summaries[0],
        "status": "onleave",
        "activity": "start-leave-inpatient",
        "role": ["revision"],
        "what": [ids[0]],  # STOR → STIN
        "leave": ["start"],
        "provenances": 2,
    }
    assert summaries[2]["status"] == "in-progress" and summaries[2]["activity"] == "end-leave-inpatient"
    assert summaries[2]["what"] == [ids[1]] and summaries[2]["leave"] == ["end", "start"]  # SLOR → STOR
    assert summaries[3] == {
        "status": "finished",
        "class": "IMP",
        "activity": "discharge-inpatient-home",
        "role": ["revision"],
        "what": [ids[2]],
        "end": True,
        "leave": None,
        "deceased": None,
        "provenances": 4,
    }


def test_every_later_message_restates_every_earlier_provenance() -> None:
    script = StayScript()
    script.report(LEAVE_START)
    script.report(REVISE, at=ADMITTED + timedelta(hours=4))
    script.report(LEAVE_END)
    script.report(DISCHARGE)
    for k, bundle in enumerate(script.bundles):
        provenances = _resources(bundle, "Provenance")
        assert len(provenances) == k + 1
        by_target = {p["target"][0]["reference"]: p for p in provenances}
        for earlier_index, earlier in enumerate(script.bundles[:k]):
            own = next(
                p
                for p in _resources(earlier, "Provenance")
                if p["target"] == [{"reference": f"MessageHeader/{script.sent[earlier_index].message_header_id}"}]
            )
            restated = by_target[f"MessageHeader/{script.sent[earlier_index].message_header_id}"]
            for element in ("target", "activity", "entity", "occurredDateTime", "recorded", "agent"):
                assert restated.get(element) == own.get(element), (k, earlier_index, element)
        # ids are unique inside a Bundle and stable across a resend of the same message
        assert len({p["id"] for p in provenances}) == len(provenances)
    # the correction: revise-start-leave-inpatient, what = the STOR it corrects
    assert script.codes == ["STIN", "STOR", "RE_STOR", "SLOR", "SLHJ"]
    assert _summary(script.bundles[2])["what"] == [script.sent[1].message_header_id]
    assert _summary(script.bundles[2])["status"] == "onleave"
    # SLOR follows the latest message, the correction
    assert _summary(script.bundles[3])["what"] == [script.sent[2].message_header_id]


@pytest.mark.parametrize(
    ("events", "code", "status", "activity", "deceased"),
    [
        ([], "RE_STIN", "in-progress", "revise-admit-inpatient", None),
        ([LEAVE_START], "RE_STOR", "onleave", "revise-start-leave-inpatient", None),
        ([LEAVE_START, LEAVE_END], "RE_SLOR", "in-progress", "revise-end-leave-inpatient", None),
        ([DISCHARGE], "RE_SLHJ", "finished", "revise-discharge-inpatient-home", None),
        ([DEATH], "RE_MORS", "finished", "admit-inpatient", True),
    ],
)
def test_corrections(events: list[str], code: str, status: str, activity: str, deceased: bool | None) -> None:
    script = StayScript()
    for event in events:
        script.report(event)
    corrected = script.clock - timedelta(minutes=30)
    bundle = script.report(REVISE, after=timedelta(minutes=10), at=corrected)
    assert script.codes[-1] == code
    summary = _summary(bundle)
    assert (summary["status"], summary["activity"], summary["deceased"]) == (status, activity, deceased)
    assert summary["role"] == ["revision"] and summary["what"] == [script.sent[-2].message_header_id]


@pytest.mark.parametrize(
    ("events", "code", "status", "activity", "deceased"),
    [
        ([], "AN_STIN", "entered-in-error", "cancel-admit-inpatient", None),
        ([LEAVE_START], "AN_STOR", "in-progress", "cancel-start-leave-inpatient", None),
        ([LEAVE_START, LEAVE_END], "AN_SLOR", "onleave", "cancel-end-leave-inpatient", None),
        ([DISCHARGE], "AN_SLHJ", "in-progress", "cancel-discharge-inpatient-home", None),
        ([LEAVE_START, DEATH], "AN_MORS", "onleave", "start-leave-inpatient", False),
    ],
)
def test_cancellations(events: list[str], code: str, status: str, activity: str, deceased: bool | None) -> None:
    script = StayScript()
    for event in events:
        script.report(event)
    bundle = script.report(CANCEL, after=timedelta(minutes=10))
    assert script.codes[-1] == code
    summary = _summary(bundle)
    assert (summary["status"], summary["activity"], summary["deceased"]) == (status, activity, deceased)
    assert summary["role"] == ["removal"] and summary["what"] == [script.sent[-2].message_header_id]
    assert script.stay().ended is (code == "AN_STIN")


def test_acute_ambulant_stay_and_death() -> None:
    script = StayScript(acute_ambulant=True, report_of_admission=True)
    first = script.bundles[0]
    header = first["entry"][0]["resource"]
    assert next(e["url"] for e in header["extension"]) == REPORT_OF_ADMISSION_EXTENSION
    with pytest.raises(Refused, match="inpatient"):
        script.stay().plan(LEAVE_START, {}, script.clock)  # no leave from an acute ambulant stay
    script.report(DEATH)
    summary = _summary(script.bundles[-1])
    assert script.codes == ["STAA", "MORS"]
    assert (summary["class"], summary["status"], summary["activity"], summary["deceased"], summary["end"]) == (
        "EMER",
        "finished",
        "admit-emergency",  # MORS keeps the current activity
        True,
        True,
    )
    # a later message of the stay does not ask for the report of admission again
    assert "extension" not in script.bundles[-1]["entry"][0]["resource"]


@pytest.mark.parametrize(
    ("events", "event", "data", "reason"),
    [
        ([], LEAVE_END, {}, "only end while the patient is on leave"),
        ([LEAVE_START], LEAVE_START, {}, "inpatient stay in progress"),
        ([LEAVE_START], DISCHARGE, {}, "end of the leave first"),
        ([DISCHARGE], DISCHARGE, {}, "already ended"),
        ([DISCHARGE], LEAVE_START, {}, "already ended"),
        ([DISCHARGE], DEATH, {}, "already ended"),
        ([DEATH], DISCHARGE, {}, "only the death notice"),
        ([CANCEL], LEAVE_START, {}, "admission was cancelled"),
        ([], LEAVE_START, {"at": "2099-01-01T00:00:00+01:00"}, "future-dated"),
        ([], LEAVE_START, {"at": "2020-01-01T00:00:00+01:00"}, "before the hospital stay started"),
        ([], LEAVE_START, {"at": "yesterday"}, "ISO 8601"),
        ([], LEAVE_START, {"at": "2026-03-02T13:00:00"}, "time zone"),
        ([], "transfer", {}, "unknown stay event"),
        ([LEAVE_START], REVISE, {"at": "2026-03-02T11:00:00+00:00"}, "does not fit"),
    ],
)
def test_reports_the_governance_refuses(events: list[str], event: str, data: dict, reason: str) -> None:
    script = StayScript()
    for earlier in events:
        script.report(earlier)
    with pytest.raises(Refused, match=reason):
        script.stay().plan(event, data, script.clock + timedelta(hours=1))


def test_a_resend_builds_the_same_message() -> None:
    """The same notification sent again (same header, new Bundle.id) carries the same resources."""
    script = StayScript()
    script.report(LEAVE_START)
    stay = Stay(script.admission, script.sent[:1], HOSPITAL.sor)
    again = stay.plan(LEAVE_START, script.sent[1].data, script.sent[1].sent_at).content
    envelope = Envelope(
        message_header_id=script.sent[1].message_header_id,
        bundle_id="20000000-0000-4000-8000-000000000001",
        timestamp=script.sent[1].sent_at,
        sender=HOSPITAL,
        receiver=MUNICIPALITY,
        patient=PatientData(cpr=SYNTHETIC_CPR, family_name="Syntetisk"),
    )
    resent = build_message(MessageKind.HOSPITAL_NOTIFICATION, envelope, again)
    assert resent["entry"] == script.bundles[1]["entry"] and resent["id"] != script.bundles[1]["id"]
    parsed = parse_message(resent)
    assert parsed.correlation.episode_of_care_id == EPISODE
    assert [(p.activity, p.previous_header_id) for p in parsed.provenance] == [
        ("admit-inpatient", None),
        ("start-leave-inpatient", script.sent[0].message_header_id),
    ]


# ----- against MedCom's official examples ---------------------------------------------------------

# The official HospitalNotification 3.0.2 examples, by the use case each shows (their titles in the IG).
EXAMPLES = {
    "STIN": "Bundle-a5e5b880-c087-4055-b9ec-99108695f81d.json",
    "RE_STIN": "Bundle-bfab3e80-9584-11ec-b909-0242ac120002.json",
    "AN_STIN": "Bundle-c83671a4-9584-11ec-b909-0242ac120002.json",
    "STOR": "Bundle-d3128d9b-cede-4c7f-8904-809eab322d7d.json",
    "SLOR": "Bundle-e94de8ee-bd94-475e-b454-b8fbbef8a685.json",
    "SLHJ": "Bundle-f4aa42a4-86db-4e68-9b38-9dda0dfd5774.json",
    "MORS": "Bundle-g099bbf3-3fca-4722-a248-bfe1aa956410.json",
    "STAA": "Bundle-h1c8e4a8-6b45-4669-94ad-2a99ad96bf03.json",
    "SLHJ-EMER": "Bundle-kcab461b-f44e-4d97-a041-ef7e64800587.json",
    "MORS-EMER": "Bundle-ld31e08a-b91f-49c3-841a-ce80e6380517.json",
}
# How careflow gets to each: the reports after the admission.
SCRIPTS = {
    "STIN": (False, []),
    "RE_STIN": (False, [REVISE]),
    "AN_STIN": (False, [CANCEL]),
    "STOR": (False, [LEAVE_START]),
    "SLOR": (False, [LEAVE_START, LEAVE_END]),
    "SLHJ": (False, [DISCHARGE]),
    "MORS": (False, [DEATH]),
    "STAA": (True, []),
    "SLHJ-EMER": (True, [DISCHARGE]),
    "MORS-EMER": (True, [DEATH]),
}


def _all(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle["entry"]]


def _shape(bundle: dict) -> dict:
    """What must match MedCom's example: event code, resource types, profiles, the Encounter's
    status/class/period/leave, Patient.deceased, and the Provenance chain in time order — each
    Provenance's activity and entity roles, and which earlier message (by position) it refers to."""
    header = bundle["entry"][0]["resource"]
    provenances = sorted(_resources(bundle, "Provenance"), key=lambda p: p["recorded"])
    order = [p["target"][0]["reference"] for p in provenances]
    encounter = _resources(bundle, "Encounter")[0]
    leave = next((e["valuePeriod"] for e in encounter.get("extension", []) if e["url"] == LEAVE_PERIOD_EXTENSION), {})
    return {
        "event": header["eventCoding"],
        "types": Counter(e["resource"]["resourceType"] for e in bundle["entry"]),
        "profiles": sorted({(r["resourceType"], *r["meta"]["profile"]) for r in _all(bundle)}),
        "bundle_profile": bundle["meta"]["profile"],
        "encounter": (encounter["status"], encounter["class"], sorted(encounter["period"]), sorted(leave)),
        "deceased": _resources(bundle, "Patient")[0].get("deceasedBoolean"),
        "chain": [
            (
                p["activity"]["coding"][0],
                [(e["role"], order.index(e["what"]["reference"])) for e in p.get("entity", [])],
            )
            for p in provenances
        ],
        "current_is_last": order[-1] == f"MessageHeader/{header['id']}",
    }


@pytest.mark.parametrize("use_case", list(EXAMPLES))
def test_careflows_messages_have_the_shape_of_medcoms_examples(medcom_examples: Path, use_case: str) -> None:
    example = json.loads((medcom_examples / "hospitalnotification" / EXAMPLES[use_case]).read_text(encoding="utf-8"))
    assert validate_message(example) == []
    acute, events = SCRIPTS[use_case]
    script = StayScript(acute_ambulant=acute, report_of_admission=use_case in ("STIN", "STAA"))
    for event in events:
        script.report(event, **({"at": script.clock - timedelta(minutes=1)} if event == REVISE else {}))
    ours = _shape(script.bundles[-1])
    theirs = _shape(example)
    assert ours == theirs


def test_a_care_communication_about_the_stay_echoes_its_episode_and_replies_in_thread(medcom_examples: Path) -> None:
    """The dialogue's messages: the episode-of-care id of the stay in an Encounter (as MedCom's
    carecoordination example), a reply's Provenance reply-message naming the message it answers."""
    from messaging.types.care_communication import CareCommunicationContent

    example = json.loads(
        (medcom_examples / "carecommunication" / "Bundle-k7bfbc0c-553d-11ed-bdc3-0242ac120002.json").read_text()
    )
    envelope = Envelope(
        message_header_id="30000000-0000-4000-8000-000000000001",
        bundle_id="30000000-0000-4000-8000-000000000002",
        timestamp=ADMITTED + timedelta(hours=3),
        sender=MUNICIPALITY,
        receiver=HOSPITAL,
        patient=PatientData(cpr=SYNTHETIC_CPR),
    )
    content = CareCommunicationContent(
        communication_id="59aac95e-ca57-4b04-b075-9880b7e6441c",
        text="Hvornår forventes udskrivelse?",
        category="carecoordination",
        previous_header_id="00000000-0000-4000-8000-000000000000",
        episode_of_care_id=EPISODE,
        episode_of_care_system="https://sor2.sum.dsdn.dk/#id=" + HOSPITAL.sor,
    )
    bundle = build_message(MessageKind.CARE_COMMUNICATION, envelope, content)
    assert validate_message(bundle) == []

    def shape(b: dict) -> dict:
        communication = _resources(b, "Communication")[0]
        encounter = _resources(b, "Encounter")[0]
        provenance = _resources(b, "Provenance")[-1]
        return {
            "types": sorted({r["resourceType"] for r in _all(b)} - {"Practitioner", "PractitionerRole"}),
            "encounter": communication["encounter"]["reference"] == f"Encounter/{encounter['id']}",
            "episode": sorted(encounter["episodeOfCare"][0]["identifier"]),
            "profile": encounter["meta"]["profile"],
            "activity": provenance["activity"]["coding"][0]["code"],
            "roles": [e["role"] for e in provenance["entity"] if e["role"] == "revision"],
        }

    assert shape(bundle) == shape(example)
    parsed = parse_message(bundle)
    assert parsed.correlation.episode_of_care_id == EPISODE
    assert parsed.correlation.thread_id == content.communication_id
    assert [(p.activity, p.previous_header_id) for p in parsed.provenance] == [
        ("reply-message", "00000000-0000-4000-8000-000000000000")
    ]


@pytest.mark.parametrize(
    ("break_it", "rule"),
    [
        (lambda b: _resources(b, "Provenance")[0]["activity"]["coding"][0].update(code="new-message"), "activity"),
        (lambda b: _resources(b, "Patient")[0]["identifier"][0].update(system="urn:oid:1.2.208.176.1.6.1.1"), "cpr"),
        (lambda b: _resources(b, "Encounter")[0].pop("extension"), "leave"),
        (lambda b: _resources(b, "Encounter")[0].update(status="cancelled"), "encounter"),
    ],
    ids=["not a notification activity", "replacement CPR", "on leave without its start", "status cancelled"],
)
def test_the_validator_holds_notifications_to_medcoms_invariants(medcom_examples: Path, break_it, rule: str) -> None:  # noqa: ANN001
    example = json.loads((medcom_examples / "hospitalnotification" / EXAMPLES["STOR"]).read_text(encoding="utf-8"))
    assert validate_message(example) == []
    break_it(example)
    assert {i.rule for i in validate_message(example)} >= {f"hospital-notification-{rule}"}


def test_the_care_communication_categories_a_workflow_checks_are_medcoms() -> None:
    from messaging.terminology import get_terminology
    from messaging.types.care_communication import CATEGORIES, CATEGORY_SYSTEM

    assert set(CATEGORIES) == set(get_terminology().code_systems[CATEGORY_SYSTEM].codes)
