"""Receiving a partner's message: store it, correlate it to a flow, confine it to that flow's parties
and patient, and decide the answer and the acknowledgement — in one transaction, before any answer.

MedCom's receiver rules (reliable messaging): a MessageHeader.id seen before is a duplicate — it is
neither stored nor delivered again, but its stored acknowledgement is sent again (same content and
MessageHeader.id, a new Bundle.id and timestamp, as MedCom's resend rule says for any message); a
Bundle.id seen before under another MessageHeader.id is an error (Bundle.ids are never reused): the
message is stored as rejected, answered 409 and acknowledged fatal-error.

Correlation, in order: an acknowledgement by `MessageHeader.response.identifier`; a reply by the
ServiceRequest identifier it carries (basedOn); by the Provenance chain (the earlier MessageHeader it
answers, sent or received by careflow). A message that matches no flow starts a pathway that
declares its type as a trigger, or waits in the triage queue for a coordinator. Nothing is dropped.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import Row, bindparam, case, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from careflow.crypto import KeyRing, cpr_lookup_hash
from careflow.settings import Settings
from exchange.delivering import DeliveryStatus, Handoff, Target, signal_for
from exchange.starting import Prepared, StartRefused, invalid_input, prepare_flow
from messaging import Directory, build_acknowledgement, needs_acknowledgement, validate_message
from messaging.model import AckCode, MessageKind, ParsedMessage, ValidationIssue
from messaging.outcome import operation_outcome
from store.models import Flow, InboundMessage, OutboundMessage, sealed_as, utcnow
from workflows.models import PathwayInput
from workflows.registry import Pathways, messages_awaited

log = logging.getLogger(__name__)

ENDED = ("completed", "cancelled", "failed")
START_NAMESPACE = uuid.UUID("0b9c6f3e-2d7a-4c1e-9f4b-6a8d2e5c7b13")


@dataclass(frozen=True)
class FlowRef:
    """What receiving reads of a flow (not its timeline, steps or patient): one Core query by id."""

    id: str
    status: str
    workflow_id: str
    pathway: str
    cpr_hash: str
    parties_json: str
    referring_sor: str
    receiving_sor: str
    start_enc: str | None


_FLOWS, _INBOUND, _OUTBOUND = Flow.__table__, InboundMessage.__table__, OutboundMessage.__table__
# Built once, with bound parameters: these run for every inbound message.
_FLOW = select(*(_FLOWS.c[name] for name in FlowRef.__dataclass_fields__)).where(_FLOWS.c.id == bindparam("flow_id"))
_STORE = insert(_INBOUND)
_SENDS = select(
    _OUTBOUND.c.id, _OUTBOUND.c.message_header_id, _OUTBOUND.c.receiver_sor, _OUTBOUND.c.flow_id, _OUTBOUND.c.ack_code
).where(_OUTBOUND.c.message_header_id == bindparam("header_id"))
_ACKNOWLEDGED = update(_OUTBOUND).where(_OUTBOUND.c.id == bindparam("send_id"), _OUTBOUND.c.ack_code.is_(None))


def _flow(session: Session, flow_id: str) -> FlowRef | None:
    found = session.connection().execute(_FLOW, {"flow_id": flow_id}).first()
    return FlowRef(**found._mapping) if found is not None else None


@dataclass(frozen=True)
class Decision:
    status: int
    answer: dict
    ack: AckCode | None  # the acknowledgement to send back (None: none, e.g. for an acknowledgement)
    started: Prepared | None = None  # the flow this message starts, committed with it
    flow: FlowRef | None = None  # the flow it correlated to, as read while deciding (not read again)
    acknowledged: tuple[Row, ...] = ()  # for an acknowledgement: the sends it acknowledges (id, ack_code)


class Receiver:
    """Everything receiving needs besides the message: keys, directory, settings, the pathways."""

    def __init__(self, key_ring: KeyRing, settings: Settings, directory: Directory, pathways: Pathways) -> None:
        self.key_ring, self.settings, self.directory, self.pathways = key_ring, settings, directory, pathways
        self.cpr_hash_key = settings.cpr_hash_key

    def receive(
        self, session: Session, parsed: ParsedMessage, as_json: dict, body: bytes, content_type: str
    ) -> tuple[InboundMessage, Handoff | None]:
        """Validate, correlate and commit the message with its answer and acknowledgement (and, for
        a message that starts a pathway, the new flow's row). Returns the row and, when it is new,
        what its delivery needs (from memory: nothing is read again); a duplicate returns the row
        stored the first time and no hand-off."""
        existing, reused = _seen(session, parsed)
        if existing is not None:
            return existing, self._duplicate(existing)
        issues = validate_message(as_json)
        row = InboundMessage(
            message_header_id=parsed.message_header_id,
            bundle_id=parsed.bundle_id,
            event_code=parsed.event_code,
            sender_sor=parsed.sender.sor if parsed.sender else "",
            receiver_sor=parsed.receiver.sor if parsed.receiver else "",
            response_to=parsed.response_identifier,
            response_code=parsed.response_code.value if parsed.response_code else None,
            content_type=content_type,
            body_enc=self.key_ring.encrypt_text(
                body.decode("utf-8", errors="replace"), sealed_as(InboundMessage, "body_enc", parsed.message_header_id)
            ),
            thread_id=parsed.correlation.thread_id,
            episode_of_care_id=parsed.correlation.episode_of_care_id,
            patient_hash=cpr_lookup_hash(parsed.patient.cpr, self.cpr_hash_key)
            if parsed.patient and parsed.patient.cpr
            else None,
        )
        decision = self._bundle_reused(row, issues, reused) if reused else self._decide(session, parsed, issues, row)
        row.answer_status, row.answer_body = decision.status, json.dumps(decision.answer)
        ack_json = self.acknowledge(row, parsed, as_json, decision.ack, issues) if decision.ack is not None else None
        if decision.started is not None:
            session.add(decision.started.flow)
            session.add(decision.started.audit)
        try:
            # Core, in the session's transaction: the row is not an ORM-tracked object (nothing reads it back)
            row.id = session.connection().execute(_STORE, row.model_dump(exclude={"id"})).inserted_primary_key[0]
            if decision.acknowledged and row.flow_id:
                _record_acknowledgement(session, parsed, decision.acknowledged)  # same transaction: never split
            session.commit()  # durable before any answer
        except IntegrityError:
            # The same MessageHeader.id committed a moment ago (another request or API process).
            session.rollback()
            existing = _existing(session, parsed.message_header_id)
            return existing, self._duplicate(existing)
        return row, Handoff(
            row.id,
            self._target(session, row, decision, parsed),
            (ack_json, row.sender_sor) if ack_json else None,
        )

    def _duplicate(self, existing: InboundMessage) -> Handoff:
        """A duplicate's hand-off: nothing to deliver; the first acknowledgement, sent again (if one
        was made: a message held for triage is acknowledged when a coordinator decides)."""
        ack = None
        if existing.ack_enc is not None:
            first = self.key_ring.decrypt_text(
                existing.ack_enc, sealed_as(InboundMessage, "ack_enc", existing.message_header_id)
            )
            ack = (resent(first), existing.sender_sor)
        log.info("duplicate message %s: the first acknowledgement is sent again", existing.message_header_id)
        return Handoff(existing.id, None, ack, duplicate=True)

    def _bundle_reused(self, row: InboundMessage, issues: list[ValidationIssue], earlier: str) -> Decision:
        reason = (
            f"Bundle.id {row.bundle_id} was received before with another MessageHeader.id ({earlier}): "
            "a Bundle.id must never be reused"
        )
        issues.append(
            ValidationIssue(
                rule="medcom-bundle-id-reused", path="Bundle.id", message=reason, error_code="MSG_DUPLICATE_ID"
            )
        )
        row.delivery_status, row.status_reason = DeliveryStatus.REJECTED, reason
        return Decision(409, operation_outcome(reason, code="duplicate", expression=["Bundle.id"]), AckCode.FATAL_ERROR)

    def _target(
        self, session: Session, row: InboundMessage, decision: Decision, parsed: ParsedMessage
    ) -> Target | None:
        """Where the stored message goes, from what this transaction already holds."""
        if row.delivery_status != DeliveryStatus.RECEIVED or not row.flow_id:
            return None
        if decision.started is not None:
            flow, start = decision.started.flow, decision.started.input
        else:
            # Read while deciding (the session's identity map holds it only weakly: not looked up again).
            flow = decision.flow if decision.flow is not None else _flow(session, row.flow_id)
            if flow is None:
                return None
            start = (
                PathwayInput.model_validate_json(
                    self.key_ring.decrypt_text(flow.start_enc, sealed_as(Flow, "start_enc", flow.id))
                )
                if flow.start_enc
                else None
            )
        return Target(signal_for(row, parsed.correlation), flow.workflow_id, flow.pathway, start)

    def acknowledge(
        self, row: InboundMessage, parsed: ParsedMessage, as_json: dict, code: AckCode, issues: list[ValidationIssue]
    ) -> str | None:
        """Build the acknowledgement the sender gets and keep it, sealed, on the row (none for a
        message that is never acknowledged). Returns its JSON, to post without reading it again."""
        if not needs_acknowledgement(parsed):
            return None
        ack = build_acknowledgement(
            as_json,
            code=code,
            message_header_id=str(uuid.uuid4()),
            bundle_id=str(uuid.uuid4()),
            timestamp=utcnow(),
            issues=issues,
        )
        ack_json = json.dumps(ack)
        row.ack_code = code.value
        row.ack_enc = self.key_ring.encrypt_text(ack_json, sealed_as(InboundMessage, "ack_enc", row.message_header_id))
        return ack_json

    # ----- deciding -----------------------------------------------------------------------

    def _decide(
        self, session: Session, parsed: ParsedMessage, issues: list[ValidationIssue], row: InboundMessage
    ) -> Decision:
        if issues:
            return _refuse(row, 422, [f"{i.rule} at {i.path}: {i.message}" for i in issues], [i.path for i in issues])
        if parsed.kind is None:
            issue = ValidationIssue(
                rule="careflow-event-known",
                path="Bundle.entry[0].resource.eventCoding",
                message=f"event {parsed.event_code} is not handled by careflow",
                error_code="MSG_RECEIVER_UNABLE_TO_RECEIVE_MSG_TYPE",
            )
            issues.append(issue)
            return _refuse(row, 422, issue.message, [issue.path], code="not-supported")
        receiver = parsed.receiver.sor if parsed.receiver else ""
        if not self.directory.acts_for(receiver):
            # Misrouted: careflow takes messages only for the organisations it acts for (the directory says).
            issue = ValidationIssue(
                rule="careflow-acts-for",
                path="Bundle.entry[0].resource.destination[0].receiver",
                message=f"careflow does not receive messages for SOR {receiver or '(none)'}",
                error_code="MSG_Receiver_Identifier_UNKNOWN" if receiver else "MSG_Receiver_Identifier_MISSING",
            )
            issues.append(issue)
            return _refuse(row, 422, issue.message, [issue.path], code="not-found")
        if parsed.kind == MessageKind.ACKNOWLEDGEMENT:
            return self._acknowledgement(session, parsed, row)
        flow = self._correlate(session, parsed)
        if flow is None:
            started, why_not = self._start(parsed)
            if started is not None:
                row.flow_id = started.flow.id
                return Decision(202, _accepted(parsed, f"starts a {started.pathway.name} flow"), AckCode.OK, started)
            row.delivery_status, row.status_reason = DeliveryStatus.TRIAGE, why_not or "matches no flow careflow knows"
            log.warning("message %s (%s) matches no flow: held for triage", parsed.message_header_id, parsed.event_code)
            return Decision(202, _accepted(parsed, "held for a coordinator: it matches no running flow"), None)
        refusal = self.refusal(flow, parsed, row)
        if refusal:
            reason, path = refusal
            issues.append(
                ValidationIssue(
                    rule="careflow-confinement",
                    path=path,
                    message=reason,
                    error_code="MSG_RECEIVER_UNABLE_TO_RECEIVE_MSG_TYPE",
                )
            )
            row.flow_id = flow.id  # kept with its flow, for the coordinators' view; never applied
            return _refuse(row, 422, reason, [path], code="business-rule")
        row.flow_id = flow.id
        if flow.status in ENDED:
            row.delivery_status, row.status_reason = DeliveryStatus.TRIAGE, f"its flow has {flow.status}"
            return Decision(
                202, _accepted(parsed, f"held for a coordinator: the flow has {flow.status}"), AckCode.OK, flow=flow
            )
        return Decision(202, _accepted(parsed), AckCode.OK, flow=flow)

    def _acknowledgement(self, session: Session, parsed: ParsedMessage, row: InboundMessage) -> Decision:
        sends = tuple(
            session.connection().execute(_SENDS, {"header_id": parsed.response_identifier})
        )  # every send of the message (resends keep its MessageHeader.id)
        sent = sends[0] if sends else None
        if sent is None:
            row.delivery_status, row.status_reason = DeliveryStatus.TRIAGE, "acknowledges no message careflow sent"
            log.warning(
                "acknowledgement %s for unknown message %s: held for triage",
                parsed.message_header_id,
                parsed.response_identifier,
            )
            return Decision(
                202, _accepted(parsed, "held for a coordinator: it acknowledges no message careflow sent"), None
            )
        sender = parsed.sender.sor if parsed.sender else ""
        if sent.receiver_sor and sender != sent.receiver_sor:
            reason = (
                f"only the receiver of message {sent.message_header_id} (SOR {sent.receiver_sor}) "
                f"may acknowledge it, not SOR {sender}"
            )
            row.flow_id, row.delivery_status, row.status_reason = sent.flow_id, DeliveryStatus.REJECTED, reason
            return Decision(
                422,
                operation_outcome(
                    reason, code="business-rule", expression=["Bundle.entry[0].resource.response.identifier"]
                ),
                None,
            )
        row.flow_id = sent.flow_id
        return Decision(202, _accepted(parsed), None, acknowledged=sends)

    def _correlate(self, session: Session, parsed: ParsedMessage) -> FlowRef | None:
        """The flow a message belongs to, in order: the ServiceRequest it is based on; the earlier
        message it answers (the Provenance chain); the CareCommunication thread or the episode of
        care it continues — each from a message careflow sent or received for a flow."""
        if parsed.service_request_id:
            flow = _flow(session, parsed.service_request_id)
            if flow is not None:
                return flow
        earlier = [link.previous_header_id for link in parsed.provenance if link.previous_header_id]
        keys = [
            (OutboundMessage.message_header_id, InboundMessage.message_header_id, earlier),
            (OutboundMessage.thread_id, InboundMessage.thread_id, [parsed.correlation.thread_id]),
            (
                OutboundMessage.episode_of_care_id,
                InboundMessage.episode_of_care_id,
                [parsed.correlation.episode_of_care_id],
            ),
        ]
        for outbound_column, inbound_column, values in keys:
            values = [v for v in values if v]
            if not values:
                continue
            for table, column in ((OutboundMessage, outbound_column), (InboundMessage, inbound_column)):
                flow_id = session.exec(
                    select(table.flow_id).where(col(column).in_(values), col(table.flow_id).is_not(None)).limit(1)
                ).first()
                if flow_id:
                    return _flow(session, flow_id)
        return None

    def refusal(self, flow: Flow | FlowRef, parsed: ParsedMessage, row: InboundMessage) -> tuple[str, str] | None:
        """Why this message may not go to this flow (reason, FHIRPath): another patient, or a sender
        the pathway does not expect it from. The workflow checks the same again when delivered."""
        if row.patient_hash and row.patient_hash != flow.cpr_hash:
            return (
                "the message is about another patient than the flow's",
                "Bundle.entry.resource.ofType(Patient).identifier",
            )
        pathway = self.pathways.get(flow.pathway)
        parties: dict[str, str] = json.loads(flow.parties_json or "{}") or {
            "requester": flow.referring_sor,
            "performer": flow.receiving_sor,
        }
        sender = parsed.sender.sor if parsed.sender else ""
        roles = {role for message, role in messages_awaited(pathway) if message == parsed.kind} if pathway else set()
        if pathway is not None and parsed.kind == pathway.partner_cancellation:
            roles.add(pathway.counterpart)
        expected = {parties[r] for r in roles if r in parties} if roles else set(parties.values())
        if roles and not expected:
            return None  # the expected party is not known for this flow (started before parties were kept)
        if sender not in expected:
            return (
                f"a {parsed.event_code} for this flow is expected from SOR {' or '.join(sorted(expected))}, not SOR "
                f"{sender}",
                "Bundle.entry[0].resource.sender",
            )
        return None

    def _start(self, parsed: ParsedMessage) -> tuple[Prepared | None, str | None]:
        """The flow this message starts, if a pathway declares its type as a trigger: exactly once
        per MessageHeader.id (the flow id is derived from it, and committed with the message, so
        concurrent duplicates converge on one flow). Or why it starts none."""
        for pathway in self.pathways.starting_on(parsed.kind or ""):
            for trigger in pathway.starts:
                if trigger.message != parsed.kind or not trigger.when(parsed):
                    continue
                sender = parsed.sender.sor if parsed.sender else "partner"
                try:
                    start = pathway.input_model.model_validate(trigger.input_from(parsed))
                    prepared = prepare_flow(
                        pathway,
                        start,
                        actor=f"partner:{sender}",
                        role="partner",
                        settings=self.settings,
                        directory=self.directory,
                        key_ring=self.key_ring,
                        flow_id=str(uuid.uuid5(START_NAMESPACE, parsed.message_header_id)),
                        audit_action="start-flow-by-message",
                        keep_input=True,
                    )
                except ValidationError as err:
                    return None, f"would start a {pathway.name} flow, but: {invalid_input(err).detail}"
                except StartRefused as err:
                    return None, f"would start a {pathway.name} flow, but: {err.detail}"
                return prepared, None
        return None, None


def _refuse(
    row: InboundMessage, status: int, diagnostics: str | list[str], expression: list[str], *, code: str = "invalid"
) -> Decision:
    """Stored, never applied: the answer names the reason and a fatal-error acknowledgement follows."""
    row.delivery_status = DeliveryStatus.REJECTED
    row.status_reason = diagnostics if isinstance(diagnostics, str) else "; ".join(diagnostics)
    return Decision(status, operation_outcome(diagnostics, code=code, expression=expression), AckCode.FATAL_ERROR)


def _accepted(parsed: ParsedMessage, note: str = "") -> dict:
    return operation_outcome(
        f"message {parsed.message_header_id} accepted" + (f"; {note}" if note else ""),
        code="informational",
        severity="information",
    )


def _record_acknowledgement(session: Session, parsed: ParsedMessage, sends: tuple[Row, ...]) -> None:
    """Mark the acknowledged outbound message (all its sends, as read while deciding), for the
    coordinators' views; the caller commits it with the stored acknowledgement."""
    code = parsed.response_code.value if parsed.response_code else None
    now = utcnow()
    unacknowledged = [{"send_id": s.id, "ack_code": code, "acked_at": now} for s in sends if s.ack_code is None]
    if len(unacknowledged) < len(sends):
        log.info("late or duplicate acknowledgement for %s ignored", parsed.response_identifier)
    if unacknowledged:
        session.connection().execute(_ACKNOWLEDGED, unacknowledged)


