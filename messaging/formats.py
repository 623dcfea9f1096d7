"""FHIR JSON and XML wire formats of message Bundles (XML through fhir.resources and lxml)."""

from __future__ import annotations

import json
import re

from lxml import etree
from pydantic import ValidationError

from messaging.errors import MessageError
from messaging.model import ValidationIssue

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
FHIR_NS = "http://hl7.org/fhir"
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")
# Real FHIR messages nest a dozen levels or so; far deeper is an attack on the parsers' recursion.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"')  # unrolled and possessive: linear, no backtracking
_BRACKETS_ONLY = bytes(range(256)).translate(None, b"[]{}")


def json_depth_exceeded(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, found without parsing it (strings
    removed first, so brackets inside them do not count; linear time)."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _BRACKETS_ONLY)
    if len(brackets) <= 2 * limit:
        return False
    depth = 0
    for char in brackets:
        depth += 1 if char in (0x5B, 0x7B) else -1
        if depth > limit:
            return True
    return False


def _bundle_model():
    # Imported lazily: fhir.resources is heavy, and workflow code imports messaging.model only.
    from fhir.resources.R4B.bundle import Bundle

    return Bundle


def _safe_parser() -> etree.XMLParser:
    # Partner input: no external entities, no network, no DTD tricks.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


# FHIR XML has no DTD; a DOCTYPE only brings entities (expansion bombs, external files): refused
# outright, before parsing (and checked again after, for encodings the byte search cannot see).
_DOCTYPE_ISSUE = ValidationIssue(
    rule="syntax",
    path="Bundle",
    message="XML with a DOCTYPE (DTD, entities) is not accepted",
    error_code="MSG_Damaged_durin_transport",
)
_ROOT_START = re.compile(rb"<[A-Za-z_:]")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


def _has_doctype(data: bytes) -> bool:
    root = _ROOT_START.search(data)
    return _DOCTYPE.search(data, 0, root.start() if root else len(data)) is not None


def to_json(bundle: dict) -> bytes:
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def to_xml(bundle: dict) -> bytes:
    """FHIR XML of a Bundle given as FHIR JSON (raises MessageError if it is not valid FHIR)."""
    try:
        model = _bundle_model().model_validate(bundle)
    except (ValidationError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise MessageError("not a valid FHIR Bundle", [_structure_issue(exc)]) from None
    text = model.model_dump_xml(xml_declaration=True)
    return text.encode("utf-8") if isinstance(text, str) else text


def from_xml(data: bytes | str) -> dict:
    """FHIR JSON (dict) of a Bundle given as FHIR XML."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    from fhir_core.xml_utils import Node

    Bundle = _bundle_model()
    if _has_doctype(data):
        raise MessageError("XML with a DOCTYPE is refused", [_DOCTYPE_ISSUE])
    try:
        root = etree.fromstring(data, parser=_safe_parser())
        docinfo = root.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None:
            raise MessageError("XML with a DOCTYPE is refused", [_DOCTYPE_ISSUE])
        if etree.QName(root).localname != "Bundle" or etree.QName(root).namespace != FHIR_NS:
            raise MessageError(
                "not a FHIR Bundle",
                [
                    ValidationIssue(
                        rule="bundle-type",
                        path="Bundle",
                        message="root element is not a FHIR Bundle",
                        error_code="MSG_Datatype_Wrong",
                    )
                ],
            )
        model = Node.from_element(root, fhir_class=Bundle).to_fhir(Bundle)
    except MessageError:
        raise
    except etree.XMLSyntaxError:
        raise MessageError(
            "not well-formed XML",
            [
                ValidationIssue(
                    rule="syntax",
                    path="Bundle",
                    message="body is not well-formed XML",
                    error_code="MSG_Damaged_durin_transport",
                )
            ],
        ) from None
    except (ValidationError, KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise MessageError("not a valid FHIR XML Bundle", [_structure_issue(exc)]) from None
    return json.loads(model.model_dump_json())


def looks_like_xml(data: bytes | str) -> bool:
    head = data[:64].lstrip() if isinstance(data, (bytes, str)) else b""
    if isinstance(head, bytes):
        head = head.lstrip(b"\xef\xbb\xbf")
        return head.startswith(b"<")
    return head.lstrip("\ufeff").startswith("<")


def _structure_issue(exc: Exception) -> ValidationIssue:
    # The exception text may quote input values (patient data): only its kind is reported.
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        path = "Bundle" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        return ValidationIssue(rule="fhir-structure", path=path, message=f"invalid FHIR content ({first['type']})")
    return ValidationIssue(rule="fhir-structure", path="Bundle", message=f"invalid FHIR content ({type(exc).__name__})")
