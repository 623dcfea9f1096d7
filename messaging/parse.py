"""Reading an inbound message into a ParsedMessage: what routing and correlation need.

JSON is read with plain dict access (cheap, on the API hot path); structural FHIR checks are
validate_message's job. XML goes through fhir.resources, which yields the same JSON.
"""

from __future__ import annotations

import json

from messaging.bundle import (
    ReferenceIndex,
    as_dict,
    as_list,
    header_id_of,
    identifier_value,
    organization_of,
    parse_instant,
    primary_destination,
    resources,
)
from messaging.errors import MessageError
from messaging.formats import JSON_TYPES, MAX_JSON_DEPTH, XML_TYPES, from_xml, json_depth_exceeded, looks_like_xml
from messaging.identifiers import CPR_SYSTEM, is_replacement_cpr_system
from messaging.model import AckCode, ParsedMessage, PatientData, ProvenanceLink, ValidationIssue
from messaging.terminology import CAREFLOW_PATHWAY_TAG_SYSTEM
from messaging.types import MESSAGE_TYPES
from messaging.types.base import extract_correlation

ACK_CODES = frozenset(a.value for a in AckCode)


def _issue(rule: str, path: str, message: str, code: str = "MSG_Datatype_Wrong") -> list[ValidationIssue]:
    return [ValidationIssue(rule=rule, path=path, message=message, error_code=code)]


def decode_body(body: bytes | str | dict, content_type: str = "application/fhir+json") -> dict:
    """The Bundle as FHIR JSON, from JSON or XML text (media type parameters such as charset ignored)."""
    if isinstance(body, dict):
        return body
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    is_xml = media_type in XML_TYPES or media_type.endswith("+xml")
    if media_type not in JSON_TYPES and not is_xml and not media_type.endswith("+json"):
        # unknown or missing media type: let the content decide
        is_xml = looks_like_xml(body)
    if is_xml:
        return from_xml(body)
    if json_depth_exceeded(body.encode("utf-8", errors="replace") if isinstance(body, str) else body):
        raise MessageError(
            "JSON nested too deeply",
            _issue(
                "syntax", "Bundle", f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "MSG_Damaged_durin_transport"
            ),
        )
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MessageError(
            "body is not valid JSON",
            _issue("syntax", "Bundle", "body is not valid JSON", "MSG_Damaged_durin_transport"),
        ) from None
    if not isinstance(data, dict):
        raise MessageError("body is not a JSON object", _issue("bundle-type", "Bundle", "body is not a FHIR resource"))
    return data


def _patient(bundle: dict) -> PatientData | None:
    for _, resource in resources(bundle, "Patient"):
        cpr = identifier_value(resource, CPR_SYSTEM)
        if cpr is None:
            cpr = next(
                (
                    i.get("value")
                    for i in as_list(resource.get("identifier"))
                    if isinstance(i, dict)
                    and is_replacement_cpr_system(i.get("system"))
                    and isinstance(i.get("value"), str)
                ),
                None,
            )
        name = next((n for n in as_list(resource.get("name")) if isinstance(n, dict)), {})
        given = as_list(name.get("given"))
        return PatientData(
            cpr=cpr or "",
            given_name=" ".join(g for g in given if isinstance(g, str)),
            family_name=name.get("family") if isinstance(name.get("family"), str) else "",
        )
    return None


def _provenance(bundle: dict) -> list[ProvenanceLink]:
    links = []
    for _, resource in resources(bundle, "Provenance"):
        coding = (as_list(as_dict(resource.get("activity")).get("coding")) or [{}])[0]
        target = next((header_id_of(t) for t in as_list(resource.get("target")) if header_id_of(t)), None)
        previous = None
        for entity in as_list(resource.get("entity")):
            found = header_id_of(entity.get("what")) if isinstance(entity, dict) else None
            if found and found != target and (entity.get("role") == "revision" or previous is None):
                previous = found
        links.append(
            ProvenanceLink(
                provenance_id=resource.get("id") if isinstance(resource.get("id"), str) else "",
                activity=code if isinstance(coding, dict) and isinstance(code := coding.get("code"), str) else "",
                target_header_id=target,
                previous_header_id=previous,
            )
        )
    return links


def parse_message(body: bytes | str | dict, content_type: str = "application/fhir+json") -> ParsedMessage:
    """Read a message Bundle. Raises MessageError when there is no message to speak of."""
    bundle = decode_body(body, content_type)
    if bundle.get("resourceType") != "Bundle":
        raise MessageError(
            "not a FHIR Bundle", _issue("bundle-type", "Bundle.resourceType", "resource is not a Bundle")
        )
    header = next((r for _, r in resources(bundle, "MessageHeader")), None)
    if header is None:
        raise MessageError(
            "no MessageHeader", _issue("header-first", "Bundle.entry[0].resource", "the Bundle has no MessageHeader")
        )
    header_id = header.get("id")
    if not isinstance(header_id, str) or not header_id:
        raise MessageError(
            "MessageHeader without id",
            _issue("header-id", "Bundle.entry[0].resource.id", "MessageHeader.id is missing"),
        )

    index = ReferenceIndex(bundle)
    event = header.get("eventCoding") if isinstance(header.get("eventCoding"), dict) else {}
    event_code = event.get("code") if isinstance(event.get("code"), str) else ""
    message_type = MESSAGE_TYPES.find(event_code)
    # an unknown type still gets the default extraction: its pathway may be found all the same
    correlation = extract_correlation(bundle)
    if message_type is not None and message_type.extract is not extract_correlation:
        try:
            correlation = message_type.extract(bundle)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            # a plug-in's extractor tripping over a broken message must not turn it into a 500;
            # validation will say what is wrong with it
            pass
    sender = index.resolve(header.get("sender"))
    primary = primary_destination(header) or {}
    receiver = index.resolve(primary.get("receiver"))
    response = header.get("response") if isinstance(header.get("response"), dict) else {}
    code = response.get("code")
    response_code = AckCode(code) if isinstance(code, str) and code in ACK_CODES else None
    tags = as_list(as_dict(header.get("meta")).get("tag"))
    pathway = next(
        (
            t.get("code")
            for t in tags
            if isinstance(t, dict) and t.get("system") == CAREFLOW_PATHWAY_TAG_SYSTEM and isinstance(t.get("code"), str)
        ),
        None,
    )
    return ParsedMessage(
        pathway=pathway,
        kind=message_type.code if message_type else None,
        event_code=event_code,
        message_header_id=header_id,
        bundle_id=bundle.get("id") if isinstance(bundle.get("id"), str) else "",
        timestamp=parse_instant(bundle.get("timestamp")),
        sender=organization_of(sender[1]) if sender else None,
        receiver=organization_of(receiver[1]) if receiver else None,
        patient=_patient(bundle),
        service_request_id=correlation.service_request_id,
        response_identifier=response.get("identifier") if isinstance(response.get("identifier"), str) else None,
        response_code=response_code,
        provenance=_provenance(bundle),
        correlation=correlation,
    )
