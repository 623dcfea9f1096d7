"""Hostile input: the inbound path never fails with anything but MessageError or a list of issues."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging import AckCode, MessageError, build_acknowledgement, parse_message, validate_message
from tests.messaging.conftest import TIMESTAMP

EXAMPLES = [
    "carecommunication/Bundle-c0426e3e-978f-46e8-a366-a30f27854b0a.json",
    "acknowledgement/Bundle-bc9535ef-ed94-4060-a928-7baddec7ee71.json",
    "homecareobservation/Bundle-add5e7e2-0c0f-4a4a-bfff-f6f984fa7e3c.json",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _paths(node, prefix=()):  # noqa: ANN001, ANN202
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


@pytest.mark.parametrize("example", EXAMPLES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_corruption_is_handled(medcom_examples: Path, example: str, data: st.DataObject) -> None:
    original = json.loads((medcom_examples / example).read_text())
    corrupted = copy.deepcopy(original)
    paths = [p for p in _paths(corrupted) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = corrupted
        try:
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue
    issues = validate_message(corrupted)
    assert isinstance(issues, list)
    try:
        parse_message(corrupted)
        parse_message(json.dumps(corrupted).encode())
    except MessageError:
        pass
    try:
        build_acknowledgement(
            corrupted,
            code=AckCode.FATAL_ERROR,
            message_header_id="a",
            bundle_id="b",
            timestamp=TIMESTAMP,
            issues=issues,
        )
    except MessageError:
        pass
