"""The partner systems careflow talks to (hospital departments, labs, municipalities), as real HTTP
servers: they acknowledge careflow's messages and answer them as the pathway declarations say —
for each message careflow sends a party, the replies the pathway then awaits, from that party or
from another organisation it names (e.g. the lab's test result after a referral to a hospital).

Each partner speaks both transports: FHIR `$process-message` (`/partners/{sor}/$process-message`) and
VANSEnvelopes (`/partners/{sor}/vans`, answered with a VANS receipt; transport duplicates recognised
on the envelope's identifiers). What it sends travels as the directory says for the receiver.

Behaviour can be changed at run time (`PUT /control`) so tests can make partners slow, failing,
silent or repetitive; `GET /stats` tells what the partners received and sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from careflow.httpclient import bounded_client
from careflow.settings import Settings
from careflow.tokens import PARTNER_TOKENS_FILE, PartnerTokenFile
from careflow.tracing import Tracing
from messaging import (
    Directory,
    MessageError,
    UnknownOrganization,
    build_acknowledgement,
    build_message,
    decode_body,
    load_directory,
    parse_message,
)
from messaging import referral_draft as draft
from messaging.identifiers import SOR_ENDPOINT_PREFIX
from messaging.model import (
    AckCode,
    AppointmentContent,
    CareCommunicationContent,
    Envelope,
    MessageKind,
    ObservationValue,
    Organization,
    ParsedMessage,
    TestResultContent,
    TreatmentPlanContent,
)
from messaging.referral_draft import BookingContent, TriageContent
from messaging.transport import prepare_request
from messaging.types.care_communication import REGARDING_REFERRAL
from messaging.vans import (
    VANS_CONTENT_TYPE,
    EnvelopeCache,
    EnvelopeError,
    NoVansDocumentType,
    TransportDuplicate,
    VansReceipt,
    build_receipt,
    parse_envelope,
)
from workflows.declare import AwaitEvent, AwaitOneOf, AwaitReply, OnMessage, Send, SendOnEvent
from workflows.registry import Pathways
from workflows.steps import PathwayWorkflow

log = logging.getLogger(__name__)


class Behaviour(BaseModel):
    """How the simulated partners act; every field can be changed while running."""

    ack_delay: float = 0.1
    ack_code: Literal["ok", "transient-error", "fatal-error", "none"] = "ok"
    reply: bool = True  # answer referrals with appointment, test result, treatment plan
    no_reply_fraction: float = 0.0  # this share of referrals is never answered (deadlines escalate)
    quiet_partners: list[str] = []  # these SORs acknowledge messages but never answer them ...
    quiet_in: list[str] = []  # ... in these pathways only (empty: in every pathway)

    def answers_referral(self, partner_sor: str, pathway: str | None = None) -> bool:
        quiet = partner_sor in self.quiet_partners and (not self.quiet_in or pathway in self.quiet_in)
        return self.reply and not quiet and random.random() >= self.no_reply_fraction

    appointment_delay: float = 0.5
    test_result_delay: float = 0.5
    treatment_plan_delay: float = 0.5
    reply_delay: float = 0.5  # any other reply
    outcome: str | None = None  # which outcome to answer a branching step with (None: the first declared)
    # A partner that forwards (an outcome that reassigns the pathway) hands it to this SOR (None: the
    # directory's next simulated organisation of its kind); the new partner then takes the first
    # plain outcome (e.g. accepts).
    forward_to: str | None = None
    reschedule: bool = False  # book, then book again (the second booking replaces the first)
    ask_question: bool = False  # after its decision, the receiver asks careflow a question about the referral
    failure: Literal["none", "503", "stall", "reject"] = (
        "none"  # how the endpoint answers careflow ("reject": 422 + OperationOutcome)
    )
    reject_reason: str = "receiver cannot process this message"
    stall_seconds: float = 15.0
    answer_delay: float = 0.0  # answer careflow's POST this late: its acknowledgement can overtake the answer
    copies: int = 1  # post every message this many times (the extra ones concurrently)
    post_attempts: int = 30  # partners retry posting to careflow, bounded
    # A pathway that carries a dialogue alongside (a hospital stay's CareCommunications): after this
    # share of careflow's messages the partner writes one of its own; careflow's new messages are
    # always answered in their thread, careflow's replies never (the dialogue ends there).
    dialogue_fraction: float = 0.3
    dialogue_delay: float = 0.3


@dataclass(frozen=True)
class Reply:
    """One message a partner sends careflow, and what its content depends on."""

    kind: str
    sender: Organization
    when: str | None = None  # the decision of a branching step's outcome
    forward_to: Organization | None = None  # a forward: the organisation the pathway goes to
    rescheduled: bool = False  # a second booking that replaces the first
    question: bool = False  # a question of the partner's own, in a new thread
    thread_id: str | None = None  # an answer in this CareCommunication thread


class Stats(BaseModel):
    received: dict[str, int]
    received_duplicates: int  # same Bundle.id seen again
    resends_received: int  # same MessageHeader.id, new Bundle.id
    sent: dict[str, int]
    headers_per_step: dict[str, int]  # (service request, event) pairs seen with more than one MessageHeader.id
    post_failures: int
    refused: int = 0  # careflow's POSTs answered 503 or 4xx by the failure mode
    in_flight: int = 0  # acknowledgements and answers not yet posted (or still being retried)
    envelopes_received: int = 0  # VANSEnvelopes careflow posted (each transmission)
    transport_duplicates: dict[str, int] = {}  # envelopes by MedCom's duplicate case (repeated, receipt-lost, ...)
    envelopes_refused: int = 0  # bad envelopes, answered 4xx


class PartnerSimulator:
    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        behaviour: Behaviour,
        partner_token: Callable[[str], str],
        pathways: Pathways | None = None,
    ) -> None:
        self.settings, self.directory, self.behaviour = settings, directory, behaviour
        self.partner_token = partner_token  # SOR -> bearer token: the simulator is handed tokens, holds no key
        self.pathways = pathways or Pathways.load(settings.pathway_modules)
        self.cancellations = {p.cancellation for p in self.pathways if p.cancellation}
        self.http = bounded_client(30)
        self.received: Counter[str] = Counter()
        self.bundles_seen: set[str] = set()
        self.headers_seen: dict[str, set[str]] = defaultdict(set)  # header id -> bundle ids
        self.headers_per_step: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.duplicates = 0
        self.sent: Counter[str] = Counter()
        self.post_failures = 0
        self.refused = 0
        self.cancelled: set[str] = set()
        self.threads_asked: set[str] = set()  # CareCommunication threads a partner started (its questions)
        self.tasks: set[asyncio.Task] = set()
        self.envelopes = EnvelopeCache()
        self.receipts: dict[str, bytes] = {}  # envelope identifier -> the receipt answered
        self.first_envelope: dict[str, str] = {}  # message identifier -> its first envelope's identifier
        self.envelopes_received = 0
        self.envelopes_refused = 0
        self.transport_duplicates: Counter[str] = Counter()
        # Every acknowledgement careflow sent the partners, as received (synthetic data only), for tests.
        self.acknowledgements: deque[dict] = deque(maxlen=5000)

    def stats(self) -> Stats:
        return Stats(
            received=dict(self.received),
            received_duplicates=self.duplicates,
            resends_received=sum(len(b) - 1 for b in self.headers_seen.values()),
            sent=dict(self.sent),
            headers_per_step={f"{sr}|{ev}": len(h) for (sr, ev), h in self.headers_per_step.items() if len(h) > 1},
            post_failures=self.post_failures,
            refused=self.refused,
            in_flight=len(self.tasks),
            envelopes_received=self.envelopes_received,
            transport_duplicates=dict(self.transport_duplicates),
            envelopes_refused=self.envelopes_refused,
        )

    async def receive(self, partner_sor: str, message: ParsedMessage, original: dict) -> None:
        self.received[message.event_code] += 1
        if message.kind == MessageKind.ACKNOWLEDGEMENT:
            self.acknowledgements.append(original)
        if message.bundle_id in self.bundles_seen:
            self.duplicates += 1
            return
        self.bundles_seen.add(message.bundle_id)
        first_time = message.message_header_id not in self.headers_seen
        self.headers_seen[message.message_header_id].add(message.bundle_id)
        if message.service_request_id:
            self.headers_per_step[(message.service_request_id, message.event_code)].add(message.message_header_id)
        if message.kind == MessageKind.ACKNOWLEDGEMENT:
            return
        self._spawn(self._acknowledge(message, original))
        if not first_time:
            return  # a resend: acknowledged again, not answered twice
        if message.kind in self.cancellations and message.service_request_id:
            self.cancelled.add(message.service_request_id)
        elif revises_earlier(message):
            return  # a modified or retracted version of a message already answered (or being answered)
        elif self.behaviour.answers_referral(partner_sor, message.pathway):
            self._spawn(self._answer(partner_sor, message, original))
            if self.dialogue_kinds(partner_sor, message):
                self._spawn(self._converse(partner_sor, message, original))

    async def _acknowledge(self, message: ParsedMessage, original: dict) -> None:
        if self.behaviour.ack_code == "none":
            return
        await asyncio.sleep(self.behaviour.ack_delay)
        ack = build_acknowledgement(
            original,
            code=AckCode(self.behaviour.ack_code),
            message_header_id=str(uuid.uuid4()),
            bundle_id=str(uuid.uuid4()),
            timestamp=datetime.now(UTC),
        )
        await self._post(message.receiver.sor, message.sender.sor, ack, MessageKind.ACKNOWLEDGEMENT)

    def _delay(self, kind: str) -> float:
        b = self.behaviour
        return {
            MessageKind.APPOINTMENT.value: b.appointment_delay,
            MessageKind.TEST_RESULT.value: b.test_result_delay,
            MessageKind.TREATMENT_PLAN.value: b.treatment_plan_delay,
        }.get(kind, b.reply_delay)

    def replies_to(self, partner_sor: str, message: ParsedMessage) -> list[tuple[str, Organization]]:
        """(message type, sender) of every reply the declarations await after careflow sends this
        message to this partner, in order."""
        return [(reply.kind, reply.sender) for reply in self.plan(partner_sor, message)]

    def plan(self, partner_sor: str, message: ParsedMessage) -> list[Reply]:
        """Every reply the declarations await after careflow sends this message to this partner, in
        order: from the pathway named in the message, else from the pathway whose party for this
        partner fits the partner's kind best. A branching step is answered with the behaviour's
        outcome; one that hands the pathway to another organisation (a forward) continues as that
        organisation, which answers the same step again with the first plain outcome."""
        try:
            partner = self.directory.get(partner_sor)
        except UnknownOrganization:
            return []
        chosen: tuple[type[PathwayWorkflow], int] | None = None
        best = 0
        for pathway in self.pathways:
            for index, step in enumerate(pathway.steps):
                if not isinstance(step, Send | SendOnEvent) or step.message != message.kind:
                    continue
                party = next((p for p in pathway.parties if p.role == step.to), None)
                expected = party and (party.kind or party.directory_kind)
                score = (
                    3
                    if message.pathway == pathway.name
                    else 2
                    if expected == partner.kind
                    else 1
                    if not expected
                    else 0
                )
                if score > best:
                    chosen, best = (pathway, index), score
        if chosen is None:
            return []
        pathway, index = chosen
        to_role = pathway.steps[index].to
        replies: list[Reply] = []
        for step in pathway.steps[index + 1 :]:
            if isinstance(step, Send | SendOnEvent | AwaitEvent):
                break
            if isinstance(step, AwaitReply):
                sender = self._organisation(pathway, step.sender, to_role, partner)
                if sender is None:
                    continue
                replies.append(Reply(step.message, sender))
                if self.behaviour.reschedule and step.message == draft.BOOKING:
                    replies.append(Reply(step.message, sender, rescheduled=True))
            elif isinstance(step, AwaitOneOf):
                name = self.behaviour.outcome if self.behaviour.outcome in step.outcomes else next(iter(step.outcomes))
                outcome = step.outcomes[name]
                sender = self._organisation(pathway, step.sender, to_role, partner)
                if sender is None:
                    continue
                reassign = getattr(outcome, "reassign", None)
                new_partner = self._forward_target(partner) if reassign and step.sender == to_role else None
                replies.append(Reply(outcome.message, sender, when=outcome.when, forward_to=new_partner))
                if outcome.end:
                    return replies
                if getattr(outcome, "again", False):
                    if new_partner is not None:
                        partner = self.directory.get(new_partner.sor)
                    plain = next(
                        (o for o in step.outcomes.values() if not (o.end or o.escalate or getattr(o, "again", False))),
                        None,
                    )
                    if plain is not None:
                        replies.append(Reply(plain.message, partner.organization, when=plain.when))
                        outcome = plain
                if self.behaviour.ask_question:
                    replies.append(Reply(MessageKind.CARE_COMMUNICATION.value, partner.organization, question=True))
        return replies

    def _forward_target(self, partner: object) -> Organization | None:
        """Where a forwarding partner sends the referral: the behaviour's SOR, else the next
        organisation of the same kind that this simulator plays."""
        if self.behaviour.forward_to:
            try:
                return self.directory.get(self.behaviour.forward_to).organization
            except UnknownOrganization:
                return None
        simulated = [
            e
            for e in self.directory.entries
            if e.kind == partner.kind and "/partners/" in e.endpoint and e.sor != partner.sor
        ]
        return simulated[0].organization if simulated else None

    def _organisation(
        self, pathway: type[PathwayWorkflow], role: str, to_role: str, partner: object
    ) -> Organization | None:
        if role == to_role:
            return partner.organization
        party = next((p for p in pathway.parties if p.role == role), None)
        kind = party.directory_kind if party else None
        # Never an organisation careflow acts for: careflow speaks for those itself.
        entry = (
            next((e for e in self.directory.entries if e.kind == kind and not e.careflow_acts_for), None)
            if kind
            else None
        )
        return entry.organization if entry else None

    async def _answer(self, partner_sor: str, message: ParsedMessage, original: dict | None = None) -> None:
        service_request = message.service_request_id or ""
        if message.kind == MessageKind.CARE_COMMUNICATION and _regarding_referral(original or {}):
            replies = self._answer_question(partner_sor, message, original or {})
        else:
            replies = self.plan(partner_sor, message)
        booked: str | None = None
        for reply in replies:
            await asyncio.sleep(self._delay(reply.kind))
            if service_request in self.cancelled:
                return
            content = sample_content(reply.kind, service_request, answering=message.kind)
            if reply.kind == draft.TRIAGE:
                content = triage_content(service_request, reply.when, reply.forward_to)
            elif reply.kind == draft.BOOKING:
                content = booking_content(service_request, replaces=booked if reply.rescheduled else None)
                booked = content.appointment_id
            elif reply.question:
                thread = str(uuid.uuid4())
                self.threads_asked.add(thread)
                content = CareCommunicationContent(
                    communication_id=thread,
                    text="Spørgsmål vedr. henvisningen: er patienten fastende ved fremmøde?",
                    category=REGARDING_REFERRAL,
                    priority="routine",
                    service_request_id=service_request,
                )
            elif reply.thread_id:
                content = CareCommunicationContent(
                    communication_id=reply.thread_id,
                    text="Svar: ja, det er noteret.",
                    category=REGARDING_REFERRAL,
                    service_request_id=service_request or None,
                )
            envelope = Envelope(
                message_header_id=str(uuid.uuid4()),
                bundle_id=str(uuid.uuid4()),
                timestamp=datetime.now(UTC),
                sender=reply.sender,
                receiver=message.sender,
                patient=message.patient,
                # a question of the partner's own starts a thread (new-message); the rest answer
                previous_header_id=None if reply.question else message.message_header_id,
            )
            await self._post(
                reply.sender.sor, message.sender.sor, build_message(reply.kind, envelope, content), reply.kind
            )

    def _answer_question(self, partner_sor: str, message: ParsedMessage, original: dict) -> list[Reply]:
        """A CareCommunication about a referral from careflow: a question is answered in its thread;
        an answer to the partner's own question is only acknowledged."""
        thread = message.correlation.thread_id
        if not thread or thread in self.threads_asked:
            return []
        try:
            partner = self.directory.get(partner_sor)
        except UnknownOrganization:
            return []
        return [Reply(MessageKind.CARE_COMMUNICATION.value, partner.organization, thread_id=thread)]

    def dialogue_kinds(self, partner_sor: str, message: ParsedMessage) -> set[str]:
        """The message types the pathway named in the message awaits from this partner alongside its
        steps (OnMessage declarations: a dialogue), the partner's role found by its directory kind."""
        pathway = self.pathways.get(message.pathway) if message.pathway else None
        if pathway is None:
            return set()
        try:
            kind = self.directory.get(partner_sor).kind
        except UnknownOrganization:
            return set()
        roles = {p.role for p in pathway.parties if (p.kind or p.directory_kind) == kind}
        return {
            item.message
            for item in getattr(pathway, "alongside", ())
            if isinstance(item, OnMessage) and item.sender in roles
        }

    async def _converse(self, partner_sor: str, message: ParsedMessage, original: dict) -> None:
        """The partner's side of a dialogue: answer careflow's new CareCommunication in its thread;
        after any other message, now and then, write one of its own about the same episode of care."""
        b = self.behaviour
        current = next((p for p in message.provenance if p.target_header_id == message.message_header_id), None)
        if message.kind == MessageKind.CARE_COMMUNICATION:
            if current is None or current.activity != "new-message":
                return  # careflow's reply: the thread rests
            content = dialogue_content(message, original, reply=True)
        elif random.random() < b.dialogue_fraction:
            content = dialogue_content(message, original, reply=False)
        else:
            return
        await asyncio.sleep(b.dialogue_delay)
        sender = self.directory.get(partner_sor).organization
        envelope = Envelope(
            message_header_id=str(uuid.uuid4()),
            bundle_id=str(uuid.uuid4()),
            timestamp=datetime.now(UTC),
            sender=sender,
            receiver=message.sender,
            patient=message.patient,
        )
        kind = MessageKind.CARE_COMMUNICATION
        await self._post(sender.sor, message.sender.sor, build_message(kind, envelope, content), kind)

    async def _post(self, sender_sor: str, receiver_sor: str, bundle: dict, kind: str) -> None:
        """Post to the receiver like a partner system would, over the transport the directory names
        for it: retry until accepted, bounded."""
        try:
            token = self.partner_token(sender_sor)
            outbound = prepare_request(
                self.directory,
                bundle,
                sender=self.directory.get(sender_sor).organization,
                receiver=self.directory.get(receiver_sor).organization,
                sent=datetime.now(UTC),
            )
        except (LookupError, UnknownOrganization, NoVansDocumentType, EnvelopeError) as err:
            log.warning("cannot post as %s to %s: %s", sender_sor, receiver_sor, err)
            self.post_failures += 1
            return
        endpoint, body = outbound.url, outbound.body
        headers = {**outbound.headers, "Authorization": f"Bearer {token}"}
        copies = max(1, self.behaviour.copies)
        results = await asyncio.gather(*(self._post_once(endpoint, body, headers) for _ in range(copies)))
        if any(results):
            self.sent[str(kind)] += 1

    async def _post_once(self, endpoint: str, body: bytes, headers: dict) -> bool:
        delay = 0.2
        for _ in range(self.behaviour.post_attempts):
            try:
                response = await self.http.post(endpoint, content=body, headers=headers)
                if response.status_code < 500:
                    if response.status_code >= 400:
                        log.warning("careflow refused a message: %s %s", response.status_code, response.text[:300])
                    return response.status_code < 400
            except httpx.HTTPError:
                pass
            self.post_failures += 1
            await asyncio.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 5)
        return False

    def _spawn(self, coroutine) -> None:  # noqa: ANN001
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


