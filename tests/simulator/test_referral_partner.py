"""The simulated receiver of a referral on MedCom's draft model, over real HTTP: it triages (accept,
reject, forward, reprioritise) as its Behaviour says, books and reschedules, asks a question about
the referral and answers careflow's. careflow's side is a recording endpoint here: what the partner
posts is read back and validated with careflow's own parser and validator."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request, Response

from careflow.settings import Settings
from messaging import Envelope, PatientData, build_message, parse_message, to_json, validate_message
from messaging import referral_draft as draft
from messaging.directory import Directory
from messaging.model import MessageKind, ParsedMessage
from messaging.types.care_communication import CareCommunicationContent
from simulator.app import Behaviour, create_simulator
from tests.conftest import LoopbackServer, free_port, wait_for, write_directory

GP, HOSPITAL, SECOND_HOSPITAL = "100000000000001", "200000000000001", "200000000000003"
PATHWAY_MODULES = ["workflows.medcom_referral"]


class Recorder:
    def __init__(self) -> None:
        self.received: list[tuple[ParsedMessage, dict]] = []

    def clinical(self) -> list[tuple[ParsedMessage, dict]]:
        return [(p, b) for p, b in self.received if p.kind != MessageKind.ACKNOWLEDGEMENT]


@pytest_asyncio.fixture
async def partner(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Recorder, Directory, object]]:
    recorder = Recorder()
    careflow = FastAPI()

    @careflow.post("/fhir/$process-message")
    async def receive(request: Request) -> Response:
        body = await request.json()
        assert validate_message(body) == [], "the partner's message validates with careflow's validator"
        recorder.received.append((parse_message(body), body))
        return Response(status_code=202)

    api_port, simulator_port = free_port(), free_port()
    directory_path = write_directory(
        tmp_path / "directory.json",
        api_url=f"http://127.0.0.1:{api_port}",
        simulator_url=f"http://127.0.0.1:{simulator_port}",
    )
    settings = Settings(data_dir=tmp_path, directory_path=directory_path, pathway_modules=PATHWAY_MODULES)
    simulator_app = create_simulator(
        settings,
        Behaviour(ack_delay=0.01, reply_delay=0.01, treatment_plan_delay=0.01),
        partner_token=lambda sor: f"token-{sor}",
    )
    async with (
        LoopbackServer(careflow, api_port),
        LoopbackServer(simulator_app, simulator_port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{simulator_port}", timeout=10) as http,
    ):
        yield http, recorder, Directory.load(directory_path), simulator_app.state.simulator


async def post(http: httpx.AsyncClient, directory: Directory, kind: str, content: object, to: str = HOSPITAL) -> str:
    header_id = str(uuid.uuid4())
    envelope = Envelope(
        message_header_id=header_id,
        bundle_id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        sender=directory.get(GP).organization,
        receiver=directory.get(to).organization,
        patient=PatientData(cpr="0101505123"),
        pathway="medcom-referral",
    )
    response = await http.post(
        f"/partners/{to}/$process-message",
        content=to_json(build_message(kind, envelope, content)),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 202, response.text
    return header_id


async def refer(http: httpx.AsyncClient, directory: Directory) -> str:
    flow = str(uuid.uuid4())
    await post(http, directory, draft.NEW_REFERRAL, draft.ReferralRequestContent(service_request_id=flow, reason="x"))
    return flow


async def replies(recorder: Recorder, count: int) -> list[tuple[ParsedMessage, dict]]:
    async def enough() -> list | None:
        return recorder.clinical() if len(recorder.clinical()) >= count else None

    return await wait_for(enough, timeout=10)


PLAN = MessageKind.TREATMENT_PLAN.value


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("accepted", [(HOSPITAL, draft.TRIAGE, "accept"), (HOSPITAL, draft.BOOKING, None), (HOSPITAL, PLAN, None)]),
        (
            "reprioritised",
            [
                (HOSPITAL, draft.TRIAGE, "prioritetsaendring"),
                (HOSPITAL, draft.TRIAGE, "accept"),
                (HOSPITAL, draft.BOOKING, None),
                (HOSPITAL, PLAN, None),
            ],
        ),
        (
            "forwarded",
            [
                (HOSPITAL, draft.TRIAGE, "videresendelse"),
                (SECOND_HOSPITAL, draft.TRIAGE, "accept"),
                (SECOND_HOSPITAL, draft.BOOKING, None),
                (SECOND_HOSPITAL, PLAN, None),
            ],
        ),
    ],
)
async def test_the_receiver_triages_as_told_and_a_forward_continues_as_the_new_receiver(
    partner: tuple, outcome: str, expected: list
) -> None:
    http, recorder, directory, simulator = partner
    simulator.behaviour = simulator.behaviour.model_copy(update={"outcome": outcome})
    flow = await refer(http, directory)
    got = await replies(recorder, len(expected))
    await asyncio.sleep(0.2)
    assert [(p.sender.sor, p.kind, p.correlation.outcome) for p, _ in recorder.clinical()] == expected
    assert all(p.service_request_id == flow for p, _ in got)
    if outcome == "forwarded":
        assert got[0][0].correlation.forward_to == SECOND_HOSPITAL


async def test_a_rejection_says_why_and_nothing_follows(partner: tuple) -> None:
    http, recorder, directory, simulator = partner
    simulator.behaviour = simulator.behaviour.model_copy(update={"outcome": "rejected"})
    await refer(http, directory)
    [(triage, _)] = await replies(recorder, 1)
    assert triage.correlation.outcome == "afvisning" and "opfylder ikke" in triage.correlation.summary
    await asyncio.sleep(0.3)
    assert len(recorder.clinical()) == 1


async def test_a_rescheduled_booking_replaces_the_first(partner: tuple) -> None:
    http, recorder, directory, simulator = partner
    simulator.behaviour = simulator.behaviour.model_copy(update={"reschedule": True})
    await refer(http, directory)
    got = await replies(recorder, 4)
    bookings = [b for p, b in got if p.kind == draft.BOOKING]
    assert len(bookings) == 2
    first = next(e["resource"] for e in bookings[0]["entry"] if e["resource"]["resourceType"] == "Appointment")
    cancelled = [
        e["resource"]
        for e in bookings[1]["entry"]
        if e["resource"]["resourceType"] == "Appointment" and e["resource"]["status"] == "cancelled"
    ]
    assert [c["identifier"] for c in cancelled] == [first["identifier"]]


async def test_the_receiver_asks_about_the_referral_and_answers_careflows_question(partner: tuple) -> None:
    http, recorder, directory, simulator = partner
    simulator.behaviour = simulator.behaviour.model_copy(update={"ask_question": True, "reply": True})
    flow = await refer(http, directory)
    got = await replies(recorder, 4)
    [(question, body)] = [(p, b) for p, b in got if p.kind == MessageKind.CARE_COMMUNICATION]
    communication = body["entry"][2]["resource"]
    assert communication["category"][0]["coding"][0]["code"] == "regarding-referral"
    assert communication["priority"] == "routine" and question.service_request_id == flow
    recorder.received.clear()

    # careflow's answer in the partner's own thread is acknowledged, not answered again
    answer = CareCommunicationContent(
        communication_id=question.correlation.thread_id, text="Ja", category="regarding-referral"
    )
    await post(http, directory, MessageKind.CARE_COMMUNICATION, answer)
    # careflow's own question is answered in its thread, as a reply to it
    thread = str(uuid.uuid4())
    asked = CareCommunicationContent(
        communication_id=thread,
        text="Hvornår?",
        category="regarding-referral",
        priority="asap",
        service_request_id=flow,
    )
    header_id = await post(http, directory, MessageKind.CARE_COMMUNICATION, asked)
    [(reply, _)] = await replies(recorder, 1)
    assert reply.correlation.thread_id == thread and reply.sender.sor == HOSPITAL
    assert [(p.activity, p.previous_header_id) for p in reply.provenance][-1] == ("reply-message", header_id)
    await asyncio.sleep(0.3)
    assert len(recorder.clinical()) == 1
