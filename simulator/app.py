"""A hospital department and a lab, as real HTTP servers: they acknowledge careflow's messages and
answer a referral with an appointment, a test result and a treatment plan, after short delays.

Behaviour can be changed at run time (`PUT /control`) so tests can make partners slow, failing,
silent or repetitive; `GET /stats` tells what the partners received and sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from careflow.auth import Role, issue_token
from careflow.tracing import Tracing
from careflow.settings import Settings
from messaging import Directory, MessageError, build_acknowledgement, build_message, parse_message, to_json
from messaging.model import (
    AckCode,
    AppointmentContent,
    Envelope,
    MessageKind,
    ObservationValue,
    ParsedMessage,
    TestResultContent,
    TreatmentPlanContent,
)

log = logging.getLogger(__name__)

LAB_SOR = "300000000000001"


class Behaviour(BaseModel):
    """How the simulated partners act; every field can be changed while running."""

    ack_delay: float = 0.1
    ack_code: Literal["ok", "transient-error", "fatal-error", "none"] = "ok"
    reply: bool = True  # answer referrals with appointment, test result, treatment plan
    no_reply_fraction: float = 0.0  # this share of referrals is never answered (deadlines escalate)
    quiet_partners: list[str] = []  # these SORs acknowledge referrals but never answer them

    def answers_referral(self, partner_sor: str) -> bool:
        return self.reply and partner_sor not in self.quiet_partners and random.random() >= self.no_reply_fraction
    appointment_delay: float = 0.5
    test_result_delay: float = 0.5
    treatment_plan_delay: float = 0.5
    failure: Literal["none", "503", "stall", "reject"] = "none"  # how the endpoint answers careflow ("reject": 422 + OperationOutcome)
    reject_reason: str = "receiver cannot process this message"
    stall_seconds: float = 15.0
    answer_delay: float = 0.0  # answer careflow's POST this late: its acknowledgement can overtake the answer
    copies: int = 1  # post every message this many times (the extra ones concurrently)
    post_attempts: int = 30  # partners retry posting to careflow, bounded


class Stats(BaseModel):
    received: dict[str, int]
    received_duplicates: int  # same Bundle.id seen again
    resends_received: int  # same MessageHeader.id, new Bundle.id
    sent: dict[str, int]
    headers_per_step: dict[str, int]  # (service request, event) pairs seen with more than one MessageHeader.id
    post_failures: int
    refused: int = 0  # careflow's POSTs answered 503 or 4xx by the failure mode
    in_flight: int = 0  # acknowledgements and answers not yet posted (or still being retried)


class PartnerSimulator:
    def __init__(self, settings: Settings, directory: Directory, behaviour: Behaviour) -> None:
        self.settings, self.directory, self.behaviour = settings, directory, behaviour
        self.http = httpx.AsyncClient(timeout=30)
        self.received: Counter[str] = Counter()
        self.bundles_seen: set[str] = set()
        self.headers_seen: dict[str, set[str]] = defaultdict(set)  # header id -> bundle ids
        self.headers_per_step: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.duplicates = 0
        self.sent: Counter[str] = Counter()
        self.post_failures = 0
        self.refused = 0
        self.cancelled: set[str] = set()
        self.tasks: set[asyncio.Task] = set()

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
        )

    async def receive(self, partner_sor: str, message: ParsedMessage, original: dict) -> None:
        self.received[message.event_code] += 1
        if message.bundle_id in self.bundles_seen:
            self.duplicates += 1
            return
        self.bundles_seen.add(message.bundle_id)
        first_time = message.message_header_id not in self.headers_seen
        self.headers_seen[message.message_header_id].add(message.bundle_id)
        if message.service_request_id:
            self.headers_per_step[(message.service_request_id, message.event_code)].add(message.message_header_id)
        if message.kind is MessageKind.ACKNOWLEDGEMENT:
            return
        self._spawn(self._acknowledge(message, original))
        if not first_time:
            return  # a resend: acknowledged again, not answered twice
        if message.kind is MessageKind.CANCELLATION and message.service_request_id:
            self.cancelled.add(message.service_request_id)
        elif message.kind is MessageKind.REFERRAL and self.behaviour.answers_referral(partner_sor):
            self._spawn(self._answer_referral(partner_sor, message))

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

    async def _answer_referral(self, hospital_sor: str, referral: ParsedMessage) -> None:
        b = self.behaviour
        service_request = referral.service_request_id
        referrer = referral.sender
        hospital = self.directory.get(hospital_sor).organization
        lab = self.directory.get(LAB_SOR).organization
        now = datetime.now(UTC)
        steps = [
            (b.appointment_delay, hospital, MessageKind.APPOINTMENT, AppointmentContent(service_request_id=service_request, start=now + timedelta(days=7), description="Ambulant forundersøgelse")),
            (
                b.test_result_delay,
                lab,
                MessageKind.TEST_RESULT,
                TestResultContent(
                    service_request_id=service_request,
                    code="NPU02319",
                    display="Hæmoglobin;B",
                    conclusion="Normal",
                    observations=[ObservationValue(code="NPU02319", display="Hæmoglobin;B", value=round(random.uniform(7.5, 10.5), 1), unit="mmol/L")],
                ),
            ),
            (b.treatment_plan_delay, hospital, MessageKind.TREATMENT_PLAN, TreatmentPlanContent(service_request_id=service_request, description="Medicinsk behandling og kontrol om 3 måneder")),
        ]
        for delay, sender, kind, content in steps:
            await asyncio.sleep(delay)
            if service_request in self.cancelled:
                return
            envelope = Envelope(
                message_header_id=str(uuid.uuid4()),
                bundle_id=str(uuid.uuid4()),
                timestamp=datetime.now(UTC),
                sender=sender,
                receiver=referrer,
                patient=referral.patient,
                previous_header_id=referral.message_header_id,
            )
            await self._post(sender.sor, referrer.sor, build_message(kind, envelope, content), kind)

    async def _post(self, sender_sor: str, receiver_sor: str, bundle: dict, kind: MessageKind) -> None:
        """Post to the receiver's endpoint like a partner system would: retry until accepted, bounded."""
        endpoint = self.directory.get(receiver_sor).endpoint
        token = issue_token(self.settings.token_secret, subject=f"simulator-{sender_sor}", role=Role.PARTNER, sor=sender_sor, ttl=timedelta(hours=1))
        headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"}
        body = to_json(bundle)
        copies = max(1, self.behaviour.copies)
        results = await asyncio.gather(*(self._post_once(endpoint, body, headers) for _ in range(copies)))
        if any(results):
            self.sent[kind.value] += 1

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


