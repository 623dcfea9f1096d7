"""The FHIR structure check (messaging/validate.py `check_structure`) validates each entry's resource
by its own model and remembers resources found valid; what it reports must be exactly what
fhir.resources' Bundle model reports in one pass. Checked on MedCom's examples, each mutated at
random places into values of the wrong type or shape (seeded: the same mutations every run)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from messaging import validate
from messaging.validate import validate_message

WRONG = [True, 12, "x", [], {}, None, "2020-13-45", {"a": 1}, [1, 2], -0.5]


def one_pass(bundle: dict) -> list[tuple[str, str]]:
    """What the Bundle model finds, as check_structure words it."""
    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        return sorted(
            (validate._loc_path(tuple(e["loc"])), f"invalid FHIR content ({e['type']})")
            for e in exc.errors(include_input=False, include_url=False)
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        return [("Bundle", f"invalid FHIR content ({type(exc).__name__})")]
    return []


def reported(bundle: dict) -> list[tuple[str, str]]:
    return sorted((i.path, i.message) for i in validate_message(bundle) if i.rule == "fhir-structure")


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    found: list[tuple] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _mutable(path: tuple) -> bool:
    # Not the entries themselves, nor a resource or its type: those are the unknown-type rule's.
    return not (
        path == ("entry",)
        or (len(path) == 2 and path[0] == "entry")
        or (len(path) == 3 and path[2] == "resource")
        or (len(path) == 4 and path[3] == "resourceType")
    )


def _set(bundle: dict, path: tuple, value: object) -> None:
    target = bundle
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


@pytest.fixture
def cold_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "_valid", {})


def test_each_example_as_the_bundle_model_sees_it(medcom_examples: Path, cold_cache: None) -> None:
    rng = random.Random(20261130)
    compared = found_issues = 0
    for path in sorted(medcom_examples.rglob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        if bundle.get("resourceType") != "Bundle":
            continue
        assert reported(bundle) == one_pass(bundle) == [], path.name
        places = [p for p in _paths(bundle) if _mutable(p)]
        for _ in range(15):
            mutated = copy.deepcopy(bundle)
            place, value = rng.choice(places), rng.choice(WRONG)
            _set(mutated, place, value)
            expected = one_pass(mutated)
            # twice: with what the first run remembered as valid
            assert reported(mutated) == expected == reported(mutated), (path.name, place, value)
            compared += 1
            found_issues += bool(expected)
    assert compared > 100 and found_issues > compared // 3, "the mutations must break something, often"


def test_a_resource_found_valid_is_not_validated_again(medcom_examples: Path, cold_cache: None) -> None:
    bundle = json.loads(next(medcom_examples.rglob("Bundle-*.json")).read_text(encoding="utf-8"))
    assert reported(bundle) == []
    remembered = len(validate._valid)
    assert remembered == len(bundle["entry"])
    assert reported(copy.deepcopy(bundle)) == [] and len(validate._valid) == remembered
    # the same resource with one value changed is another resource: validated, and refused
    changed = copy.deepcopy(bundle)
    changed["entry"][0]["resource"]["id"] = 12
    assert reported(changed) == one_pass(changed) != []


def test_remembered_resources_are_bounded(
    medcom_examples: Path, cold_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validate, "VALID_KEPT", 3)
    bundle = json.loads(next(medcom_examples.rglob("Bundle-*.json")).read_text(encoding="utf-8"))
    assert len(bundle["entry"]) > 3
    assert reported(bundle) == []
    assert len(validate._valid) == 3
