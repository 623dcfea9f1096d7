"""The VANSEnvelope (namespace urn:oio:medcom:vans-envelope:1.0.4) around a MedCom FHIR message, and
its transport receipt (VANSEnvelopeAcknowledgement).

The envelope carries one FHIR message, base64 in Message/Data, with its MIME type in the "MCM:MIME"
service tag. careflow maps its identifiers from the message: EnvelopeIdentifier (new per
transmission) from Bundle.id, which a resend renews, and MetaInformation/Identifier (stable per
logical message) from MessageHeader.id, which a resend keeps. The receipt is transport-level only:
it says the envelope arrived, never that the message was accepted — that is the MedCom
Acknowledgement's job (messaging.acknowledge), and a pathway step completes on the latter only.

Facts from MedCom's FHIR-communication governance (MEDCOM-FACTS.md section 1). Not settled there,
and chosen here: the EndPointType attribute values (EAN by default), the Error element of negative
receipts, and the UUID derived for an id that is not a UUID (some of MedCom's examples use such ids).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict

from messaging.bundle import as_dict, fhir_instant, parse_instant, resources
from messaging.formats import to_json, to_xml
from messaging.types import MESSAGE_TYPES

VANS_NS = "urn:oio:medcom:vans-envelope:1.0.4"
MIME_SERVICE_TAG = "MCM:MIME"
FHIR_JSON, FHIR_XML = "application/fhir+json", "application/fhir+xml"
FHIR_MIME_TYPES = (FHIR_JSON, FHIR_XML)
VANS_CONTENT_TYPE = "application/xml"
# One FHIR message per envelope, at most 100 MB wrapped (MedCom's network-layer governance).
MAX_ENVELOPE_BYTES = 100 * 1024 * 1024
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ID_NAMESPACE = uuid.UUID("0b9a3c1e-7a53-4f7e-9d0e-4a8f2c6d1e55")
_DOCTYPE = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)

# --- errors: each bad envelope its own type, so the API can answer and store it for triage ------


class EnvelopeError(ValueError):
    """An inbound envelope careflow refuses; `status` is the HTTP status to answer with."""

    status = 400
    code = "envelope-invalid"


class EnvelopeNotXml(EnvelopeError):
    code = "envelope-not-xml"


class EnvelopeDoctype(EnvelopeError):
    code = "envelope-doctype"  # DTDs and entities are refused outright (XXE, entity bombs)


class EnvelopeStructure(EnvelopeError):
    code = "envelope-structure"  # XML, but not a VANSEnvelope as the schema lays it out


class EnvelopeBadBase64(EnvelopeError):
    code = "envelope-bad-base64"


class EnvelopeNotFhir(EnvelopeError):
    status = 415
    code = "envelope-mime-not-fhir"


class EnvelopeTooLarge(EnvelopeError):
    status = 413
    code = "envelope-too-large"


class NoVansDocumentType(ValueError):
    """MedCom's catalogue has no VANS document type for this message (e.g. HomeCareObservation,
    careflow's own types): the sender must configure one with its partner, never invent one."""


# --- model ---------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class EndPoint(_Model):
    value: str  # a GLN (EAN location number) in MedCom's FHIR traffic
    type: Literal["EAN", "CVR", "VANS"] = "EAN"


class DocumentType(_Model):
    """MetaInformation/Document: which MedCom standard the payload is, per MedCom's catalogue."""

    format: str = "HL7"
    name: str  # "MCM:" + EDI type + "#" + statistical postfix, e.g. MCM:FDIS20#AdmissionInpatient
    version: str


class MetaInformation(_Model):
    identifier: str  # the logical message (MessageHeader.id, as a UUID)
    document: DocumentType
    transport_type: Literal["reliable", "unreliable"] = "reliable"
    transform_message: bool = False
    mime_type: str = FHIR_JSON
    size_in_bytes: int | None = None


class VansMessage(_Model):
    """An envelope holding a message."""

    sender: EndPoint
    receiver: EndPoint
    envelope_identifier: str  # this transmission (Bundle.id, as a UUID)
    sent: datetime
    meta: MetaInformation
    data: bytes  # the FHIR message itself, decoded from base64


class ReceiptKind(StrEnum):
    POSITIVE = "PositiveMessage"
    NEGATIVE_MESSAGE = "NegativeMessage"
    NEGATIVE_VANS = "NegativeVans"


