"""The transport port: how a built message becomes an HTTP request to a partner's endpoint.

Two adapters: FHIR `$process-message` (the Bundle as the body) and the VANSEnvelope (the Bundle
base64 inside the envelope XML). Each only prepares the request — URL, headers, body — so the
sending itself (retries, idempotency, stored body) stays in one place, the send activity.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from messaging.formats import to_json, to_xml
from messaging.model import Organization
from messaging.vans import FHIR_JSON, FHIR_MIME_TYPES, VANS_CONTENT_TYPE, DocumentType, build_envelope


class OutboundRequest(BaseModel):
    """What to POST: careflow's HTTP client sends it, and stores `body` for resends."""

    model_config = ConfigDict(frozen=True)

    url: str
    headers: dict[str, str]
    body: bytes


class Transport(Protocol):
    """Prepares the request that carries one message to a partner's endpoint."""

    name: str

    def prepare(
        self, bundle: dict, *, endpoint: str, sender: Organization, receiver: Organization, sent: datetime
    ) -> OutboundRequest: ...


class ProcessMessageTransport:
    """FHIR messaging over HTTP: the Bundle is the body of a POST to the partner's `$process-message`
    URL (the directory holds that full URL)."""

    name = "fhir-process-message"

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

    name = "vans-envelope"

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
        return OutboundRequest(url=endpoint, headers={"Content-Type": VANS_CONTENT_TYPE}, body=body)
