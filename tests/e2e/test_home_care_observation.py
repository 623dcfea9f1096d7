"""Home-care observations to the GP, end to end: a real dev server, worker, API and the simulated GP over
HTTP. The acute-care team's report is sent and acknowledged, modified and retracted; the GP answers with
an examination-results CareCommunication, in time or late (then the pathway escalates)."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from careflow.auth import Role
from careflow.crypto import KeyRing
from messaging import validate_message
from messaging.bundle import as_list, resources
from store.db import make_engine
from store.models import InboundMessage, sealed_as
from tests.conftest import Stack, record_history, wait_for
from tests.e2e.flows import sent_bundles, view_when
from workflows.home_care_observation import (
    DEMO_ACUTE_TEAM,
    DEMO_VISITING_GP,
    HomeCareObservationPathway,
    example_input,
)

pytestmark = pytest.mark.e2e

KIND = "homecareobservation-message"
CORRECTION = {
    "observations": [{"code": "NPU08676", "display": "Pt—Legeme; temp.", "value": 39.4, "unit": "°C"}],
    "conclusion": "Temperatur målt igen efter 30 min: 39,4. Fortsat påvirket.",
}


def _rows(stack: Stack, query):  # noqa: ANN001, ANN202
    engine = make_engine(stack.settings.sqlalchemy_url)
    try:
        with Session(engine) as session:
            return session.exec(query).all()
    finally:
        engine.dispose()


def _received(stack: Stack, flow_id: str, event_code: str) -> list[dict]:
    key_ring = KeyRing.parse(stack.settings.codec_keys)
    rows = _rows(
        stack,
        select(InboundMessage).where(InboundMessage.flow_id == flow_id, InboundMessage.event_code == event_code),
    )
    return [
        json.loads(key_ring.decrypt_text(row.body_enc, sealed_as(InboundMessage, "body_enc", row.message_header_id)))
        for row in rows
    ]


def _own_provenance(bundle: dict) -> dict:
    header_id = next(r for _, r in resources(bundle, "MessageHeader"))["id"]
    return next(
        p
        for _, p in resources(bundle, "Provenance")
        if {"reference": f"MessageHeader/{header_id}"} in as_list(p.get("target"))
    )


async def _start(stack: Stack, seed: int) -> str:
    body = example_input(random.Random(seed))
    response = await stack.api.post(
        "/pathways/home-care-observation/flows",
        json=body,
        headers=stack.headers(Role.CLINICIAN, sor=DEMO_ACUTE_TEAM),
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def _event(stack: Stack, flow_id: str, event: str, data: dict) -> object:
    return await stack.api.post(
        f"/flows/{flow_id}/events/{event}",
        json={"reason": "akutteamet", "data": data},
        headers=stack.headers(Role.CLINICIAN, sor=DEMO_ACUTE_TEAM),
    )


class _Simulator:
    """The stack's simulated partners, their behaviour changed for one test and restored after."""

    def __init__(self, stack: Stack, **changes: object) -> None:
        self.simulator = stack.simulator_app.state.simulator
        self.changes = changes

    def __enter__(self) -> None:
        self.before = self.simulator.behaviour
        self.simulator.behaviour = self.before.model_copy(update=self.changes)

    def __exit__(self, *exc: object) -> None:
        self.simulator.behaviour = self.before


async def test_the_report_is_acknowledged_and_the_gp_answers_in_time(any_stack: Stack) -> None:
    stack = any_stack
    before = stack.simulator_app.state.simulator.stats()
    flow_id = await _start(stack, 1)
    flow = await view_when(stack, flow_id, lambda f: f["status"] == "completed")
    assert flow["open_escalations"] == 0
    out = [m for m in flow["messages"] if m["direction"] == "out"]
    assert {m["transport"] for m in out} == {stack.transport}, "careflow sent over the stack's transport"
    after = stack.simulator_app.state.simulator.stats()
    if stack.transport == "vans":
        assert after.envelopes_received > before.envelopes_received, "the GP got envelopes"
        assert all(m["transport_receipt"] == "PositiveMessage" for m in out), "receipts kept apart from acks"
    else:
        assert after.envelopes_received == before.envelopes_received
    [(row, bundle)] = sent_bundles(stack, flow_id, KIND)
    assert (row.receiver_sor, row.ack_code) == (DEMO_VISITING_GP, "ok")
    assert validate_message(bundle) == []
    assert _own_provenance(bundle)["activity"]["coding"][0]["code"] == "new-message"
    # the GP's answer: a CareCommunication about examination results that refers to the report
    [answer] = _received(stack, flow_id, "care-communication-message")
    communication = next(r for _, r in resources(answer, "Communication"))
    assert communication["category"][0]["coding"][0]["code"] == "examination-results"
    reply = next(p for _, p in resources(answer, "Provenance"))
    assert reply["entity"][0]["what"]["reference"] == f"MessageHeader/{row.message_header_id}"
    kinds = [(e["kind"], e["step"]) for e in flow["timeline"]]
    assert ("sent", "observation") in kinds and ("received", "answer") in kinds
    if stack.transport == "process-message":
        workflow_id = HomeCareObservationPathway.workflow_id(flow_id)
        await record_history(stack.client, workflow_id, "home-care-observation-answered")