class VansReceipt(_Model):
    """A VANSEnvelopeAcknowledgement: the envelope arrived (or not). Not a MedCom Acknowledgement."""

    sender: EndPoint
    receiver: EndPoint
    envelope_identifier: str
    sent: datetime
    kind: ReceiptKind
    original_envelope_identifier: str
    original: MetaInformation | None = None  # positive receipts echo the received MetaInformation
    error_code: str = ""
    error_description: str = ""


# --- identifiers and document types ----------------------------------------------------------------


def as_vans_uuid(fhir_id: str) -> str:
    """A FHIR id as the envelope's UUIDType: itself if it is a UUID, else a UUID derived from it
    (stable, so a resend of the same message keeps its Identifier)."""
    if _UUID.fullmatch(fhir_id):
        return fhir_id.lower()
    return str(uuid.uuid5(_ID_NAMESPACE, fhir_id))


def _header(bundle: dict) -> dict:
    return next((r for _, r in resources(bundle, "MessageHeader")), {})


def document_type_for(bundle: dict) -> DocumentType:
    """The VANS document type of a MedCom message, from MedCom's statistical codes (each message
    type's `vans_document`, messaging/types/). Raises NoVansDocumentType for message types without
    a catalogue entry."""
    event = as_dict(_header(bundle).get("eventCoding")).get("code")
    message_type = MESSAGE_TYPES.find(event)
    found = message_type.vans_document(bundle) if message_type is not None and message_type.vans_document else None
    if found is None:
        raise NoVansDocumentType(f"no VANS document type in MedCom's catalogue for event {event!r}")
    name, version = found
    return DocumentType(name=name, version=version)


# --- building ------------------------------------------------------------------------------------


def _q(tag: str) -> str:
    return f"{{{VANS_NS}}}{tag}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
    element = etree.SubElement(parent, _q(tag), attrib)
    if text is not None:
        element.text = text
    return element


def _envelope_head(sender: EndPoint, receiver: EndPoint, envelope_identifier: str, sent: datetime) -> etree._Element:
    root = etree.Element(_q("VANSEnvelope"), nsmap={None: VANS_NS})
    _sub(root, "SenderID", sender.value, EndPointType=sender.type)
    _sub(root, "ReceiverID", receiver.value, EndPointType=receiver.type)
    _sub(root, "EnvelopeIdentifier", envelope_identifier)
    _sub(root, "SentDateTime", fhir_instant(sent))
    return root


def _meta_element(parent: etree._Element, tag: str, meta: MetaInformation) -> None:
    element = _sub(parent, tag)
    _sub(element, "Identifier", meta.identifier)
    document = _sub(element, "Document")
    _sub(document, "Format", meta.document.format)
    _sub(document, "Name", meta.document.name)
    _sub(document, "Version", meta.document.version)
    if meta.size_in_bytes is not None:
        _sub(document, "SizeInBytes", str(meta.size_in_bytes))
    transport = _sub(element, "Transport")
    _sub(transport, "Type", meta.transport_type)
    _sub(transport, "TransformMessage", "true" if meta.transform_message else "false")
    _sub(transport, "ServiceTag", meta.mime_type, name=MIME_SERVICE_TAG)


def _serialise(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def build_envelope(
    bundle: dict,
    *,
    sender_gln: str,
    receiver_gln: str,
    sent: datetime,
    mime_type: str = FHIR_JSON,
    document: DocumentType | None = None,
) -> bytes:
    """The VANSEnvelope XML around `bundle` (FHIR JSON as a dict), serialised as `mime_type`.
    `document` overrides the catalogue's document type (required for types MedCom has none for)."""
    if mime_type not in FHIR_MIME_TYPES:
        raise ValueError(f"the payload must be one of {', '.join(FHIR_MIME_TYPES)}")
    header = _header(bundle)
    if not isinstance(bundle.get("id"), str) or not isinstance(header.get("id"), str):
        raise ValueError("a message needs Bundle.id and MessageHeader.id for its envelope identifiers")
    payload = to_json(bundle) if mime_type == FHIR_JSON else to_xml(bundle)
    meta = MetaInformation(
        identifier=as_vans_uuid(header["id"]),
        document=document or document_type_for(bundle),
        mime_type=mime_type,
        size_in_bytes=len(payload),
    )
    root = _envelope_head(EndPoint(value=sender_gln), EndPoint(value=receiver_gln), as_vans_uuid(bundle["id"]), sent)
    message = _sub(root, "Message")
    _meta_element(message, "MetaInformation", meta)
    _sub(message, "Data", base64.b64encode(payload).decode("ascii"))
    body = _serialise(root)
    if len(body) > MAX_ENVELOPE_BYTES:
        raise EnvelopeTooLarge(f"the envelope would be {len(body)} bytes, over the {MAX_ENVELOPE_BYTES} limit")
    return body


def build_receipt(
    received: VansMessage,
    *,
    envelope_identifier: str,
    sent: datetime,
    kind: ReceiptKind = ReceiptKind.POSITIVE,
    error_code: str = "",
    error_description: str = "",
) -> bytes:
    """The transport receipt of a received envelope, addressed back to its sender."""
    root = _envelope_head(received.receiver, received.sender, envelope_identifier, sent)
    receipt = _sub(_sub(root, "Receipt"), kind.value)
    _sub(receipt, "OriginalEnvelopeIdentifier", received.envelope_identifier)
    if kind is ReceiptKind.POSITIVE:
        _meta_element(receipt, "OriginalMessage", received.meta)
    else:
        error = _sub(receipt, "Error")
        if error_code:
            _sub(error, "Code", error_code)
        _sub(error, "Description", error_description or "refused")
    return _serialise(root)


# --- parsing -------------------------------------------------------------------------------------


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True, remove_blank_text=True
    )


