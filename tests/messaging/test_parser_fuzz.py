"""Hypothesis against the inbound parser, JSON and XML: whatever arrives, the outcome is a parsed
message, a list of validation issues or a MessageError (a 4xx) — never another exception."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging import MessageError, parse_message, validate_message
from messaging.formats import json_depth_exceeded
from messaging.parse import decode_body

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
XML_TYPES = ["application/fhir+xml", "application/xml", "text/xml"]
JSON_TYPES = ["application/fhir+json", "application/json", "", "application/octet-stream"]

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
resource_types = st.sampled_from(
    [
        "MessageHeader",
        "Patient",
        "Organization",
        "ServiceRequest",
        "Provenance",
        "Communication",
        "Bundle",
        "Observation",
        "",
    ]
)
resources = st.builds(
    lambda kind, fields: {"resourceType": kind, **fields},
    resource_types,
    st.dictionaries(
        st.sampled_from(
            [
                "id",
                "identifier",
                "sender",
                "destination",
                "focus",
                "eventCoding",
                "name",
                "basedOn",
                "target",
                "entity",
                "response",
                "meta",
            ]
        ),
        json_values,
        max_size=5,
    ),
)
bundles = st.builds(
    lambda entries, extra: {"resourceType": "Bundle", "type": "message", "entry": entries, **extra},
    st.lists(
        st.builds(lambda r, url: {"fullUrl": url, "resource": r}, resources, st.text(max_size=20))
        | st.lists(json_values, max_size=3),
        max_size=6,
    ).map(lambda x: x if isinstance(x, list) else []),
    st.dictionaries(st.sampled_from(["id", "timestamp", "meta"]), json_values, max_size=2),
)


def outcome(body: bytes, content_type: str) -> str:
    """Decode, parse and validate as the inbound route does; MessageError is the only allowed failure."""
    try:
        as_json = decode_body(body, content_type)
        parsed = parse_message(as_json)
    except MessageError:
        return "refused"
    assert parsed.message_header_id
    return "invalid" if validate_message(as_json) else "valid"


@FUZZ
@given(body=st.binary(max_size=400), content_type=st.sampled_from(JSON_TYPES + XML_TYPES))
def test_arbitrary_bytes(body: bytes, content_type: str) -> None:
    outcome(body, content_type)


@FUZZ
@given(bundle=bundles)
def test_bundle_shaped_json(bundle: dict) -> None:
    outcome(json.dumps(bundle).encode(), "application/fhir+json")


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(min_value=1, max_value=20_000), opener=st.sampled_from(["[", '{"a":']))
def test_any_nesting_depth(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    body = (opener * depth + "1" + closer * depth).encode()
    assert json_depth_exceeded(body) is (depth > 64)
    assert outcome(body, "application/fhir+json") == "refused"


names = st.sampled_from(
    [
        "Bundle",
        "entry",
        "resource",
        "MessageHeader",
        "Patient",
        "id",
        "type",
        "identifier",
        "value",
        "system",
        "eventCoding",
        "code",
        "sender",
        "reference",
        "x",
    ]
)
attributes = st.dictionaries(
    st.sampled_from(["value", "url", "id"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=10),
    max_size=2,
)


def _element(name: str, attrs: dict, children: list[str]) -> str:
    rendered = "".join(
        f' {k}="{v.replace("&", "&amp;").replace(chr(34), "&quot;").replace("<", "&lt;")}"' for k, v in attrs.items()
    )
    return f"<{name}{rendered}>{''.join(children)}</{name}>"


xml_elements = st.recursive(
    st.builds(lambda n, a: _element(n, a, []), names, attributes),
    lambda inner: st.builds(_element, names, attributes, st.lists(inner, max_size=4)),
    max_leaves=25,
)
xml_documents = st.builds(
    lambda prolog, children, namespace: f'{prolog}<Bundle xmlns="{namespace}">{"".join(children)}</Bundle>',
    st.sampled_from(
        ["", '<?xml version="1.0" encoding="UTF-8"?>', '<!DOCTYPE Bundle [<!ENTITY e "x">]>', "<!-- c -->"]
    ),
    st.lists(xml_elements, max_size=5),
    st.sampled_from(["http://hl7.org/fhir", "urn:other", ""]),
)


@FUZZ
@given(document=xml_documents, content_type=st.sampled_from(XML_TYPES))
def test_fhir_shaped_xml(document: str, content_type: str) -> None:
    result = outcome(document.encode(), content_type)
    if "<!DOCTYPE" in document:
        assert result == "refused"


@FUZZ
@given(document=xml_documents, cut=st.integers(min_value=0, max_value=400), junk=st.text(max_size=5))
def test_broken_xml(document: str, cut: int, junk: str) -> None:
    outcome((document[:cut] + junk + document[cut:]).encode(), "application/fhir+xml")
