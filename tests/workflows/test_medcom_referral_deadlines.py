"""Legal deadlines on the medcom-referral pathway, on the time-skipping server with the real
activities: counted on the Danish working-day calendar from the referral's receipt; the version in
force at start stays with a running pathway when a new version comes into force; a coordinator's
apply re-pins it; the cancer track's treatment clock starts at the accepted treatment offer; every
escalation names the rule breached and its version."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from careflow.deadlines import (
    RULES_2026_1,
    DeadlineRuleBook,
    DeadlineRules,
    compute_deadline,
    local_date,
)
from careflow.settings import Settings
from messaging import referral_draft as draft
from messaging.model import AckCode, MessageKind, Organization, PatientData
from tests.conftest import encrypted_client, silent_partners_worker, store_flow_row, wait_for
from workflows.medcom_referral import MedcomReferralPathway
from workflows.models import (
    ApplyRulesRequest,
    EventReport,
    InboundMessageSignal,
    PathwayInput,
    PathwayState,
    PathwayStatus,
    StepState,
    StepStatus,
)

GP = Organization(sor="100000000000001", ean="5790010000019", name="Lægerne Nørrebro (demo GP)")
HOSPITAL = Organization(sor="200000000000001", ean="5790020000016", name="Kardiologisk afdeling, Demo Hospital")
started: list[WorkflowHandle] = []  # this test's pathways, ended when it is over (tests run one at a time)


@pytest_asyncio.fixture
async def env_settings(
    time_skipping_server: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[WorkflowEnvironment, Settings]]:
    async with silent_partners_worker(time_skipping_server, tmp_path, [MedcomReferralPathway]) as settings:
        started.clear()
        yield time_skipping_server, settings
        # Pathways left waiting would hold the shared time-skipping server's clock once this worker is
        # gone: each runs to its end here.
        for handle in started:
            await finish(handle)
        started.clear()


async def start(env: WorkflowEnvironment, settings: Settings, rules: DeadlineRules, track: str) -> WorkflowHandle:
    """As exchange/starting does: the version in force at start goes with the pathway's input."""
    client = await encrypted_client(env, settings)
    flow_id = str(uuid.uuid4())
    store_flow_row(settings, MedcomReferralPathway.name, flow_id, GP.sor, HOSPITAL.sor, cpr_hash="h1")
    handle = await client.start_workflow(
        MedcomReferralPathway.run,
        PathwayInput(
            flow_id=flow_id,
            pathway=MedcomReferralPathway.name,
            patient=PatientData(cpr="0101505123"),
            parties={"requester": GP, "performer": HOSPITAL},
            data={"reason": "Udredning", "priority": "routine", "track": track},
            patient_hash="h1",
            rules=rules.model_dump(mode="json"),
        ),
        id=f"medcom-referral-{flow_id}",
        task_queue=settings.task_queue,
    )
    started.append(handle)
    return handle


def signal(kind: str, **fields: object) -> InboundMessageSignal:
    return InboundMessageSignal(
        message_header_id=str(uuid.uuid4()),
        kind=kind,
        sender_sor=HOSPITAL.sor,
        received_at=datetime.now(UTC),
        patient_hash="h1",
        **fields,
    )


async def state_when(handle: WorkflowHandle, ready: Callable[[PathwayState], bool]) -> PathwayState:
    async def check() -> PathwayState | None:
        state = await handle.query(MedcomReferralPathway.pathway_state)
        return state if ready(state) else None

    return await wait_for(check)


async def finish(handle: WorkflowHandle) -> None:
    """Whatever the pathway still awaits arrives, and treatment starts: it completes."""
    state = await handle.query(MedcomReferralPathway.pathway_state)
    if state.status in (PathwayStatus.COMPLETED, PathwayStatus.CANCELLED, PathwayStatus.FAILED):
        return  # the test ran it to its end
    for name, kind in (("booking", draft.BOOKING), ("treatment_plan", MessageKind.TREATMENT_PLAN)):
        if step(state, name).status not in (StepStatus.DONE, StepStatus.DONE_OUTSIDE):
            try:
                await handle.signal(MedcomReferralPathway.message_received, signal(kind))
            except RPCError as err:
                if err.status is RPCStatusCode.NOT_FOUND:
                    return  # it completed since the query: nothing left to finish
                raise
    await state_when(handle, lambda s: s.step == "treatment_started")
    try:
        await handle.execute_update(
            MedcomReferralPathway.report_event,
            EventReport(event="treatment-started", actor="test-clinician", role="clinician", reason="test"),
        )
    except (RPCError, WorkflowUpdateFailedError):
        pass  # the update was applied but its answer lost: the retry found it reported, or the pathway ended
    await handle.result()


def step(state: PathwayState, name: str) -> StepState:
    return next(s for s in state.steps if s.name == name)


async def received_and_accepted(env: WorkflowEnvironment, handle: WorkflowHandle) -> datetime:
    """The hospital acknowledges the referral (its receipt starts the clock) and accepts it."""
    state = await state_when(handle, lambda s: bool(s.outbound) and bool(s.outbound[0].bundle_ids))
    await handle.signal(
        MedcomReferralPathway.message_received,
        signal(MessageKind.ACKNOWLEDGEMENT, response_to=state.outbound[0].message_header_id, response_code=AckCode.OK),
    )
    await state_when(handle, lambda s: s.step == "triage")
    received = await env.get_current_time()
    await handle.signal(MedcomReferralPathway.message_received, signal(draft.TRIAGE, outcome="accept"))
    await state_when(handle, lambda s: s.step == "booking" and step(s, "booking").legal_deadline is not None)
    return received