def _child(parent: etree._Element, tag: str, *, required: bool = True) -> etree._Element | None:
    found = parent.find(_q(tag))
    if found is None and required:
        raise EnvelopeStructure(f"VANSEnvelope: {etree.QName(parent).localname} has no {tag}")
    return found


def _text(parent: etree._Element, tag: str, *, required: bool = True) -> str:
    element = _child(parent, tag, required=required)
    text = (element.text or "").strip() if element is not None else ""
    if required and not text:
        raise EnvelopeStructure(f"VANSEnvelope: {tag} is empty")
    return text


def _endpoint(parent: etree._Element, tag: str) -> EndPoint:
    element = _child(parent, tag)
    kind = element.get("EndPointType", "EAN")
    if kind not in ("EAN", "CVR", "VANS"):
        raise EnvelopeStructure(f"VANSEnvelope: {tag} has an unknown EndPointType")
    return EndPoint(value=_text(parent, tag), type=kind)


def _uuid(parent: etree._Element, tag: str) -> str:
    value = _text(parent, tag)
    if not _UUID.fullmatch(value):
        raise EnvelopeStructure(f"VANSEnvelope: {tag} is not a UUID")
    return value.lower()


def _meta(element: etree._Element, *, need_mime: bool) -> MetaInformation:
    document = _child(element, "Document")
    transport = _child(element, "Transport", required=False)
    mime = ""
    transport_type = "reliable"  # the default when Transport/Type is absent
    transform = False
    if transport is not None:
        transport_type = _text(transport, "Type", required=False) or "reliable"
        transform = _text(transport, "TransformMessage", required=False) in ("true", "1")
        tags = [t for t in transport.findall(_q("ServiceTag")) if t.get("name") == MIME_SERVICE_TAG]
        mime = (tags[0].text or "").strip() if tags else ""
    if transport_type not in ("reliable", "unreliable"):
        raise EnvelopeStructure("VANSEnvelope: Transport/Type must be reliable or unreliable")
    if need_mime and mime.split(";", 1)[0].strip().lower() not in FHIR_MIME_TYPES:
        raise EnvelopeNotFhir("the MCM:MIME service tag does not name a FHIR format (application/fhir+json or +xml)")
    size = _text(document, "SizeInBytes", required=False)
    return MetaInformation(
        identifier=_uuid(element, "Identifier"),
        document=DocumentType(
            format=_text(document, "Format"), name=_text(document, "Name"), version=_text(document, "Version")
        ),
        transport_type=transport_type,  # type: ignore[arg-type]
        transform_message=transform,
        mime_type=mime.split(";", 1)[0].strip().lower() or FHIR_JSON,
        size_in_bytes=int(size) if size.isdigit() else None,
    )


