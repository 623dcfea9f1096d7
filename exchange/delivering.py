"""Delivering stored inbound messages to their pathways, and acknowledgements back to senders.

Used by the API right after storing a message, and by the relay for whatever is left undelivered
(Temporal was down, the process died between store and signal, a partner's endpoint was down).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import Engine, bindparam
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from careflow.crypto import KeyRing
from messaging import Directory, MessageError, UnknownOrganization, parse_message
from messaging.directory import Route
from messaging.model import AckCode, Correlation, MessageKind
from messaging.transport import OutboundRequest, prepare_request, receipt_in
from messaging.types import MESSAGE_TYPES
from messaging.types.base import extract_correlation
from messaging.vans import EnvelopeError, NoVansDocumentType, ReceiptKind
from store.models import Flow, InboundMessage, sealed_as, utcnow
from workflows.models import InboundMessageSignal, PathwayInput
from workflows.registry import Pathways
from workflows.steps import PathwayWorkflow

log = logging.getLogger(__name__)


class DeliveryStatus:
    RECEIVED = "received"  # stored, not yet delivered
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"  # an acknowledgement with no pathway to apply it to
    REJECTED = "rejected"  # invalid: answered with a fatal-error acknowledgement
    TRIAGE = "triage"  # matches no flow, or its pathway has ended: kept for a coordinator


def signal_for(message: InboundMessage, correlation: Correlation | None = None) -> InboundMessageSignal:
    """The signal for a stored message. `correlation` (what its type read from the Bundle) adds the
    decision it carries for the pathway to branch on — a triage Task's decision, the organisation a
    forward hands the pathway to — and its line for the timeline; none of it is patient data."""
    return InboundMessageSignal(
        message_header_id=message.message_header_id,
        kind=message.event_code,
        sender_sor=message.sender_sor,
        received_at=message.received_at,
        response_to=message.response_to,
        response_code=AckCode(message.response_code) if message.response_code else None,
        summary=correlation.summary if correlation else "",
        patient_hash=message.patient_hash,
        outcome=correlation.outcome if correlation else None,
        forward_to=correlation.forward_to if correlation else None,
        thread_id=message.thread_id,
    )


def _reads_decisions(event_code: str) -> bool:
    """A type that reads more than the correlation ids from its messages (its own extractor)."""
    message_type = MESSAGE_TYPES.find(event_code)
    return message_type is not None and message_type.extract is not extract_correlation


def stored_correlation(key_ring: KeyRing, message: InboundMessage) -> Correlation | None:
    """What the stored message's type reads from it, for the relay (the route has it in memory)."""
    if not _reads_decisions(message.event_code):
        return None
    try:
        body = key_ring.decrypt_text(message.body_enc, sealed_as(InboundMessage, "body_enc", message.message_header_id))
        return parse_message(body, message.content_type).correlation
    except (MessageError, ValueError) as err:  # it parsed when it was received; say so, deliver what we have
        log.warning("message %s: stored body not read again (%s)", message.message_header_id, type(err).__name__)
        return None


@dataclass(frozen=True)
class Target:
    """Where a stored message goes: its signal, its workflow, and — for a flow that an inbound
    message starts — the workflow's input, so the delivery starts it if it is not running yet."""

    signal: InboundMessageSignal
    workflow_id: str
    pathway: str
    start: PathwayInput | None = None


