"""Terminology: read from the .fsh folder once, with a packaged snapshot that matches it."""

from __future__ import annotations

from pathlib import Path

from careflow.settings import get_settings
from messaging.model import MessageKind
from messaging.terminology import (
    CAREFLOW_EVENT_SYSTEM,
    CAREFLOW_KINDS,
    MEDCOM_ACTIVITY_SYSTEM,
    MEDCOM_ERROR_SYSTEM,
    MEDCOM_EVENT_SYSTEM,
    event_system_for,
    load_terminology,
    parse_folder,
)


def test_snapshot_matches_the_terminology_folder(tmp_path: Path) -> None:
    folder = get_settings().medcom_terminology_dir
    fallback = load_terminology(tmp_path / "absent")
    assert fallback.source.endswith("medcom-terminology.json")
    if folder.is_dir():
        assert parse_folder(folder).to_json() == fallback.to_json(), "run python -m messaging.terminology"


def test_medcom_codes(tmp_path: Path) -> None:
    terminology = load_terminology(tmp_path / "absent")
    assert terminology.has(MEDCOM_EVENT_SYSTEM, "care-communication-message")
    assert terminology.has(MEDCOM_EVENT_SYSTEM, "Care-Communication-Message")  # the code system is case-insensitive
    assert not terminology.has(MEDCOM_EVENT_SYSTEM, "careflow-referral-message")
    assert terminology.is_activity(MEDCOM_ACTIVITY_SYSTEM, "acknowledgement")
    assert terminology.has(MEDCOM_ERROR_SYSTEM, "MSG_Element_To_Long")


def test_careflow_kinds_use_their_own_event_system() -> None:
    # the built-in careflow kinds, and any careflow-style type a module registered (tests do)
    assert {k for k in MessageKind if k.value.startswith("careflow-")} <= CAREFLOW_KINDS
    assert all(event_system_for(code) == CAREFLOW_EVENT_SYSTEM for code in CAREFLOW_KINDS)
    assert not {k for k in MessageKind if not k.value.startswith("careflow-")} & CAREFLOW_KINDS
    assert event_system_for(MessageKind.REFERRAL) != MEDCOM_EVENT_SYSTEM
    assert event_system_for(MessageKind.CARE_COMMUNICATION) == MEDCOM_EVENT_SYSTEM


def test_loaded_once_per_folder() -> None:
    folder = get_settings().medcom_terminology_dir
    assert load_terminology(folder) is load_terminology(folder)


def test_warm_up_runs_on_synthetic_data() -> None:
    from messaging import warm_up

    warm_up()