def parse_envelope(raw: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> VansMessage | VansReceipt:
    """Read an inbound envelope, refusing (each with its own EnvelopeError) what is too large, not
    XML, has a DOCTYPE, is not a VANSEnvelope, has bad base64 or a payload that is not FHIR."""
    if len(raw) > max_bytes:
        raise EnvelopeTooLarge(f"the envelope is over the {max_bytes}-byte limit")
    if _DOCTYPE.search(raw):
        raise EnvelopeDoctype("DOCTYPE and ENTITY declarations are not accepted in an envelope")
    try:
        root = etree.fromstring(raw, parser=_safe_parser())
    except (etree.XMLSyntaxError, ValueError):
        raise EnvelopeNotXml("the body is not well-formed XML") from None
    if root.tag != _q("VANSEnvelope"):
        raise EnvelopeStructure(f"the root element is not a VANSEnvelope in {VANS_NS}")
    sender, receiver = _endpoint(root, "SenderID"), _endpoint(root, "ReceiverID")
    envelope_identifier = _uuid(root, "EnvelopeIdentifier")
    sent = parse_instant(_text(root, "SentDateTime"))
    if sent is None or sent.tzinfo is None:
        raise EnvelopeStructure("VANSEnvelope: SentDateTime is not a date-time with a zone")
    message = _child(root, "Message", required=False)
    receipt = _child(root, "Receipt", required=False)
    if (message is None) == (receipt is None):
        raise EnvelopeStructure("VANSEnvelope: exactly one of Message and Receipt is required")
    if receipt is not None:
        return _receipt(receipt, sender, receiver, envelope_identifier, sent)
    meta = _meta(_child(message, "MetaInformation"), need_mime=True)
    encoded = re.sub(r"\s+", "", _text(message, "Data"))
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeBadBase64("Message/Data is not valid base64") from None
    if not data:
        raise EnvelopeBadBase64("Message/Data is empty")
    return VansMessage(
        sender=sender, receiver=receiver, envelope_identifier=envelope_identifier, sent=sent, meta=meta, data=data
    )


def _receipt(
    receipt: etree._Element, sender: EndPoint, receiver: EndPoint, envelope_identifier: str, sent: datetime
) -> VansReceipt:
    body = next(iter(receipt), None)
    names = {k.value for k in ReceiptKind}
    if body is None or etree.QName(body).localname not in names or etree.QName(body).namespace != VANS_NS:
        raise EnvelopeStructure("VANSEnvelope: Receipt holds none of PositiveMessage, NegativeMessage, NegativeVans")
    kind = ReceiptKind(etree.QName(body).localname)
    original = _child(body, "OriginalMessage", required=False)
    error = _child(body, "Error", required=False)
    return VansReceipt(
        sender=sender,
        receiver=receiver,
        envelope_identifier=envelope_identifier,
        sent=sent,
        kind=kind,
        original_envelope_identifier=_uuid(body, "OriginalEnvelopeIdentifier"),
        original=_meta(original, need_mime=False) if original is not None else None,
        error_code=_text(error, "Code", required=False) if error is not None else "",
        error_description=_text(error, "Description", required=False) if error is not None else "",
    )


# --- transport duplicates (on the envelope's identifiers, before the message is read) ------------


class TransportDuplicate(StrEnum):
    NEW = "new"  # both identifiers new: process
    REPEATED = "repeated"  # both seen: the same envelope again; answer with the first receipt
    RECEIPT_LOST = "receipt-lost"  # message seen under a new envelope id: resend the original receipt
    ENVELOPE_REUSED = "envelope-reused"  # envelope id seen with another message: an error


def classify_envelope(
    envelope_identifier: str, message_identifier: str, *, message_of_envelope: str | None, message_seen: bool
) -> TransportDuplicate:
    """MedCom's four cases for a received envelope, given what the receiver's cache knows:
    `message_of_envelope` is the message identifier first received under this envelope identifier
    (None if the envelope is new), `message_seen` whether the message identifier was seen at all."""
    if message_of_envelope is not None:
        return (
            TransportDuplicate.REPEATED
            if message_of_envelope == message_identifier
            else TransportDuplicate.ENVELOPE_REUSED
        )
    return TransportDuplicate.RECEIPT_LOST if message_seen else TransportDuplicate.NEW


class EnvelopeCache:
    """An in-memory cache of received envelope identifiers (for the simulator and tests; careflow's
    receiver keeps the same two facts in its message store)."""

    def __init__(self) -> None:
        self._message_of_envelope: dict[str, str] = {}
        self._messages: set[str] = set()

    def receive(self, envelope: VansMessage) -> TransportDuplicate:
        found = classify_envelope(
            envelope.envelope_identifier,
            envelope.meta.identifier,
            message_of_envelope=self._message_of_envelope.get(envelope.envelope_identifier),
            message_seen=envelope.meta.identifier in self._messages,
        )
        if found in (TransportDuplicate.NEW, TransportDuplicate.RECEIPT_LOST):
            self._message_of_envelope[envelope.envelope_identifier] = envelope.meta.identifier
            self._messages.add(envelope.meta.identifier)
        return found