def create_simulator(settings: Settings, behaviour: Behaviour | None = None, tracing: Tracing | None = None) -> FastAPI:
    simulator = PartnerSimulator(settings, Directory.load(settings.directory_path), behaviour or Behaviour())
    app = FastAPI(title="careflow partner simulator")
    # Like a partner system that traces: its acknowledgement carries the trace of the message it answers.
    tracing = tracing or Tracing.from_settings(settings, "careflow-simulator")
    tracing.instrument_app(app)
    tracing.instrument_http(simulator.http)
    app.state.simulator = simulator

    @app.post("/partners/{sor}/$process-message", status_code=202)
    async def process_message(sor: str, request: Request) -> Response:
        """A partner system's inbound endpoint."""
        b = simulator.behaviour
        if b.failure == "503":
            simulator.refused += 1
            return Response(status_code=503, content="temporarily unavailable")
        if b.failure == "reject":
            simulator.refused += 1
            outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing", "diagnostics": b.reject_reason}]}
            return Response(status_code=422, content=json.dumps(outcome), media_type="application/fhir+json")
        if b.failure == "stall":
            await asyncio.sleep(b.stall_seconds)
        body = await request.body()
        try:
            message = parse_message(body, request.headers.get("content-type", "application/fhir+json"))
            original = json.loads(body)
        except (MessageError, ValueError) as err:
            return Response(status_code=400, content=str(err))
        if message.receiver is None or message.receiver.sor != sor:
            return Response(status_code=400, content="message not addressed to this partner")
        await simulator.receive(sor, message, original)
        if b.answer_delay:
            await asyncio.sleep(b.answer_delay)
        return Response(status_code=202)

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
