"""The transport port: how a built message becomes an HTTP request to a partner's endpoint, and what
the partner's transport answer says.

Two adapters: FHIR `$process-message` (the Bundle as the body) and the VANSEnvelope (the Bundle
base64 inside the envelope XML, with a VANS receipt in the answer). Each only prepares the request —
URL, headers, body — so the sending itself (retries, idempotency, stored message) stays with the
caller: the send activity, the acknowledgement sender, the simulated partners. Which adapter a
message takes is the directory's word (`Directory.route`); workflows never see it.

The VANS receipt (messaging.vans.VansReceipt) is transport-level: "the envelope arrived". It never
completes a pathway step; only the MedCom Acknowledgement does.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from messaging.directory import Directory, Route
from messaging.formats import to_json, to_xml
from messaging.model import Organization
from messaging.vans import (
    FHIR_JSON,
    FHIR_MIME_TYPES,
    VANS_CONTENT_TYPE,
    DocumentType,
    EnvelopeError,
    NoVansDocumentType,
    VansReceipt,
    as_vans_uuid,
    build_envelope,
    document_type_for,
    parse_envelope,
)

PROCESS_MESSAGE, VANS = "process-message", "vans"


class OutboundRequest(BaseModel):
    """What to POST: careflow's HTTP client sends it. `envelope_identifier`: the VANSEnvelope's, when
    the message travels in one."""

    model_config = ConfigDict(frozen=True)

    url: str
    headers: dict[str, str]
    body: bytes
    transport: str = PROCESS_MESSAGE
    envelope_identifier: str | None = None


class Transport(Protocol):
    """Prepares the request that carries one message to a partner's endpoint."""

    name: str

    def prepare(
        self, bundle: dict, *, endpoint: str, sender: Organization, receiver: Organization, sent: datetime
    ) -> OutboundRequest: ...


class ProcessMessageTransport:
    """FHIR messaging over HTTP: the Bundle is the body of a POST to the partner's `$process-message`
    URL (the directory holds that full URL)."""

    name = PROCESS_MESSAGE

    def __init__(self, mime_type: str = FHIR_JSON) -> None:
        if mime_type not in FHIR_MIME_TYPES:
            raise ValueError(f"mime_type must be one of {', '.join(FHIR_MIME_TYPES)}")
        self.mime_type = mime_type

    def prepare(
        self, bundle: dict, *, endpoint: str, sender: Organization, receiver: Organization, sent: datetime
    ) -> OutboundRequest:
        body = to_json(bundle) if self.mime_type == FHIR_JSON else to_xml(bundle)
        return OutboundRequest(
            url=endpoint, headers={"Content-Type": self.mime_type, "Accept": self.mime_type}, body=body
        )


class VansTransport:
    """VANS: the Bundle inside a VANSEnvelope addressed by the parties' GLNs (EAN location numbers).
    `document` is for message types MedCom's catalogue has no VANS document type for."""

    name = VANS

    def __init__(self, mime_type: str = FHIR_JSON, document: DocumentType | None = None) -> None:
        if mime_type not in FHIR_MIME_TYPES:
            raise ValueError(f"mime_type must be one of {', '.join(FHIR_MIME_TYPES)}")
        self.mime_type = mime_type
        self.document = document

    def prepare(
        self, bundle: dict, *, endpoint: str, sender: Organization, receiver: Organization, sent: datetime
    ) -> OutboundRequest:
        body = build_envelope(
            bundle,
            sender_gln=sender.ean,
            receiver_gln=receiver.ean,
            sent=sent,
            mime_type=self.mime_type,
            document=self.document,
        )
        return OutboundRequest(
            url=endpoint,
            headers={"Content-Type": VANS_CONTENT_TYPE, "Accept": VANS_CONTENT_TYPE},
            body=body,
            transport=VANS,
            envelope_identifier=as_vans_uuid(str(bundle["id"])),
        )


def document_for(directory: Directory, receiver_sor: str, bundle: dict) -> DocumentType:
    """The VANS document type of a message to this receiver: MedCom's catalogue, else the one agreed
    with the receiver in the directory; NoVansDocumentType when neither has one."""
    try:
        return document_type_for(bundle)
    except NoVansDocumentType:
        header = next((e.get("resource", {}) for e in bundle.get("entry", [])[:1]), {})
        event = str((header.get("eventCoding") or {}).get("code", ""))
        agreed = directory.vans_document(receiver_sor, event)
        if agreed is None:
            raise
        return DocumentType(name=agreed.name, version=agreed.version)


def prepare_request(
    directory: Directory,
    bundle: dict | bytes,
    *,
    sender: Organization,
    receiver: Organization,
    sent: datetime,
    route: Route | None = None,
) -> OutboundRequest:
    """The request carrying `bundle` (FHIR JSON, as a dict or its bytes) from `sender` to `receiver`
    over the transport the directory names for the receiver. The same message and `sent` give the
    same bytes: a retry of one transmission is the identical envelope (MedCom's "both identifiers
    seen"), while a resend — a new Bundle.id — is a new envelope."""
    route = route or directory.route(receiver.sor)
    as_dict = json.loads(bundle) if isinstance(bundle, bytes | str) else bundle
    if route.transport == VANS:
        adapter: Transport = VansTransport(document=document_for(directory, receiver.sor, as_dict))
    else:
        if isinstance(bundle, bytes):  # already serialised: sent as it is
            return OutboundRequest(url=route.url, headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}, body=bundle)
        adapter = ProcessMessageTransport()
    return adapter.prepare(as_dict, endpoint=route.url, sender=sender, receiver=receiver, sent=sent)


def receipt_in(request: OutboundRequest, answer: bytes) -> VansReceipt | None:
    """The VANS receipt a partner answered an envelope with, if it sent one (None for FHIR
    $process-message, an empty answer, or one that is no receipt)."""
    if request.transport != VANS or not answer.strip():
        return None
    try:
        found = parse_envelope(answer)
    except EnvelopeError:
        return None
    return found if isinstance(found, VansReceipt) else None