# Provenance activities by which a sender replaces a message it sent before (HomeCareObservation):
# the receiver acknowledges them and does not answer them again.
REVISING_ACTIVITIES = frozenset({"modified-message", "retract-message"})


def revises_earlier(message: ParsedMessage) -> bool:
    """Whether the message's own Provenance modifies or retracts an earlier message."""
    return any(
        link.activity in REVISING_ACTIVITIES
        for link in message.provenance
        if link.target_header_id == message.message_header_id
    )


# The CareCommunication category a partner answers a message type with (default: other).
ANSWER_CATEGORY = {MessageKind.HOMECARE_OBSERVATION.value: "examination-results"}
ANSWER_TEXT = {
    "examination-results": "Tak for målingerne. Jeg ringer til patienten i dag og aftaler videre forløb.",
}


def sample_content(kind: str, service_request_id: str, answering: str | None = None) -> dict | object:
    """What a partner puts in a reply of this type: a plausible example (synthetic), keyed to the
    pathway's ServiceRequest; a CareCommunication's category follows the message it answers."""
    now = datetime.now(UTC)
    category = ANSWER_CATEGORY.get(str(answering), "other")
    samples = {
        MessageKind.APPOINTMENT.value: lambda: AppointmentContent(
            service_request_id=service_request_id, start=now + timedelta(days=7), description="Ambulant forundersøgelse"
        ),
        MessageKind.TEST_RESULT.value: lambda: TestResultContent(
            service_request_id=service_request_id,
            code="NPU02319",
            display="Hæmoglobin;B",
            conclusion="Normal",
            observations=[
                ObservationValue(
                    code="NPU02319", display="Hæmoglobin;B", value=round(random.uniform(7.5, 10.5), 1), unit="mmol/L"
                )
            ],
        ),
        MessageKind.TREATMENT_PLAN.value: lambda: TreatmentPlanContent(
            service_request_id=service_request_id, description="Medicinsk behandling og kontrol om 3 måneder"
        ),
        MessageKind.CARE_COMMUNICATION.value: lambda: CareCommunicationContent(
            communication_id=str(uuid.uuid4()),
            text=ANSWER_TEXT.get(category, "Tak for henvendelsen."),
            category=category,
            service_request_id=service_request_id or None,
        ),
        MessageKind.CANCELLATION.value: lambda: {
            "service_request_id": service_request_id,
            "reason": "Afvist: henvises til anden afdeling",
        },
    }
    if kind in samples:
        return samples[kind]()
    return {"service_request_id": service_request_id}  # a type whose content needs no more than that