async def test_a_new_rule_version_leaves_running_pathways_alone_until_a_coordinator_applies_it(
    env_settings: tuple[WorkflowEnvironment, Settings],
) -> None:
    env, settings = env_settings
    now = await env.get_current_time()
    old = RULES_2026_1.model_copy(update={"valid_from": local_date(now) - timedelta(days=400)})
    # tomorrow, the patient must be informed within 5 working days instead of 8
    stricter = DeadlineRules(
        version="2027-1",
        valid_from=local_date(now) + timedelta(days=1),
        rules=tuple(r.model_copy(update={"amount": 5}) if r.id == "patient-informed" else r for r in old.rules),
    )
    book = DeadlineRuleBook(versions=(old, stricter))

    running = await start(env, settings, book.in_force(now), "standard")
    received = await received_and_accepted(env, running)
    first = compute_deadline(old, "patient-informed", received)
    state = await running.query(MedcomReferralPathway.pathway_state)
    assert state.rules_version == old.version
    assert step(state, "booking").legal_deadline == first.due_at, "8 working days from the receipt"
    assert step(state, "treatment_plan").legal_deadline is None, "the assessment's deadline belongs to its step"

    await env.sleep(timedelta(days=1, hours=1))  # the new version is in force: new pathways get it
    later = await start(env, settings, book.in_force(await env.get_current_time()), "standard")
    later_received = await received_and_accepted(env, later)
    later_state = await later.query(MedcomReferralPathway.pathway_state)
    assert later_state.rules_version == "2027-1"
    assert (
        step(later_state, "booking").legal_deadline
        == compute_deadline(stricter, "patient-informed", later_received).due_at
    )
    state = await running.query(MedcomReferralPathway.pathway_state)
    assert (state.rules_version, step(state, "booking").legal_deadline) == (old.version, first.due_at), (
        "the running pathway keeps its version"
    )

    # a coordinator applies the new version to the running pathway: its deadline is re-pinned
    await running.execute_update(
        MedcomReferralPathway.apply_rules,
        ApplyRulesRequest(actor="test-coordinator", reason="ny bekendtgørelse", rules=stricter.model_dump(mode="json")),
    )
    repinned = compute_deadline(stricter, "patient-informed", received)
    assert repinned.due_at < first.due_at
    state = await state_when(running, lambda s: step(s, "booking").legal_deadline == repinned.due_at)
    assert state.rules_version == "2027-1" and not state.open_escalations
    await env.sleep(repinned.due_at - await env.get_current_time() + timedelta(hours=1))
    state = await state_when(running, lambda s: bool(s.open_escalations))
    [escalation] = state.open_escalations
    assert escalation.step == "booking"
    assert escalation.reason == repinned.escalation_reason()
    assert "patient-informed" in escalation.reason and "rules 2027-1" in escalation.reason
    # the booking resolves it
    await running.signal(MedcomReferralPathway.message_received, signal(draft.BOOKING))
    state = await state_when(running, lambda s: s.step == "treatment_plan")
    assert not state.open_escalations


async def test_the_cancer_tracks_treatment_clock_starts_at_the_accepted_treatment_offer(
    env_settings: tuple[WorkflowEnvironment, Settings],
) -> None:
    env, settings = env_settings
    rules = RULES_2026_1.model_copy(update={"valid_from": local_date(await env.get_current_time())})
    handle = await start(env, settings, rules, "cancer")
    received = await received_and_accepted(env, handle)
    state = await handle.query(MedcomReferralPathway.pathway_state)
    informed = compute_deadline(rules, "patient-informed", received).due_at
    assessment_starts = compute_deadline(rules, "cancer-assessment-start", received).due_at
    assert step(state, "booking").legal_deadline == min(informed, assessment_starts)

    await handle.signal(MedcomReferralPathway.message_received, signal(draft.BOOKING))
    await state_when(handle, lambda s: s.step == "treatment_plan")
    state = await handle.query(MedcomReferralPathway.pathway_state)
    assert step(state, "treatment_plan").legal_deadline is None, "the 30-day assessment rule is not the cancer track's"
    await handle.signal(MedcomReferralPathway.message_received, signal(MessageKind.TREATMENT_PLAN))
    state = await state_when(
        handle, lambda s: s.step == "treatment_started" and step(s, "treatment_started").legal_deadline is not None
    )
    offer_accepted = step(state, "treatment_plan").completed_at
    treatment = compute_deadline(rules, "cancer-treatment-start", offer_accepted)
    assert step(state, "treatment_started").legal_deadline == treatment.due_at
    await env.sleep(treatment.due_at - await env.get_current_time() + timedelta(hours=1))
    state = await state_when(handle, lambda s: bool(s.open_escalations))
    [escalation] = state.open_escalations
    assert escalation.step == "treatment_started" and escalation.reason == treatment.escalation_reason()
    assert "cancer-treatment-start" in escalation.reason and "rules 2026-1" in escalation.reason