class Deliverer:
    """Signals stored messages to their workflows: the API right after storing, the relay for the rest."""

    def __init__(self, engine: Engine, client: Client, pathways: Pathways, key_ring: KeyRing, task_queue: str) -> None:
        self.engine, self.client, self.pathways, self.key_ring, self.task_queue = (
            engine,
            client,
            pathways,
            key_ring,
            task_queue,
        )

    async def deliver(self, message_id: int, target: Target | None = None, *, mark: bool = True) -> bool:
        """Signal one stored message to its workflow; True when it is delivered (now or before).

        `target`: what the route that just stored the message knows already (no re-read). With
        `mark=False` a successful delivery is not written here: the caller writes it together with
        the acknowledgement (one transaction instead of two). The workflow ignores a MessageHeader.id
        it has applied, so a second delivery by the relay racing the API has no effect. Database I/O
        runs in a thread, off the event loop."""
        if target is None:
            found = await asyncio.to_thread(_delivery_target, self.engine, self.key_ring, message_id)
            if isinstance(found, bool):
                return found
            target = found
        signal = target.signal
        try:
            if target.start is not None and (pathway := self.pathways.get(target.pathway)) is not None:
                # Starts the workflow with the message, or only signals it if it runs already.
                await self.client.start_workflow(
                    pathway.run,
                    target.start,
                    id=target.workflow_id,
                    task_queue=self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    start_signal="message_received",
                    start_signal_args=[signal],
                    search_attributes=pathway.start_attributes(),
                )
            else:
                await self.client.get_workflow_handle(target.workflow_id).signal(
                    PathwayWorkflow.message_received, signal
                )
        except (RPCError, WorkflowAlreadyStartedError) as err:
            if isinstance(err, WorkflowAlreadyStartedError) or err.status is RPCStatusCode.NOT_FOUND:
                # The workflow has ended. A late acknowledgement has nothing left to apply to (it is
                # recorded on its outbound message already); a partner's message is kept for a
                # coordinator, never dropped.
                late_ack = signal.kind == MessageKind.ACKNOWLEDGEMENT
                status = DeliveryStatus.UNDELIVERABLE if late_ack else DeliveryStatus.TRIAGE
                await asyncio.to_thread(
                    _set_status,
                    self.engine,
                    message_id,
                    status,
                    "its pathway has ended" if late_ack else "its pathway had ended when it arrived",
                )
                log.warning(
                    "message %s: workflow %s is closed; kept as %s",
                    signal.message_header_id,
                    target.workflow_id,
                    status,
                )
                return False
            await asyncio.to_thread(_count_attempt, self.engine, message_id)
            log.warning(
                "message %s not delivered yet (%s): the relay will retry",
                signal.message_header_id,
                err.status.name if err.status else err,
            )
            return False
        except Exception as err:  # Temporal unreachable: stays stored, the relay delivers it later
            await asyncio.to_thread(_count_attempt, self.engine, message_id)
            log.warning(
                "message %s not delivered yet (%s): the relay will retry", signal.message_header_id, type(err).__name__
            )
            return False
        if mark:
            await asyncio.to_thread(_set_status, self.engine, message_id, DeliveryStatus.DELIVERED)
        return True


@dataclass(frozen=True)
class Handoff:
    """What the route that stored a message hands to its delivery: the target (None: nothing to
    deliver) and the acknowledgement to post (its JSON and the sender's SOR; None: none)."""

    message_id: int
    target: Target | None
    acknowledgement: tuple[str, str] | None
    duplicate: bool = False  # a MessageHeader.id seen before: only its acknowledgement is sent again


async def deliver_and_acknowledge(
    deliverer: Deliverer, http: httpx.AsyncClient, directory: Directory, handoff: Handoff, marks: Marks
) -> None:
    """Right after storing: signal, post the acknowledgement, then write both outcomes (in a
    transaction shared with the other messages finishing meanwhile) — no re-reading of the row the
    route just wrote. Whatever does not succeed here is left as it was stored, and the relay
    finishes it."""
    delivered = False
    if handoff.target is not None:
        delivered = await deliverer.deliver(handoff.message_id, handoff.target, mark=False)
    acknowledged = False
    if handoff.acknowledgement is not None:
        acknowledged = await _post_acknowledgement(
            deliverer.engine, http, directory, handoff.message_id, *handoff.acknowledgement
        )
    if delivered or acknowledged:
        await marks.mark(handoff.message_id, delivered, acknowledged)


