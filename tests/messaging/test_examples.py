"""MedCom's published examples: each parses, validates clean and round-trips through JSON and XML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from messaging import from_xml, parse_message, to_json, to_xml, validate_message
from tests.messaging.conftest import require_examples_dir

_CHAR_REF = re.compile(r"&#(x[0-9a-fA-F]+|\d+);")
_UTC_OFFSET = re.compile(r"^(\d{4}-\d{2}-\d{2}T[0-9:.]+)\+00:00$")


def fhir_equal_form(node, key: str | None = None):  # noqa: ANN001, ANN201
    """Normalise the two differences that do not change FHIR meaning: narrative character
    references (ø vs &#248;) and a +00:00 offset written as Z. Nothing else is touched."""
    if isinstance(node, dict):
        return {k: fhir_equal_form(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [fhir_equal_form(v) for v in node]
    if isinstance(node, str):
        if key == "div":
            return _CHAR_REF.sub(
                lambda m: chr(int(m.group(1)[1:], 16) if m.group(1)[0] == "x" else int(m.group(1))), node
            )
        return _UTC_OFFSET.sub(r"\1Z", node)
    return node


def test_normalisation_only_touches_harmless_differences() -> None:
    assert fhir_equal_form({"div": "<p>Sk&#248;d</p>"}) == {"div": "<p>Skød</p>"}
    assert fhir_equal_form({"recorded": "2024-01-01T10:00:00+00:00"}) == {"recorded": "2024-01-01T10:00:00Z"}
    assert fhir_equal_form({"div": "<p>a</p>"}) != fhir_equal_form({"div": "<p>b</p>"})
    assert fhir_equal_form({"recorded": "2024-01-01T10:00:00+02:00"}) != fhir_equal_form(
        {"recorded": "2024-01-01T10:00:00Z"}
    )


def _load(example_path: Path | None, medcom_examples: Path) -> dict:
    assert example_path is not None, "no examples yet the fixture did not skip"
    return json.loads(example_path.read_bytes())


def test_example_parses(example_path: Path | None, medcom_examples: Path) -> None:
    original = _load(example_path, medcom_examples)
    parsed = parse_message(example_path.read_bytes())
    header = original["entry"][0]["resource"]
    assert parsed.message_header_id == header["id"]
    assert parsed.bundle_id == original["id"]
    assert parsed.event_code == header["eventCoding"]["code"]
    assert parsed.sender is not None and parsed.sender.sor
    assert parsed.receiver is not None and parsed.receiver.ean
    assert parsed.provenance, "every MedCom example carries its Provenance chain"


def test_example_validates_clean(example_path: Path | None, medcom_examples: Path) -> None:
    issues = validate_message(_load(example_path, medcom_examples))
    assert issues == []


def test_example_round_trips_json(example_path: Path | None, medcom_examples: Path) -> None:
    original = _load(example_path, medcom_examples)
    via_model = json.loads(Bundle.model_validate(original).model_dump_json())
    assert fhir_equal_form(via_model) == fhir_equal_form(original)
    assert json.loads(to_json(original)) == original


def test_example_round_trips_xml(example_path: Path | None, medcom_examples: Path) -> None:
    original = _load(example_path, medcom_examples)
    back = from_xml(to_xml(original))
    assert fhir_equal_form(back) == fhir_equal_form(original)
    assert parse_message(to_xml(original), "application/fhir+xml; charset=utf-8") == parse_message(original)


def test_missing_examples_skip_locally_and_fail_in_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = tmp_path / "no-such-folder"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="absent"):
        require_examples_dir(absent)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_examples_dir(absent)