async def test_a_modified_and_a_retracted_version_are_sent_acknowledged_and_end_it(any_stack: Stack) -> None:
    stack = any_stack
    with _Simulator(stack, quiet_partners=[DEMO_VISITING_GP], quiet_in=["home-care-observation"]):
        flow_id = await _start(stack, 2)
        await view_when(
            stack, flow_id, lambda f: any(m["ack_code"] == "ok" for m in f["messages"] if m["direction"] == "out")
        )
        response = await _event(stack, flow_id, "modify", CORRECTION)
        assert response.status_code == 200, response.text
        await wait_for(lambda: _acked(stack, flow_id, 2), timeout=60)
        bad = await _event(stack, flow_id, "modify", {"observations": [{"code": "NPU08676", "value": 1234567.1234567}]})
        assert bad.status_code == 409 and "12 characters" in bad.text
        response = await _event(stack, flow_id, "cancel", {"reason": "Sendt på forkert CPR-nummer"})
        assert response.status_code == 200, response.text
        flow = await view_when(stack, flow_id, lambda f: f["status"] == "completed")
    sent = sent_bundles(stack, flow_id, KIND)
    assert [row.ack_code for row, _ in sent] == ["ok", "ok", "ok"]
    headers = [row.message_header_id for row, _ in sent]
    assert len(set(headers)) == 3
    own = [_own_provenance(bundle) for _, bundle in sent]
    assert [p["activity"]["coding"][0]["code"] for p in own] == ["new-message", "modified-message", "retract-message"]
    assert [as_list(p.get("entity")) for p in own[1:]] == [
        [{"role": "revision", "what": {"reference": f"MessageHeader/{headers[0]}"}}],
        [{"role": "removal", "what": {"reference": f"MessageHeader/{headers[1]}"}}],
    ]
    assert [len(list(resources(b, "Provenance"))) for _, b in sent] == [1, 2, 3]
    retraction = next(r for _, r in resources(sent[2][1], "DiagnosticReport"))
    assert retraction["conclusion"] == "Sendt på forkert CPR-nummer"
    assert all(validate_message(b) == [] for _, b in sent)
    # the GP acknowledged every version and answered none (it was quiet), and nothing more goes out
    assert _received(stack, flow_id, "care-communication-message") == []
    late = await _event(stack, flow_id, "modify", CORRECTION)
    assert late.status_code == 409
    assert flow["open_escalations"] == 0
    if stack.transport == "process-message":
        await record_history(
            stack.client, HomeCareObservationPathway.workflow_id(flow_id), "home-care-observation-modified-retracted"
        )


async def _acked(stack: Stack, flow_id: str, count: int) -> bool:
    return sum(1 for row, _ in sent_bundles(stack, flow_id, KIND) if row.ack_code == "ok") >= count


async def test_a_late_answer_escalates_then_completes_the_pathway(any_stack: Stack) -> None:
    stack = any_stack
    timings = stack.settings.pathways
    before = timings.get("home_care_observation")
    timings["home_care_observation"] = {"answer_deadline": timedelta(seconds=2)}
    try:
        with _Simulator(stack, reply_delay=6.0):
            flow_id = await _start(stack, 3)
            escalated = await view_when(stack, flow_id, lambda f: f["open_escalations"] > 0, timeout=30)
            assert escalated["status"] == "escalated"
            flow = await view_when(stack, flow_id, lambda f: f["status"] == "completed", timeout=60)
    finally:
        if before is None:
            timings.pop("home_care_observation", None)
        else:
            timings["home_care_observation"] = before
    [escalation] = flow["escalations"]
    assert escalation["step"] == "answer" and "care communication" in escalation["reason"]
    assert escalation["resolved_at"] is not None
    assert len(_received(stack, flow_id, "care-communication-message")) == 1
    if stack.transport == "process-message":
        await record_history(
            stack.client, HomeCareObservationPathway.workflow_id(flow_id), "home-care-observation-late"
        )


async def test_the_console_draws_its_steps_and_offers_its_events(any_stack: Stack) -> None:
    stack = any_stack
    """The report and the answer in sequence, its corrections and retraction beside them; the console's
    event form carries a note but no corrected measurements, so the pathway refuses it and says why."""
    from tests.console.conftest import console_client, csrf_of

    with _Simulator(stack, quiet_partners=[DEMO_VISITING_GP], quiet_in=["home-care-observation"]):
        flow_id = await _start(stack, 4)
        await wait_for(lambda: _acked(stack, flow_id, 1), timeout=60)
        async with console_client(stack) as console:

            async def page_text() -> str | None:
                page = await console.get(f"/console/flows/{flow_id}")
                return page.text if 'data-event="modify"' in page.text else None

            text = await wait_for(page_text, timeout=40)
            sequence, beside = text.split('class="steps-beside"', 1)
            assert 'data-step="observation"' in sequence and 'data-step="answer"' in sequence
            beside = beside.split("</ul>", 1)[0]
            assert 'data-step="modified"' in beside and 'data-step="retracted"' in beside
            assert 'data-event="cancel"' in text
            refused = await console.post(
                f"/console/flows/{flow_id}/events/modify",
                data={"csrf_token": csrf_of(text), "reason": "ny måling"},
                follow_redirects=True,
            )
            assert (
                "the event&#39;s data does not fit" in refused.text or "the event's data does not fit" in refused.text
            )
        retracted = await _event(stack, flow_id, "cancel", {"reason": "Forkert modtager"})
        assert retracted.status_code == 200, retracted.text
        await view_when(stack, flow_id, lambda f: f["status"] == "completed")