class Marks:
    """Writes "delivered" and "acknowledgement sent" for the messages the API has just finished, many
    in one transaction: whatever was marked while the previous write ran goes in the next. No timer:
    one message alone is written at once; under load one thread hand-off and one commit serve a
    batch instead of one message each. `mark` returns once its row is written (or raises what the
    write raised). Unwritten marks cost nothing but time: the relay delivers again (the workflow
    ignores a MessageHeader.id it has applied) and sends the acknowledgement again after its grace."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: list[tuple[int, bool, bool, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def mark(self, message_id: int, delivered: bool, acknowledged: bool) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((message_id, delivered, acknowledged, done))
        self._wake.set()
        await done

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                await asyncio.to_thread(_mark_many, self.engine, [(m, d, a) for m, d, a, _ in batch])
            except Exception as err:  # noqa: BLE001 - each waiting caller gets it
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(err)
            else:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def close(self) -> None:
        """Stop writing (after the callers have had their time: what is left, the relay finishes)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _mark_many(engine: Engine, marks: list[tuple[int, bool, bool]]) -> None:
    """One transaction for many messages' marks: one executemany per kind of mark."""
    now = utcnow()
    kinds: dict[tuple[bool, bool], list[dict]] = {}
    for message_id, delivered, acknowledged in marks:
        values: dict = {"message_id": message_id}
        if delivered:
            values.update(delivery_status=DeliveryStatus.DELIVERED, delivered_at=now)
        if acknowledged:
            values["ack_sent_at"] = now
        kinds.setdefault((delivered, acknowledged), []).append(values)
    with engine.begin() as connection:
        for rows in kinds.values():
            connection.execute(_UPDATE_INBOUND, rows)


# Writes to one stored message, built once: a Core statement on a connection, without an ORM
# session (identity map, unit of work) or a statement to build and key for the cache per call.
_INBOUND = InboundMessage.__table__
_UPDATE_INBOUND = _INBOUND.update().where(_INBOUND.c.id == bindparam("message_id"))
_COUNT_ATTEMPT = {
    column: _INBOUND.update().where(_INBOUND.c.id == bindparam("message_id")).values({column: _INBOUND.c[column] + 1})
    for column in ("delivery_attempts", "ack_attempts")
}


def _update(engine: Engine, message_id: int, **values: object) -> None:
    with engine.begin() as connection:
        connection.execute(_UPDATE_INBOUND, {"message_id": message_id, **values})


def _delivery_target(engine: Engine, key_ring: KeyRing, message_id: int) -> Target | bool:
    """The signal and workflow for a stored message, or whether it counts as delivered already."""
    with Session(engine) as session:
        message = session.get(InboundMessage, message_id)
        if message is None or message.delivery_status != DeliveryStatus.RECEIVED:
            return message is not None and message.delivery_status == DeliveryStatus.DELIVERED
        flow = session.get(Flow, message.flow_id) if message.flow_id else None
        if flow is None:
            return False
        start = (
            PathwayInput.model_validate_json(
                key_ring.decrypt_text(flow.start_enc, sealed_as(Flow, "start_enc", flow.id))
            )
            if flow.start_enc
            else None
        )
        return Target(signal_for(message, stored_correlation(key_ring, message)), flow.workflow_id, flow.pathway, start)


async def send_acknowledgement(
    engine: Engine, http: httpx.AsyncClient, directory: Directory, key_ring: KeyRing, message_id: int
) -> bool:
    """POST the acknowledgement stored with an inbound message to its sender's endpoint."""
    pending = await asyncio.to_thread(_unsent_acknowledgement, engine, key_ring, message_id)
    if pending is None:
        return True
    ack_body, sender = pending
    if not await _post_acknowledgement(engine, http, directory, message_id, ack_body, sender):
        return False
    await asyncio.to_thread(_mark_acknowledgement_sent, engine, message_id)
    return True


