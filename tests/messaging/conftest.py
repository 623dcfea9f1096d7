"""Fixtures for the messaging tests: MedCom's published examples and synthetic envelopes."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from careflow.settings import get_settings
from messaging import Envelope, PatientData
from messaging.directory import Directory


def example_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json")) if folder.is_dir() else []


def require_examples_dir(folder: Path) -> Path:
    """The examples folder; absent, the test skips — except in CI, where it must fail."""
    if folder.is_dir() and example_files(folder):
        return folder
    reason = f"MedCom examples folder {folder} is absent (settings.medcom_examples_dir)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + "; CI=true requires it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def medcom_examples() -> Path:
    return require_examples_dir(get_settings().medcom_examples_dir)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # One test per example file; a single None when the folder is absent, so the
    # medcom_examples fixture gets the chance to skip (or fail in CI).
    if "example_path" in metafunc.fixturenames:
        files = example_files(get_settings().medcom_examples_dir)
        ids = [f"{p.parent.name}/{p.name}" for p in files]
        metafunc.parametrize("example_path", files or [None], ids=ids or ["no-examples"])


@pytest.fixture(scope="session")
def directory() -> Directory:
    return Directory.load(get_settings().directory_path)


GP_SOR, HOSPITAL_SOR, LAB_SOR, MUNICIPALITY_SOR = (
    "100000000000001",
    "200000000000001",
    "300000000000001",
    "400000000000001",
)
# Synthetic: valid format, born 1901 — belongs to nobody in practice.
SYNTHETIC_CPR = "0101010000"
TIMESTAMP = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)


@pytest.fixture
def envelope(directory: Directory) -> Envelope:
    return Envelope(
        message_header_id="0f4c4a52-9a1e-4f0e-9a55-3a3d8f1b2c01",
        bundle_id="6b0f9d8e-2c1a-4b7e-8f3d-5e6a7b8c9d02",
        timestamp=TIMESTAMP,
        sender=directory.get(GP_SOR).organization,
        receiver=directory.get(HOSPITAL_SOR).organization,
        patient=PatientData(cpr=SYNTHETIC_CPR, given_name="Testa", family_name="Syntetisk"),
    )