def triage_content(service_request_id: str, decision: str | None, forward_to: Organization | None) -> TriageContent:
    """The receiver's decision on a referral (MedCom's draft model), with its reason."""
    chosen = draft.Decision(decision) if decision in set(draft.Decision) else draft.Decision.ACCEPT
    return TriageContent(
        service_request_id=service_request_id,
        decision=chosen,
        reason={
            draft.Decision.ACCEPT: "Henvisningen er visiteret",
            draft.Decision.REJECT: "Afvist: henvisningen opfylder ikke visitationskriterierne",
            draft.Decision.FORWARD: "Videresendt: hører under anden afdeling",
            draft.Decision.REPRIORITISE: "Prioritet ændret efter visitation",
        }[chosen],
        priority="urgent" if chosen is draft.Decision.REPRIORITISE else None,
        forward_to=forward_to,
        forwarded_request_id=str(uuid.uuid4()) if chosen is draft.Decision.FORWARD else None,
        decided_at=datetime.now(UTC),
    )


def booking_content(service_request_id: str, replaces: str | None = None) -> BookingContent:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10 if replaces else 7)
    return BookingContent(
        service_request_id=service_request_id,
        appointment_id=str(uuid.uuid4()),
        start=start,
        end=start + timedelta(minutes=45),
        description="Forundersøgelse",
        replaces_appointment_id=replaces,
    )


