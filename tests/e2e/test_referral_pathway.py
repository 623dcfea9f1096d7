"""The whole referral pathway on a real dev server, worker, API and simulated partners over HTTP."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.converter import DataConverter

from careflow.auth import Role
from tests.conftest import Stack, record_history, referral_payload, wait_for
from tests.e2e.flows import coordinator_view
from workflows.referral import ReferralPathwayWorkflow
from workflows.steps import SA_PATHWAY

pytestmark = pytest.mark.e2e


async def _start(stack: Stack, cpr: str = "0101505123") -> dict:
    response = await stack.api.post("/referrals", json=referral_payload(cpr), headers=stack.headers(Role.CLINICIAN))
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == body["url"] == f"{stack.settings.public_url}/flows/{body['id']}"
    return body


async def test_referral_reaches_completed_and_read_model_matches_query(any_stack: Stack) -> None:
    """Over both transports: FHIR $process-message and VANSEnvelopes (the directory says which)."""
    stack = any_stack
    sim_before = stack.simulator_app.state.simulator.stats()
    accepted = await _start(stack)

    async def completed() -> dict | None:
        flow = await coordinator_view(stack, accepted["id"])
        return flow if flow["status"] == "completed" else None

    flow = await wait_for(completed, timeout=60)
    handle = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{accepted['id']}")
    state = await handle.query(ReferralPathwayWorkflow.pathway_state)
    assert flow["status"] == state.status.value == "completed"
    assert flow["step"] == state.step
    assert set(flow["deadlines"]) == {s.name for s in state.steps}
    assert flow["open_escalations"] == len(state.open_escalations) == 0
    kinds = [(e["kind"], e["step"]) for e in flow["timeline"]]
    for step in ("appointment", "test_result", "treatment_plan"):
        assert ("received", step) in kinds
    assert ("sent", "referral") in kinds and ("completed", "") in kinds
    # The referral was acknowledged, and every clinical reply was acknowledged back to its sender.
    out = [m for m in flow["messages"] if m["direction"] == "out"]
    assert out and out[0]["ack_code"] == "ok" and not out[0]["waiting"]
    inbound = [m for m in flow["messages"] if m["direction"] == "in"]
    assert {m["event_code"] for m in inbound} >= {
        "careflow-appointment-message",
        "careflow-test-result-message",
        "careflow-treatment-plan-message",
        "acknowledgement-message",
    }
    assert all(m["status"] == "delivered" for m in inbound)
    clinical = [m for m in inbound if m["event_code"] != "acknowledgement-message"]
    assert all(m["ack_code"] == "ok" for m in clinical)
    assert flow["patient"]["cpr"] == "0101505123"
    result = await handle.result()
    assert result.status.value == "completed"
    assert {m["transport"] for m in out} == {stack.transport}, "careflow sent over the stack's transport"
    sim = stack.simulator_app.state.simulator.stats()
    if stack.transport == "vans":
        assert sim.envelopes_received > sim_before.envelopes_received, "the hospital got envelopes"
        assert all(m["envelope_identifier"] for m in out)
        assert all(m["transport_receipt"] == "PositiveMessage" for m in out), "receipts kept apart from acks"
    else:
        assert sim.envelopes_received == sim_before.envelopes_received == 0
    if stack.transport == "process-message":
        await record_history(stack.client, handle.id, "referral-completed")


async def test_history_holds_no_patient_data(stack: Stack) -> None:
    cpr = "0202505999"
    accepted = await _start(stack, cpr)
    workflow_id = f"referral-{accepted['id']}"
    assert cpr not in workflow_id
    await stack.client.get_workflow_handle(workflow_id).result()
    # Read the raw history without the codec: what the server (and its UI) actually holds.
    config = stack.client.config()
    config["data_converter"] = DataConverter.default
    raw_client = Client(**config)
    history = await raw_client.get_workflow_handle(workflow_id).fetch_history()
    raw = history.to_json()
    assert len(history.events) > 10
    # The send and the projections run as local activities: their results are in markers.
    assert any(
        e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        for e in history.events
    )
    for needle in (cpr, "Syntetisk", "Testa", "Brystsmerter"):
        assert needle not in raw
    assert "binary/encrypted" in raw or "YmluYXJ5L2VuY3J5cHRlZA" in raw
    description = await raw_client.get_workflow_handle(workflow_id).describe()
    assert cpr not in str(description.typed_search_attributes)


async def test_the_pathway_search_attribute_is_set_when_the_workflow_starts(stack: Stack) -> None:
    """Set in the start itself: the workflow does not upsert it (an event and a visibility write fewer)."""
    accepted = await _start(stack, "0303505999")
    handle = stack.client.get_workflow_handle(f"referral-{accepted['id']}")
    await handle.result()
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert "CareflowPathway" in started.search_attributes.indexed_fields
    upserted = [
        name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        for name in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]
    assert "CareflowPathway" not in upserted and "CareflowStep" in upserted
    description = await handle.describe()
    assert description.typed_search_attributes.get(SA_PATHWAY) == "referral"


async def test_what_partners_send_an_organisation_careflow_acts_for_comes_back_to_careflow(any_stack: Stack) -> None:
    """careflow refers in the name of a hospital's emergency department it acts for (not the demo GP):
    the receiving hospital's acknowledgement and replies go to that department's endpoints — careflow's
    own — so the pathway completes, over either transport."""
    stack = any_stack
    department = "200000000000002"
    body = {**referral_payload("1010505123"), "referring_sor": department}
    response = await stack.api.post("/referrals", json=body, headers=stack.headers(Role.CLINICIAN, department))
    assert response.status_code == 202, response.text
    flow_id = response.json()["id"]

    async def completed() -> dict | None:
        flow = await coordinator_view(stack, flow_id)
        return flow if flow["status"] == "completed" else None

    flow = await wait_for(completed, timeout=60)
    inbound = [m for m in flow["messages"] if m["direction"] == "in"]
    assert {m["event_code"] for m in inbound} >= {"acknowledgement-message", "careflow-appointment-message"}
    assert all(m["status"] == "delivered" for m in inbound)
    assert {m["counterpart_sor"] for m in flow["messages"] if m["direction"] == "out"} == {"200000000000001"}
