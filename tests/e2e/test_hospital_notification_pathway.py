"""A hospital stay end to end on the dev server, worker, API and the simulated municipality, over
both transports: admit → leave → return → a corrected return → a message and its answer →
discharge → close; and a second stay whose leave and admission are cancelled. Every notification is
acknowledged by the municipality and validates with careflow's validator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from careflow.auth import Role
from careflow.crypto import KeyRing
from messaging.validate import validate_message
from store.db import make_engine
from store.models import InboundMessage, OutboundMessage, sealed_as
from tests.conftest import Stack, record_history, wait_for
from tests.e2e.dev_run import careflow_dev
from tests.e2e.flows import coordinator_view
from workflows.hospital_notification import DEMO_ADMITTING_HOSPITAL, HospitalNotificationPathway

pytestmark = pytest.mark.e2e

FIVE = ("--flows", "5", "--timeout", "150")

HN = "hospital-notification-message"
CC = "care-communication-message"
MUNICIPALITY = "400000000000001"


def _clinician(stack: Stack) -> dict[str, str]:
    return stack.headers(Role.CLINICIAN, DEMO_ADMITTING_HOSPITAL)


async def _all_acknowledged(stack: Stack, flow_id: str, count: int) -> dict:
    """Wait until the flow has sent `count` messages and each is acknowledged ok by the municipality."""

    async def check() -> dict | None:
        flow = await coordinator_view(stack, flow_id)
        out = {m["message_header_id"]: m for m in flow["messages"] if m["direction"] == "out"}
        done = len(out) == count and all(m["ack_code"] == "ok" for m in out.values())
        # and the workflow has projected each send (its timeline line comes with the projection after the ack)
        sent = {e["message_header_id"] for e in flow["timeline"] if e["kind"] == "sent"}
        return flow if done and set(out) <= sent else None

    return await wait_for(check, timeout=60)


async def _report(stack: Stack, flow_id: str, event: str, **data: object) -> None:
    response = await stack.api.post(
        f"/flows/{flow_id}/events/{event}", json={"reason": "EPJ", "data": data}, headers=_clinician(stack)
    )
    assert response.status_code == 200, response.text


async def _start(stack: Stack, cpr: str) -> str:
    body = {
        "patient": {"cpr": cpr, "given_name": "Testa", "family_name": "Syntetisk"},
        "hospital_sor": DEMO_ADMITTING_HOSPITAL,
        "admitted_at": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
    }
    response = await stack.api.post(
        f"/pathways/{HospitalNotificationPathway.name}/flows", json=body, headers=_clinician(stack)
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _stored(stack: Stack, flow_id: str) -> list[dict]:
    """What careflow sent for the flow (first attempts), decrypted from its message store."""
    key_ring = KeyRing.parse(stack.settings.codec_keys)
    with Session(make_engine(stack.settings.sqlalchemy_url)) as session:
        rows = session.exec(
            select(OutboundMessage).where(OutboundMessage.flow_id == flow_id).order_by(OutboundMessage.id)
        ).all()
    return [
        json.loads(key_ring.decrypt_text(r.body_enc, sealed_as(OutboundMessage, "body_enc", r.bundle_id)))
        for r in rows
        if r.attempt == 0
    ]


def _activity(bundle: dict) -> str:
    header = bundle["entry"][0]["resource"]
    own = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Provenance"
        and e["resource"]["target"][0]["reference"] == f"MessageHeader/{header['id']}"
    )
    return own["activity"]["coding"][0]["code"]


async def test_a_stay_admit_leave_return_revise_dialogue_discharge(any_stack: Stack) -> None:
    stack = any_stack
    simulator = stack.simulator_app.state.simulator
    simulator.behaviour = simulator.behaviour.model_copy(update={"dialogue_fraction": 0.0})
    flow_id = await _start(stack, "0303505125")
    await _all_acknowledged(stack, flow_id, 1)
    for count, (event, data) in enumerate([("leave-start", {}), ("leave-end", {}), ("revise", {})], start=2):
        await _report(stack, flow_id, event, **data)
        await _all_acknowledged(stack, flow_id, count)
    # careflow's new message: the municipality answers in its thread, and that answer awaits ours
    await _report(stack, flow_id, "write", text="Hvilke hjælpemidler skal være klar?")

    async def answered() -> dict | None:
        flow = await coordinator_view(stack, flow_id)
        inbound = [m for m in flow["messages"] if m["direction"] == "in" and m["event_code"] == CC]
        return flow if inbound and all(m["status"] == "delivered" for m in inbound) else None

    await wait_for(answered, timeout=60)
    handle = stack.client.get_workflow_handle(HospitalNotificationPathway.workflow_id(flow_id))

    async def awaits_our_answer() -> bool:
        state = await handle.query(HospitalNotificationPathway.pathway_state)
        return any(s.name == "municipality-writes" and s.deadline for s in state.steps)

    assert await wait_for(awaits_our_answer, timeout=30), "the municipality's answer awaits ours"
    await _report(stack, flow_id, "reply", text="Tak, vi bestiller en kørestol.")
    await _report(stack, flow_id, "discharge")
    flow = await _all_acknowledged(stack, flow_id, 7)
    assert flow["deadlines"]["municipality-writes"] is None
    response = await stack.api.post(
        f"/flows/{flow_id}/events/leave-start", json={"data": {}}, headers=_clinician(stack)
    )
    assert response.status_code == 409 and "already ended" in response.text
    await _report(stack, flow_id, "close")

    async def completed() -> dict | None:
        flow = await coordinator_view(stack, flow_id)
        return flow if flow["status"] == "completed" else None

    flow = await wait_for(completed, timeout=60)
    assert flow["open_escalations"] == 0
    inbound = [m for m in flow["messages"] if m["direction"] == "in"]
    assert {m["counterpart_sor"] for m in inbound} == {MUNICIPALITY}
    bundles = _stored(stack, flow_id)
    for bundle in bundles:
        assert validate_message(bundle) == []
    assert [(b["entry"][0]["resource"]["eventCoding"]["code"], _activity(b)) for b in bundles] == [
        (HN, "admit-inpatient"),
        (HN, "start-leave-inpatient"),
        (HN, "end-leave-inpatient"),
        (HN, "revise-end-leave-inpatient"),
        (CC, "new-message"),
        (CC, "reply-message"),
        (HN, "discharge-inpatient-home"),
    ]
    await record_history(stack.client, HospitalNotificationPathway.workflow_id(flow_id), "hospital-notification-e2e")


async def test_a_stay_whose_leave_and_admission_are_cancelled(any_stack: Stack) -> None:
    stack = any_stack
    flow_id = await _start(stack, "0404505126")
    await _all_acknowledged(stack, flow_id, 1)
    await _report(stack, flow_id, "leave-start")
    await _all_acknowledged(stack, flow_id, 2)
    refused = await stack.api.post(
        f"/flows/{flow_id}/events/cancel-admission", json={"data": {}}, headers=_clinician(stack)
    )
    assert refused.status_code == 409 and "cancel the later ones first" in refused.text
    await _report(stack, flow_id, "cancel")
    await _all_acknowledged(stack, flow_id, 3)
    await _report(stack, flow_id, "cancel-admission")

    async def completed() -> dict | None:
        flow = await coordinator_view(stack, flow_id)
        return flow if flow["status"] == "completed" else None

    flow = await wait_for(completed, timeout=60)
    out = [m for m in flow["messages"] if m["direction"] == "out"]
    assert len(out) == 4 and all(m["ack_code"] == "ok" for m in out)
    assert [_activity(b) for b in _stored(stack, flow_id)] == [
        "admit-inpatient",
        "start-leave-inpatient",
        "cancel-start-leave-inpatient",
        "cancel-admit-inpatient",
    ]


async def test_the_console_draws_the_stay_and_reports_its_events(stack: Stack) -> None:
    """The flow page shows the admission and close in sequence and the stay's events beside it; a
    coordinator reports a leave from there and its notification goes out and is acknowledged."""
    from tests.console.conftest import console_client, csrf_of

    flow_id = await _start(stack, "0505505127")
    await _all_acknowledged(stack, flow_id, 1)
    async with console_client(stack) as console:

        async def page_text() -> str | None:
            page = await console.get(f"/console/flows/{flow_id}")
            drawn = 'class="steps-beside"' in page.text and 'data-event="leave-start"' in page.text
            return page.text if drawn else None

        text = await wait_for(page_text, timeout=40)
        beside = text.split('class="steps-beside"', 1)[1].split("</ul>", 1)[0]
        for step in ("leave-start", "leave-end", "discharge", "death", "revise", "cancel", "municipality-writes"):
            assert f'data-step="{step}"' in beside, step
        assert 'data-step="admission"' not in beside and 'data-step="admission"' in text
        assert "Advis om sygehusophold" in text or "Hospital stay to the municipality" in text
        done = await console.post(
            f"/console/flows/{flow_id}/events/leave-start", data={"csrf_token": csrf_of(text), "reason": "orlov"}
        )
        assert done.status_code == 303
    flow = await _all_acknowledged(stack, flow_id, 2)
    assert any(e["step"] == "leave-start" and e["kind"] == "sent" for e in flow["timeline"])


@pytest.mark.parametrize("transport", ["", "vans"])
def test_make_run_seeds_a_stay_and_the_demo_drives_five(tmp_path: Path, transport: str) -> None:
    """`careflow dev` (what `make run` starts) seeds one stay; `careflow demo --pathway
    hospital-notification --flows 5` drives five through admission, leave, return, a message and
    discharge to their close."""
    with careflow_dev(tmp_path, demo_referrals=1, transport=transport) as dev:
        demo = dev.careflow("demo", "--pathway", HospitalNotificationPathway.name, *FIVE, timeout=240)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        summary = next(line for line in demo.stdout.splitlines() if line.startswith("demo: "))
        print(summary)  # the summary line the report quotes
        assert "flows 5, completed 5, escalated 0, failed 0, unsettled 0" in summary
        events = int(summary.split("events reported ")[1].split(",")[0])
        assert events >= 5 * 5, "leave start and end, a message, discharge and close for each stay"
        flows = httpx.get(
            f"{dev.api_url}/flows",
            params={"pathway": HospitalNotificationPathway.name, "limit": 50},
            headers={"Authorization": f"Bearer {dev.token('coordinator').strip()}"},
            timeout=30,
        ).json()["items"]
        assert len(flows) == 6, "the seeded stay and the demo's five"


async def test_the_municipality_writes_about_the_stay_and_gets_an_answer_in_its_thread(any_stack: Stack) -> None:
    """A new CareCommunication from the municipality finds the stay by its episode-of-care id, awaits
    the department's answer, and the answer keeps its thread and names it as the message answered."""
    stack = any_stack
    simulator = stack.simulator_app.state.simulator
    before = simulator.behaviour
    simulator.behaviour = before.model_copy(update={"dialogue_fraction": 1.0})
    try:
        flow_id = await _start(stack, "0606505128")

        async def written() -> dict | None:
            flow = await coordinator_view(stack, flow_id)
            inbound = [m for m in flow["messages"] if m["direction"] == "in" and m["event_code"] == CC]
            return inbound[0] if inbound and inbound[0]["status"] == "delivered" else None

        question = await wait_for(written, timeout=60)
    finally:
        simulator.behaviour = before
    handle = stack.client.get_workflow_handle(HospitalNotificationPathway.workflow_id(flow_id))

    async def awaits_our_answer() -> bool:
        state = await handle.query(HospitalNotificationPathway.pathway_state)
        return any(s.name == "municipality-writes" and s.deadline for s in state.steps)

    assert await wait_for(awaits_our_answer, timeout=30)
    await _report(stack, flow_id, "reply", text="Borgeren forventes udskrevet i morgen.")
    await _all_acknowledged(stack, flow_id, 2)
    answer = _stored(stack, flow_id)[-1]
    resources = [e["resource"] for e in answer["entry"]]
    provenance = next(r for r in resources if r["resourceType"] == "Provenance")
    assert provenance["activity"]["coding"][0]["code"] == "reply-message"
    assert provenance["entity"] == [
        {"role": "revision", "what": {"reference": f"MessageHeader/{question['message_header_id']}"}}
    ]
    encounter = next(r for r in resources if r["resourceType"] == "Encounter")
    assert encounter["episodeOfCare"][0]["identifier"]["value"] == flow_id, "the stay's episode of care, echoed"
    with Session(make_engine(stack.settings.sqlalchemy_url)) as session:
        thread = session.exec(
            select(InboundMessage.thread_id).where(InboundMessage.message_header_id == question["message_header_id"])
        ).one()
    communication = next(r for r in resources if r["resourceType"] == "Communication")
    assert thread and communication["identifier"] == [{"value": f"urn:uuid:{thread}"}], "the municipality's thread"
    assert validate_message(answer) == []
    await _report(stack, flow_id, "close")