def _regarding_referral(bundle: dict) -> bool:
    return any(
        coding.get("code") == REGARDING_REFERRAL
        for entry in bundle.get("entry", [])
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
        for category in entry["resource"].get("category", []) or []
        if entry["resource"].get("resourceType") == "Communication" and isinstance(category, dict)
        for coding in category.get("coding", []) or []
        if isinstance(coding, dict)
    )


DIALOGUE_CATEGORIES = ("carecoordination", "discharge", "nursing", "medicine")
DIALOGUE_TEXTS = {
    "carecoordination": "Borgeren modtager hjemmepleje morgen og aften. Hvornår forventes udskrivelse?",
    "discharge": "Vi planlægger hjemtagelse. Er der behov for hjælpemidler ved udskrivelsen?",
    "nursing": "Borgeren har et tryksår på venstre hæl, som vi har fulgt. Hvordan ser det ud nu?",
    "medicine": "Har der været ændringer i borgerens medicin under indlæggelsen?",
}


def dialogue_content(message: ParsedMessage, original: dict, *, reply: bool) -> CareCommunicationContent:
    """A municipality's CareCommunication about the hospital stay a message concerns (synthetic text):
    a reply keeps the thread and category of careflow's message and names it as the one answered;
    a new message opens a thread. Both echo the stay's episode-of-care id (MedCom's rule)."""
    category = _category(original) if reply else random.choice(DIALOGUE_CATEGORIES)
    episode = message.correlation.episode_of_care_id
    return CareCommunicationContent(
        communication_id=(message.correlation.thread_id or str(uuid.uuid4())) if reply else str(uuid.uuid4()),
        text="Tak for svaret, vi følger op." if reply else DIALOGUE_TEXTS.get(category, "Spørgsmål om borgeren."),
        category=category,
        previous_header_id=message.message_header_id if reply else None,
        episode_of_care_id=episode,
        episode_of_care_system=(SOR_ENDPOINT_PREFIX + message.sender.sor) if episode and message.sender else None,
    )


