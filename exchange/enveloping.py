"""Receiving VANSEnvelopes: MedCom's transport-level cache of envelope identifiers (kept in the
store, so duplicates are recognised across restarts), the receipts careflow answered, and refused
envelopes kept (sealed) for a coordinator to look at.

The FHIR message inside an accepted envelope goes the way of any inbound message
(exchange/receiving.py); the receipt only says the envelope arrived and its message was taken or
refused — the MedCom acknowledgement follows as its own message.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from careflow.crypto import KeyRing
from messaging import Directory, UnknownOrganization
from messaging.vans import (
    EnvelopeError,
    ReceiptKind,
    TransportDuplicate,
    VansMessage,
    VansReceipt,
    build_receipt,
    classify_envelope,
)
from store.models import InboundEnvelope, OutboundMessage, sealed_as, utcnow

log = logging.getLogger(__name__)

KEPT_OF_OVERSIZED = 64 * 1024  # of an envelope over the size limit, this much is kept for triage


class EnvelopeRefused(EnvelopeError):
    """An envelope readable as such that careflow still refuses (wrong sender, not for careflow,
    an envelope identifier reused)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code = status, code


class EnvelopeReceiver:
    def __init__(self, key_ring: KeyRing, directory: Directory) -> None:
        self.key_ring, self.directory = key_ring, directory

    # ----- checks before the message is read ---------------------------------------------------

    def check_parties(self, envelope: VansMessage | VansReceipt, partner_sor: str) -> None:
        """The envelope's sender must be the authenticated partner's GLN; its receiver an
        organisation careflow acts for."""
        try:
            partner_ean = self.directory.get(partner_sor).ean if partner_sor else envelope.sender.value
        except UnknownOrganization:
            raise EnvelopeRefused(403, "envelope-sender-unknown", "the partner is not in the directory") from None
        if envelope.sender.value != partner_ean:
            raise EnvelopeRefused(
                403, "envelope-sender", f"SenderID must be the authenticated partner's GLN ({partner_ean})"
            )
        try:
            receiver = self.directory.find_by_ean(envelope.receiver.value)
        except UnknownOrganization:
            receiver = None
        if receiver is None or not receiver.careflow_acts_for:
            raise EnvelopeRefused(
                422, "envelope-receiver", f"careflow does not act for the ReceiverID GLN {envelope.receiver.value}"
            )

    def classify(self, session: Session, envelope: VansMessage) -> tuple[TransportDuplicate, InboundEnvelope | None]:
        """MedCom's four cases, from the store; with the envelope row whose receipt is to be given
        again (the same envelope's, or the first one's that carried this message)."""
        same = session.exec(
            select(InboundEnvelope).where(InboundEnvelope.envelope_identifier == envelope.envelope_identifier)
        ).first()
        first = (
            same
            or session.exec(
                select(InboundEnvelope)
                .where(InboundEnvelope.message_identifier == envelope.meta.identifier)
                .where(InboundEnvelope.status == "accepted")
                .order_by(col(InboundEnvelope.id))
                .limit(1)
            ).first()
        )
        case = classify_envelope(
            envelope.envelope_identifier,
            envelope.meta.identifier,
            message_of_envelope=same.message_identifier if same else None,
            message_seen=first is not None,
        )
        return case, first

    # ----- what is kept ------------------------------------------------------------------------

    def receipt(
        self,
        envelope: VansMessage,
        status: int,
        error_code: str = "",
        error: str = "",
        *,
        kind: ReceiptKind = ReceiptKind.NEGATIVE_MESSAGE,
    ) -> bytes:
        """careflow's receipt for an envelope: positive when its message was taken (stored), else
        negative (NegativeMessage: the message was refused; NegativeVans: the envelope) with the reason."""
        if status < 300:
            return build_receipt(envelope, envelope_identifier=str(uuid.uuid4()), sent=utcnow())
        return build_receipt(
            envelope,
            envelope_identifier=str(uuid.uuid4()),
            sent=utcnow(),
            kind=kind,
            error_code=error_code,
            error_description=error[:500],
        )

    def record(
        self,
        session: Session,
        envelope: VansMessage,
        partner_sor: str,
        *,
        status: int,
        receipt: bytes,
        message_header_id: str | None,
        body: bytes,
        reason: str | None = None,
    ) -> None:
        """Keep a received envelope and its receipt. Refused at the FHIR level (nothing stored
        there): its body is kept sealed, for triage."""
        accepted = message_header_id is not None
        row = InboundEnvelope(
            ref=str(uuid.uuid4()),
            envelope_identifier=envelope.envelope_identifier,
            message_identifier=envelope.meta.identifier,
            sender_gln=envelope.sender.value,
            receiver_gln=envelope.receiver.value,
            partner_sor=partner_sor,
            status="accepted" if accepted else "refused",
            reason_code=None if accepted else "message-refused",
            reason=reason,
            message_header_id=message_header_id,
            receipt=receipt.decode(),
            answer_status=status,
            size_bytes=len(body),
        )
        if not accepted:
            row.body_enc = self.key_ring.encrypt_text(
                body.decode("utf-8", errors="replace"), sealed_as(InboundEnvelope, "body_enc", row.ref)
            )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # the same envelope, committed a moment ago by a concurrent request
            session.rollback()

    def refuse(self, session: Session, body: bytes, error: EnvelopeError, partner_sor: str, *, limit: int) -> None:
        """Keep a refused envelope for triage: its reason, and its body sealed (of one over the size
        limit, its first 64 KB)."""
        ref = str(uuid.uuid4())
        kept = body[:KEPT_OF_OVERSIZED] if len(body) > limit else body
        session.add(
            InboundEnvelope(
                ref=ref,
                partner_sor=partner_sor,
                status="refused",
                reason_code=error.code,
                reason=str(error)[:2000],
                body_enc=self.key_ring.encrypt_text(
                    kept.decode("utf-8", errors="replace"), sealed_as(InboundEnvelope, "body_enc", ref)
                ),
                answer_status=error.status,
                size_bytes=len(body),
            )
        )
        session.commit()
        log.warning("refused a VANSEnvelope from SOR %s: %s", partner_sor or "?", error.code)

    def record_receipt(self, session: Session, receipt: VansReceipt, partner_sor: str) -> bool:
        """A partner's receipt for an envelope careflow sent: noted on the outbound message (a
        transport fact; the pathway waits for the MedCom acknowledgement). False: no such envelope."""
        sent = session.exec(
            select(OutboundMessage).where(OutboundMessage.envelope_identifier == receipt.original_envelope_identifier)
        ).all()
        for message in sent:
            message.transport_receipt = receipt.kind.value
            session.add(message)
        session.add(
            InboundEnvelope(
                ref=str(uuid.uuid4()),
                envelope_identifier=receipt.envelope_identifier,
                kind="receipt",
                sender_gln=receipt.sender.value,
                receiver_gln=receipt.receiver.value,
                partner_sor=partner_sor,
                status="accepted" if sent else "refused",
                reason_code=None if sent else "receipt-for-unknown-envelope",
                reason=None if sent else f"a receipt for envelope {receipt.original_envelope_identifier}",
            )
        )
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
        return bool(sent)


def refused_envelopes(session: Session, limit: int = 200) -> list[InboundEnvelope]:
    return list(
        session.exec(
            select(InboundEnvelope)
            .where(InboundEnvelope.status == "refused")
            .order_by(col(InboundEnvelope.id).desc())
            .limit(limit)
        ).all()
    )
