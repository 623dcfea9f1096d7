"""Reading a FHIR message Bundle as plain JSON: entries, references, identifiers.

Plain dict access on purpose: parsing on the API hot path must stay cheap, and these helpers
must also cope with broken messages (validation and acknowledgements of invalid input).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from messaging.identifiers import GLN_SYSTEMS, SOR_SYSTEM
from messaging.model import Organization


def as_dict(value: object) -> dict:
    """`value` if it is a JSON object, else an empty one: broken input must not crash a reader."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list:
    return value if isinstance(value, list) else []


# fullUrl base of careflow-built resources; references are relative "Type/id", as in MedCom's examples
FULL_URL_BASE = "https://careflow.dk/fhir/"


def fhir_instant(moment: datetime) -> str:
    """An instant with a zone; a naive datetime is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _entry_list(bundle: object) -> list:
    """Bundle.entry as a list, whatever the (possibly broken) input holds there."""
    found = bundle.get("entry") if isinstance(bundle, dict) else None
    return found if isinstance(found, list) else []


def resources(bundle: dict, resource_type: str | None = None) -> Iterator[tuple[int, dict]]:
    """(entry index, resource) pairs, optionally of one type."""
    for index, entry in enumerate(_entry_list(bundle)):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and (resource_type is None or resource.get("resourceType") == resource_type):
            yield index, resource


class ReferenceIndex:
    """Resolves references inside one Bundle, by fullUrl or by relative Type/id."""

    def __init__(self, bundle: dict) -> None:
        self.by_key: dict[str, tuple[int, dict]] = {}
        for index, entry in enumerate(_entry_list(bundle)):
            if not isinstance(entry, dict):
                continue
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                continue
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                self.by_key[full_url] = (index, resource)
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if isinstance(rtype, str) and isinstance(rid, str):
                self.by_key.setdefault(f"{rtype}/{rid}", (index, resource))

    def resolve(self, reference: object) -> tuple[int, dict] | None:
        if isinstance(reference, dict):
            reference = reference.get("reference")
        if not isinstance(reference, str):
            return None
        found = self.by_key.get(reference)
        if found is None and "/" in reference and not reference.startswith("urn:"):
            # an absolute URL whose tail is Type/id of a resource in the bundle
            tail = "/".join(reference.rstrip("/").split("/")[-2:])
            found = self.by_key.get(tail)
        return found


def header_id_of(reference: object) -> str | None:
    """The MessageHeader id a Provenance target/entity points at ("MessageHeader/<id>" or a URL)."""
    if isinstance(reference, dict):
        identifier = reference.get("identifier")
        reference = reference.get("reference")
        if reference is None and isinstance(identifier, dict):
            value = identifier.get("value")
            return value.removeprefix("urn:uuid:") if isinstance(value, str) else None
    if not isinstance(reference, str) or "MessageHeader/" not in reference:
        return None
    return reference.rsplit("MessageHeader/", 1)[1].split("/")[0] or None


def identifier_value(resource: dict, systems: tuple[str, ...] | str) -> str | None:
    if isinstance(systems, str):
        systems = (systems,)
    for ident in as_list(resource.get("identifier")):
        if isinstance(ident, dict) and ident.get("system") in systems and isinstance(ident.get("value"), str):
            return ident["value"]
    return None


def organization_of(resource: dict | None) -> Organization | None:
    """The domain Organization of an Organization resource; empty strings where identifiers are missing."""
    if not isinstance(resource, dict):
        return None
    name = resource.get("name")
    return Organization(
        sor=identifier_value(resource, SOR_SYSTEM) or "",
        ean=identifier_value(resource, GLN_SYSTEMS) or "",
        name=name if isinstance(name, str) else "",
    )


def primary_destination(header: dict) -> dict | None:
    """The destination marked primary by MedCom's destinationUse extension (else the first one)."""
    destinations = [d for d in as_list(header.get("destination")) if isinstance(d, dict)]
    for destination in destinations:
        if destination_use(destination) == "primary":
            return destination
    return destinations[0] if destinations else None


def destination_use(destination: dict) -> str | None:
    from messaging.terminology import DESTINATION_USE_EXTENSION

    for ext in as_list(destination.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == DESTINATION_USE_EXTENSION:
            coding = ext.get("valueCoding")
            return coding.get("code") if isinstance(coding, dict) else None
    return None


def walk_references(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(element path, reference) for every Reference.reference below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield f"{path}.reference", value
            elif isinstance(value, (dict, list)):
                yield from walk_references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_references(value, f"{path}[{i}]")