def _category(original: dict) -> str:
    for entry in original.get("entry") or []:
        resource = entry.get("resource") or {} if isinstance(entry, dict) else {}
        if resource.get("resourceType") == "Communication":
            for category in resource.get("category") or []:
                for coding in category.get("coding") or []:
                    if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                        return coding["code"]
    return "carecoordination"


def create_simulator(
    settings: Settings,
    behaviour: Behaviour | None = None,
    tracing: Tracing | None = None,
    partner_token: Callable[[str], str] | None = None,
) -> FastAPI:
    """The simulated partners; `partner_token` gives each its bearer token (default: the token file,
    CAREFLOW_SIMULATOR_TOKENS_FILE, that `careflow dev` writes in the data dir)."""
    tokens = partner_token or PartnerTokenFile(
        settings.simulator_tokens_file or settings.data_dir / PARTNER_TOKENS_FILE
    )
    simulator = PartnerSimulator(settings, load_directory(settings), behaviour or Behaviour(), tokens)
    app = FastAPI(title="careflow partner simulator")
    # Like a partner system that traces: its acknowledgement carries the trace of the message it answers.
    tracing = tracing or Tracing.from_settings(settings, "careflow-simulator")
    tracing.instrument_app(app)
    tracing.instrument_http(simulator.http)
    app.state.simulator = simulator

    async def failure_mode() -> Response | None:
        """How the behaviour's failure mode answers careflow (None: as a working partner would)."""
        b = simulator.behaviour
        if b.failure == "503":
            simulator.refused += 1
            return Response(status_code=503, content="temporarily unavailable")
        if b.failure == "reject":
            simulator.refused += 1
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "processing", "diagnostics": b.reject_reason}],
            }
            return Response(status_code=422, content=json.dumps(outcome), media_type="application/fhir+json")
        if b.failure == "stall":
            await asyncio.sleep(b.stall_seconds)
        return None

    async def take(sor: str, body: bytes, content_type: str) -> Response | None:
        """Read a FHIR message for partner `sor` and act on it (None), or why not (a 400)."""
        try:
            original = decode_body(body, content_type)  # read once: parsed from the JSON, kept as it came
            message = parse_message(original)
        except (MessageError, ValueError) as err:
            return Response(status_code=400, content=str(err))
        if message.receiver is None or message.receiver.sor != sor:
            return Response(status_code=400, content="message not addressed to this partner")
        await simulator.receive(sor, message, original)
        if simulator.behaviour.answer_delay:
            await asyncio.sleep(simulator.behaviour.answer_delay)
        return None

    @app.post("/partners/{sor}/$process-message", status_code=202)
    async def process_message(sor: str, request: Request) -> Response:
        """A partner system's inbound endpoint (FHIR $process-message)."""
        if (failed := await failure_mode()) is not None:
            return failed
        refused = await take(sor, await request.body(), request.headers.get("content-type", "application/fhir+json"))
        return refused or Response(status_code=202)

    @app.post("/partners/{sor}/vans", status_code=200)
    async def vans_envelope(sor: str, request: Request) -> Response:
        """A partner system's VANS inbound: one envelope, answered with the transport receipt. The
        receipt says the envelope arrived; the MedCom acknowledgement follows as its own message."""
        if (failed := await failure_mode()) is not None:
            return failed
        try:
            envelope = parse_envelope(await request.body())
        except EnvelopeError as err:
            simulator.envelopes_refused += 1
            return Response(status_code=err.status, content=f"{err.code}: {err}")
        if isinstance(envelope, VansReceipt):
            return Response(status_code=202)  # a receipt of ours: nothing to answer
        simulator.envelopes_received += 1
        if envelope.receiver.value != simulator.directory.get(sor).ean:
            simulator.envelopes_refused += 1
            return Response(status_code=400, content="envelope not addressed to this partner's GLN")
        case = simulator.envelopes.receive(envelope)
        simulator.transport_duplicates[case.value] += 1
        if case is TransportDuplicate.ENVELOPE_REUSED:
            return Response(status_code=409, content="EnvelopeIdentifier reused for another message")
        if case is TransportDuplicate.REPEATED:  # the same envelope again: the first receipt
            return Response(content=simulator.receipts[envelope.envelope_identifier], media_type=VANS_CONTENT_TYPE)
        refused = await take(sor, envelope.data, envelope.meta.mime_type)
        if refused is not None:
            return refused
        if case is TransportDuplicate.RECEIPT_LOST:  # MedCom: the message again, its original receipt again
            receipt = simulator.receipts[simulator.first_envelope[envelope.meta.identifier]]
        else:
            receipt = build_receipt(envelope, envelope_identifier=str(uuid.uuid4()), sent=datetime.now(UTC))
            simulator.first_envelope.setdefault(envelope.meta.identifier, envelope.envelope_identifier)
        simulator.receipts[envelope.envelope_identifier] = receipt
        return Response(content=receipt, media_type=VANS_CONTENT_TYPE)

    @app.get("/control", response_model=Behaviour)
    def get_behaviour() -> Behaviour:
        return simulator.behaviour

    @app.put("/control", response_model=Behaviour)
    def set_behaviour(behaviour: Behaviour) -> Behaviour:
        """Change how the partners act, e.g. `{"failure": "503"}`."""
        simulator.behaviour = behaviour
        return behaviour

    @app.get("/stats", response_model=Stats)
    def stats() -> Stats:
        return simulator.stats()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app
