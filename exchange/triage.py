"""The triage queue: messages that match no flow (or came after their flow ended), held for a
coordinator who attaches one to a flow, has careflow look again (reprocess), or rejects it — the
fatal-error acknowledgement goes to the sender then. Every decision is audited."""

from __future__ import annotations

from sqlmodel import Session, col, select

from careflow.crypto import KeyRing
from exchange.delivering import DeliveryStatus
from exchange.receiving import ENDED, Receiver
from messaging import decode_body, parse_message
from messaging.model import AckCode, ParsedMessage, ValidationIssue
from store.models import AuditEntry, Flow, InboundMessage, sealed_as, utcnow


class TriageRefused(Exception):
    """The decision cannot be made: `status` is the HTTP answer (404, 409)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def held(session: Session, limit: int = 200) -> list[InboundMessage]:
    return list(
        session.exec(
            select(InboundMessage)
            .where(InboundMessage.delivery_status == DeliveryStatus.TRIAGE)
            .order_by(col(InboundMessage.id))
            .limit(limit)
        ).all()
    )


class Triage:
    def __init__(self, receiver: Receiver, key_ring: KeyRing) -> None:
        self.receiver, self.key_ring = receiver, key_ring

    def _held(self, session: Session, message_id: int) -> tuple[InboundMessage, ParsedMessage, dict]:
        row = session.get(InboundMessage, message_id)
        if row is None or row.delivery_status != DeliveryStatus.TRIAGE:
            raise TriageRefused(404, f"no message {message_id} held for triage")
        as_json = decode_body(
            self.key_ring.decrypt_text(row.body_enc, sealed_as(InboundMessage, "body_enc", row.message_header_id)),
            row.content_type,
        )
        return row, parse_message(as_json), as_json

    def attach(
        self, session: Session, message_id: int, flow_id: str, actor: str, role: str, reason: str
    ) -> InboundMessage:
        """Give the message to a flow the coordinator chose; the flow's parties and patient still apply."""
        row, parsed, as_json = self._held(session, message_id)
        flow = session.get(Flow, flow_id)
        if flow is None:
            raise TriageRefused(404, f"no flow {flow_id}")
        if flow.status in ENDED:
            raise TriageRefused(409, f"the flow has {flow.status}: it cannot take the message")
        refusal = self.receiver.refusal(flow, parsed, row)
        if refusal:
            raise TriageRefused(409, refusal[0])
        return self._decide(
            session,
            row,
            parsed,
            as_json,
            DeliveryStatus.RECEIVED,
            AckCode.OK,
            actor,
            role,
            f"attached to flow {flow_id}: {reason}",
            flow_id,
        )

    def reprocess(self, session: Session, message_id: int, actor: str, role: str) -> InboundMessage:
        """Correlate again (its flow may exist by now); if it still matches nothing it stays held."""
        row, parsed, as_json = self._held(session, message_id)
        flow = self.receiver._correlate(session, parsed)
        if flow is None or flow.status in ENDED:
            raise TriageRefused(409, "it still matches no running flow; attach it or reject it")
        refusal = self.receiver.refusal(flow, parsed, row)
        if refusal:
            raise TriageRefused(409, refusal[0])
        return self._decide(
            session,
            row,
            parsed,
            as_json,
            DeliveryStatus.RECEIVED,
            AckCode.OK,
            actor,
            role,
            f"reprocessed: matched flow {flow.id}",
            flow.id,
        )

    def reject(self, session: Session, message_id: int, actor: str, role: str, reason: str) -> InboundMessage:
        """Refuse it for good: the sender gets a fatal-error acknowledgement with the reason."""
        row, parsed, as_json = self._held(session, message_id)
        issue = ValidationIssue(
            rule="careflow-triage",
            path="Bundle",
            message=f"rejected by a coordinator: {reason}",
            error_code="MSG_RECEIVER_UNABLE_TO_RECEIVE_MSG_TYPE",
        )
        return self._decide(
            session,
            row,
            parsed,
            as_json,
            DeliveryStatus.REJECTED,
            AckCode.FATAL_ERROR,
            actor,
            role,
            f"rejected: {reason}",
            row.flow_id,
            [issue],
        )

    def _decide(
        self,
        session: Session,
        row: InboundMessage,
        parsed: ParsedMessage,
        as_json: dict,
        status: str,
        code: AckCode,
        actor: str,
        role: str,
        detail: str,
        flow_id: str | None,
        issues: list[ValidationIssue] | None = None,
    ) -> InboundMessage:
        row.delivery_status, row.flow_id, row.status_reason = status, flow_id, detail
        row.triaged_by, row.triaged_at = actor, utcnow()
        if row.ack_enc is None:
            self.receiver.acknowledge(row, parsed, as_json, code, issues or [])
        session.add(row)
        session.add(
            AuditEntry(
                actor=actor,
                role=role,
                action=f"triage-{'reject' if status == DeliveryStatus.REJECTED else 'attach'}",
                flow_id=flow_id,
                detail=f"message {row.message_header_id}: {detail}",
            )
        )
        session.commit()
        session.refresh(row)
        return row