def resent(acknowledgement: str) -> str:
    """The stored acknowledgement as sent again: identical content and MessageHeader.id, with a new
    Bundle.id and Bundle.timestamp (MedCom: a resent acknowledgement changes its envelope id and send
    time, never its content)."""
    bundle = json.loads(acknowledgement)
    bundle["id"] = str(uuid.uuid4())
    bundle["timestamp"] = utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(bundle)


# Built once (bound parameters): the first query of every inbound message.
_SEEN = (
    select(_INBOUND.c.id, _INBOUND.c.message_header_id)
    .where(
        or_(
            _INBOUND.c.message_header_id == bindparam("header_id"),
            _INBOUND.c.bundle_id == bindparam("bundle_id"),
        )
    )
    .order_by(case((_INBOUND.c.message_header_id == bindparam("header_id"), 0), else_=1))
    .limit(1)
)


def _seen(session: Session, parsed: ParsedMessage) -> tuple[InboundMessage | None, str | None]:
    """In one query: the message stored before under this MessageHeader.id (a duplicate), or else
    the MessageHeader.id its Bundle.id was first received with, when that was another one (reuse).
    Core, in the session's transaction: the row is loaded as an object only for a duplicate."""
    earlier = (
        session.connection()
        .execute(_SEEN, {"header_id": parsed.message_header_id, "bundle_id": parsed.bundle_id})
        .first()
    )
    if earlier is None:
        return None, None
    if earlier.message_header_id == parsed.message_header_id:
        return session.get(InboundMessage, earlier.id), None
    return None, earlier.message_header_id


def _existing(session: Session, header_id: str) -> InboundMessage | None:
    return session.exec(select(InboundMessage).where(InboundMessage.message_header_id == header_id)).first()
