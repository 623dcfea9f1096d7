"""Activities that talk to partner systems: build and send MedCom messages, over the transport the
directory names for the receiver (messaging/transport.py): the workflow never knows which."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine, bindparam, insert, select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models import ActivityErrors, SendMessageRequest, SendMessageResult
from careflow.crypto import KeyRing
from messaging import Directory, NotAccepted, UnknownOrganization, build_message, parse_message, to_json
from messaging.directory import Route
from messaging.model import Organization
from messaging.transport import OutboundRequest, prepare_request, receipt_in
from messaging.vans import EnvelopeError, NoVansDocumentType, ReceiptKind
from store.models import OutboundMessage, sealed_as, utcnow

log = logging.getLogger(__name__)

# The send's statements, built once with bound parameters: a send stores its message and records
# the partner's answer on every pathway step.
_OUTBOUND = OutboundMessage.__table__
_THIS_BUNDLE = _OUTBOUND.c.bundle_id == bindparam("q_bundle_id")
_STORED = select(_OUTBOUND.c.body_enc, _OUTBOUND.c.created_at).where(_THIS_BUNDLE)
_STORE = insert(_OUTBOUND)
_RECORD_RESULT = update(_OUTBOUND).where(_THIS_BUNDLE)
_FIRST_SENT = update(_OUTBOUND).where(_THIS_BUNDLE, _OUTBOUND.c.sent_at.is_(None))


class MessageActivities:
    def __init__(self, engine: Engine, http: httpx.AsyncClient, directory: Directory, key_ring: KeyRing) -> None:
        self.engine = engine
        self.http = http
        self.directory = directory
        self.key_ring = key_ring

    @activity.defn
    def resolve_organization(self, sor: str) -> Organization:
        """The directory's organisation for a SOR code a partner named (a referral forwarded to it)."""
        try:
            return self.directory.get(sor).organization
        except UnknownOrganization:
            raise ApplicationError(
                f"SOR {sor} is not in the directory", type=ActivityErrors.UNKNOWN_ORGANIZATION, non_retryable=True
            ) from None

    @activity.defn
    async def send_message(self, request: SendMessageRequest) -> SendMessageResult:
        """Build (once) and POST a message. The Bundle.id is the idempotency key: a retry re-sends
        the stored message, never a second one."""
        envelope = request.envelope
        try:
            self.directory.require_accepts(envelope.receiver.sor, request.kind)
        except UnknownOrganization:
            raise ApplicationError(
                f"receiver SOR {envelope.receiver.sor} is not in the directory",
                type=ActivityErrors.UNKNOWN_ORGANIZATION,
                non_retryable=True,
            ) from None
        except NotAccepted as err:
            raise ApplicationError(str(err), type=ActivityErrors.NOT_ACCEPTED, non_retryable=True) from None

        route = self.directory.route(envelope.receiver.sor)
        # The database in a thread: a busy store must not stall the worker's event loop, which runs
        # the workflow tasks too.
        body, first_built = await asyncio.to_thread(self._stored_or_new, request, route)
        try:
            # SentDateTime is when the message was first built: a retry of this Bundle.id is the
            # identical envelope (a transport duplicate to the receiver), a resend a new one.
            outbound = prepare_request(
                self.directory, body, sender=envelope.sender, receiver=envelope.receiver, sent=first_built, route=route
            )
        except (NoVansDocumentType, EnvelopeError) as err:
            raise ApplicationError(
                f"cannot put the message to SOR {envelope.receiver.sor} in a VANSEnvelope: {err}",
                type=ActivityErrors.NOT_ACCEPTED,
                non_retryable=True,
            ) from None
        try:
            response = await self.http.post(outbound.url, content=outbound.body, headers=outbound.headers)
        except httpx.HTTPError as err:
            log.warning("send to %s failed (%s), will retry", envelope.receiver.sor, type(err).__name__)
            raise
        receipt = receipt_in(outbound, response.content) if response.status_code < 500 else None
        await asyncio.to_thread(
            self._record_result, envelope.bundle_id, response.status_code, outbound, receipt.kind if receipt else None
        )
        if response.status_code >= 500:
            raise RuntimeError(f"partner {envelope.receiver.sor} answered {response.status_code}")  # retried
        if response.status_code >= 400 or (receipt is not None and receipt.kind is not ReceiptKind.POSITIVE):
            reason = (
                f"negative VANS receipt {receipt.kind.value}: {receipt.error_description or receipt.error_code}"
                if receipt is not None and receipt.kind is not ReceiptKind.POSITIVE
                else _reason(response)
            )
            raise ApplicationError(
                f"partner {envelope.receiver.sor} refused the message ({response.status_code}): {reason}",
                type=ActivityErrors.PARTNER_REJECTED,
                non_retryable=True,
            )
        log.info(
            "sent %s %s (bundle %s) to %s over %s",
            request.kind,
            envelope.message_header_id,
            envelope.bundle_id,
            envelope.receiver.sor,
            outbound.transport,
        )
        return SendMessageResult(bundle_id=envelope.bundle_id, http_status=response.status_code)

    def _stored_or_new(self, request: SendMessageRequest, route: Route) -> tuple[bytes, datetime]:
        """The message's Bundle (JSON) and when it was first built: built and stored once per Bundle.id."""
        envelope = request.envelope
        with self.engine.begin() as connection:
            stored = connection.execute(_STORED, {"q_bundle_id": envelope.bundle_id}).first()
            if stored is not None:
                body = self.key_ring.decrypt_text(
                    stored.body_enc, sealed_as(OutboundMessage, "body_enc", envelope.bundle_id)
                ).encode()
                return body, _aware(stored.created_at)
            bundle = build_message(request.kind, envelope, request.message_content())
            correlation = parse_message(bundle).correlation
            body = to_json(bundle)
            created = utcnow()
            connection.execute(
                _STORE,
                {
                    "created_at": created,
                    "thread_id": correlation.thread_id,
                    "episode_of_care_id": correlation.episode_of_care_id,
                    "message_header_id": envelope.message_header_id,
                    "bundle_id": envelope.bundle_id,
                    "flow_id": request.flow_id,
                    "step": request.step,
                    "event_code": request.kind,
                    "attempt": request.attempt,
                    "receiver_sor": envelope.receiver.sor,
                    "endpoint": route.url,
                    "transport": route.transport,
                    "body_enc": self.key_ring.encrypt_text(
                        body.decode(), sealed_as(OutboundMessage, "body_enc", envelope.bundle_id)
                    ),
                },
            )
            return body, created

    def _record_result(
        self, bundle_id: str, status: int, outbound: OutboundRequest, receipt: ReceiptKind | None
    ) -> None:
        """What the partner answered, on the stored message: one UPDATE (its first send time kept)."""
        values: dict = {
            "q_bundle_id": bundle_id,
            "http_status": status,
            "transport": outbound.transport,
            "endpoint": outbound.url,
            "envelope_identifier": outbound.envelope_identifier,
        }
        if receipt is not None:
            values["transport_receipt"] = receipt.value
        with self.engine.begin() as connection:
            updated = connection.execute(_RECORD_RESULT, values)
            if updated.rowcount != 1:
                raise RuntimeError(f"outbound message {bundle_id} not stored")  # retried: it is stored first
            if status < 300:
                connection.execute(_FIRST_SENT, {"q_bundle_id": bundle_id, "sent_at": utcnow()})


def _aware(moment: datetime) -> datetime:
    """A stored timestamp with its zone (SQLite gives them back naive; they were written in UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _reason(response: httpx.Response) -> str:
    """The partner's reason, from an OperationOutcome if it sent one."""
    try:
        outcome = response.json()
        issues = outcome.get("issue", [])
        texts = [i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code", "") for i in issues]
        return "; ".join(t for t in texts if t) or response.reason_phrase
    except ValueError:
        return response.text[:200] or response.reason_phrase