async def _post_acknowledgement(
    engine: Engine, http: httpx.AsyncClient, directory: Directory, message_id: int, ack_body: str, sender: str
) -> bool:
    """POST one acknowledgement to its sender, over the transport the directory names for it; True
    when it need not be sent again."""
    try:
        route = directory.route(sender)
        outbound = _acknowledgement_request(directory, route, ack_body)
    except UnknownOrganization:
        log.warning("no endpoint for SOR %s: acknowledgement of message %s kept unsent", sender, message_id)
        return False
    except (MessageError, NoVansDocumentType, EnvelopeError) as err:
        log.warning("acknowledgement of message %s cannot be sent to %s: %s", message_id, sender, err)
        return True  # it cannot travel this way, ever: retrying changes nothing
    try:
        response = await http.post(outbound.url, content=outbound.body, headers=outbound.headers)
    except httpx.HTTPError as err:
        await asyncio.to_thread(_count_attempt, engine, message_id, "ack_attempts")
        log.warning("acknowledgement of message %s not sent (%s): the relay will retry", message_id, type(err).__name__)
        return False
    if response.status_code >= 500:
        await asyncio.to_thread(_count_attempt, engine, message_id, "ack_attempts")
        return False
    receipt = receipt_in(outbound, response.content)
    if response.status_code >= 400 or (receipt is not None and receipt.kind is not ReceiptKind.POSITIVE):
        log.warning(
            "acknowledgement of message %s refused by %s with %s%s",
            message_id,
            sender,
            response.status_code,
            f" ({receipt.kind.value})" if receipt is not None else "",
        )
    return True


def _acknowledgement_request(directory: Directory, route: Route, ack_body: str) -> OutboundRequest:
    if route.transport == "process-message":  # as it is: no parsing on the hot path
        return OutboundRequest(url=route.url, headers={"Content-Type": "application/fhir+json"}, body=ack_body.encode())
    bundle = json.loads(ack_body)
    parsed = parse_message(bundle)
    if parsed.sender is None or parsed.receiver is None:
        raise MessageError("the acknowledgement names no sender or receiver")
    return prepare_request(
        directory, bundle, sender=parsed.sender, receiver=parsed.receiver, sent=utcnow(), route=route
    )


def _unsent_acknowledgement(engine: Engine, key_ring: KeyRing, message_id: int) -> tuple[str, str] | None:
    with Session(engine) as session:
        message = session.get(InboundMessage, message_id)
        if message is None or message.ack_enc is None or message.ack_sent_at is not None:
            return None
        return key_ring.decrypt_text(
            message.ack_enc, sealed_as(InboundMessage, "ack_enc", message.message_header_id)
        ), message.sender_sor


def _mark_acknowledgement_sent(engine: Engine, message_id: int) -> None:
    _update(engine, message_id, ack_sent_at=utcnow())


def undelivered(engine: Engine, older_than: timedelta, limit: int = 200) -> list[tuple[int, str]]:
    """(message id, flow id) of stored messages not yet delivered, in arrival order (which is
    per-flow order too)."""
    cutoff = utcnow() - older_than
    with Session(engine) as session:
        return list(
            session.exec(
                select(InboundMessage.id, InboundMessage.flow_id)
                .where(
                    InboundMessage.delivery_status == DeliveryStatus.RECEIVED,
                    col(InboundMessage.flow_id).is_not(None),
                    InboundMessage.received_at <= cutoff,
                )
                .order_by(col(InboundMessage.id))
                .limit(limit)
            ).all()
        )


def unsent_acknowledgements(engine: Engine, older_than: timedelta, limit: int = 200) -> list[int]:
    cutoff = utcnow() - older_than
    with Session(engine) as session:
        return list(
            session.exec(
                select(InboundMessage.id)
                .where(
                    col(InboundMessage.ack_enc).is_not(None),
                    col(InboundMessage.ack_sent_at).is_(None),
                    InboundMessage.received_at <= cutoff,
                    InboundMessage.ack_attempts < 50,
                )
                .order_by(col(InboundMessage.id))
                .limit(limit)
            ).all()
        )


def _set_status(engine: Engine, message_id: int, status: str, reason: str | None = None) -> None:
    values: dict = {"delivery_status": status}
    if reason is not None:
        values["status_reason"] = reason
    if status == DeliveryStatus.DELIVERED:
        values["delivered_at"] = utcnow()
    _update(engine, message_id, **values)


def _count_attempt(engine: Engine, message_id: int, column: str = "delivery_attempts") -> None:
    """One more failed try at delivering (or, with column="ack_attempts", acknowledging) a message."""
    with engine.begin() as connection:
        connection.execute(_COUNT_ATTEMPT[column], {"message_id": message_id})
