"""`messages validate` and `messages convert`, in-process and as `python -m messaging.cli`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from messaging import from_xml
from messaging.cli import main

PROJECT = Path(__file__).resolve().parents[2]


def test_validate_examples_folder(medcom_examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["messages", "validate", str(medcom_examples)]) == 0
    out = capsys.readouterr().out.splitlines()
    count = len(list(medcom_examples.rglob("*.json")))
    assert out[-1] == f"{count} files: {count} valid, 0 invalid"
    assert all(line.startswith("OK ") for line in out[:-1])


def test_validate_broken_file(medcom_examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = next(medcom_examples.rglob("carecommunication/*.json"))
    bundle = json.loads(example.read_text())
    bundle["type"] = "collection"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(bundle))
    (tmp_path / "garbage.xml").write_text("<not-closed")
    assert main(["messages", "validate", str(tmp_path), str(example)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR {broken}: [bundle-type] Bundle.type" in out
    assert "[syntax]" in out
    assert out.splitlines()[-1] == "3 files: 1 valid, 2 invalid"


def test_validate_json_report(medcom_examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = next(medcom_examples.rglob("acknowledgement/*.json"))
    assert main(["messages", "validate", "--json", str(example)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"] == {"files": 1, "valid": 1, "invalid": 0}
    assert report["files"][0]["issues"] == []


def test_convert_to_xml_and_back(medcom_examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = next(medcom_examples.rglob("hospitalnotification/*.json"))
    assert main(["messages", "convert", str(example), "--to", "xml"]) == 0
    xml = capsys.readouterr().out
    assert xml.startswith("<?xml")
    (tmp_path / "m.xml").write_text(xml)
    assert main(["messages", "validate", str(tmp_path / "m.xml")]) == 0
    capsys.readouterr()
    assert main(["messages", "convert", str(tmp_path / "m.xml"), "--to", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == from_xml(xml.encode())


def test_standalone_module(medcom_examples: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "messaging.cli", "messages", "validate", str(medcom_examples / "acknowledgement")],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("valid, 0 invalid")


def test_no_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["messages", "validate", str(tmp_path)]) == 1
