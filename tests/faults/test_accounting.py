"""The accounting fails when anything is lost, applied twice or built twice (no servers needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.faults.accounting import ACKNOWLEDGEMENT, FlowOutcome, Inbound, Outbound, account
from workflows.models import EscalationState, PathwayState, PathwayStatus, StepState

APPOINTMENT = "careflow-appointment-message"


def _state(
    flow_id: str, received: list[str], status: PathwayStatus = PathwayStatus.COMPLETED, escalated: bool = False
) -> PathwayState:
    escalations = (
        [EscalationState(key="appointment-1", step="appointment", reason="no appointment", opened_at=datetime.now(UTC))]
        if escalated
        else []
    )
    return PathwayState(
        flow_id=flow_id,
        pathway="referral",
        status=status,
        step="completed",
        steps=[StepState(name="referral")],
        received_header_ids=received,
        escalations=escalations,
    )


def _healthy() -> tuple[list[str], dict[str, FlowOutcome], list[Inbound], list[Outbound]]:
    flows = ["f1", "f2"]
    outcomes = {
        "f1": FlowOutcome(_state("f1", ["a1", "r1"]), closed=True),
        "f2": FlowOutcome(_state("f2", ["a2"], PathwayStatus.ESCALATED, escalated=True)),
    }
    inbound = [
        Inbound("a1", "f1", ACKNOWLEDGEMENT, "delivered"),
        Inbound("r1", "f1", APPOINTMENT, "delivered"),
        Inbound("a2", "f2", ACKNOWLEDGEMENT, "delivered"),
        Inbound("x", None, APPOINTMENT, "undeliverable"),  # correlated to nothing: not a flow's loss
        Inbound("late", "f1", ACKNOWLEDGEMENT, "undeliverable"),  # ack of a resend after the flow closed
    ]
    outbound = [
        Outbound("f1", "referral", "careflow-referral-message", "h1", "b1"),
        Outbound("f1", "referral", "careflow-referral-message", "h1", "b2"),  # a resend: same header
        Outbound("f2", "referral", "careflow-referral-message", "h2", "b3"),
    ]
    return flows, outcomes, inbound, outbound


def test_healthy_run_passes() -> None:
    summary = account(*_healthy())
    assert summary.ok, summary.problems()
    assert (
        summary.line()
        == "faults: flows 2, completed 1, escalated 1, lost 0, delivered-twice 0, sent-twice 0, held for triage 0"
    )
    assert summary.late_acknowledgements == 1


def test_a_stored_message_never_applied_is_lost() -> None:
    flows, outcomes, inbound, outbound = _healthy()
    inbound.append(Inbound("r2", "f2", APPOINTMENT, "delivered"))  # stored, marked delivered, never applied
    summary = account(flows, outcomes, inbound, outbound)
    assert not summary.ok and summary.lost == ["r2"]
    assert "lost 1" in summary.line()


def test_an_undelivered_message_is_lost() -> None:
    flows, outcomes, inbound, outbound = _healthy()
    inbound.append(Inbound("r3", "f2", APPOINTMENT, "received"))
    assert account(flows, outcomes, inbound, outbound).lost == ["r3"]


def test_a_clinical_reply_to_a_closed_flow_is_not_excused() -> None:
    flows, outcomes, inbound, outbound = _healthy()
    inbound.append(Inbound("r4", "f1", APPOINTMENT, "undeliverable"))
    assert account(flows, outcomes, inbound, outbound).lost == ["r4"]


def test_a_reply_to_a_closed_flow_held_for_triage_is_counted_not_lost() -> None:
    flows, outcomes, inbound, outbound = _healthy()
    inbound.append(Inbound("r5", "f1", APPOINTMENT, "triage"))  # f1 has closed: kept for a coordinator
    summary = account(flows, outcomes, inbound, outbound)
    assert summary.ok and summary.triaged == ["r5"] and summary.lost == []
    assert summary.line().endswith("held for triage 1")


def test_a_message_held_for_triage_while_its_flow_runs_is_lost() -> None:
    flows, outcomes, inbound, outbound = _healthy()
    inbound.append(Inbound("r6", "f2", APPOINTMENT, "triage"))  # f2 still runs: it should have had it
    summary = account(flows, outcomes, inbound, outbound)
    assert not summary.ok and summary.lost == ["r6"]


def test_the_report_names_each_lost_message_and_its_flow() -> None:
    flows, outcomes, inbound, outbound = _healthy()
    inbound.append(Inbound("r7", "f2", APPOINTMENT, "delivered", "2026-11-29T10:00:00+00:00", 1))
    outcomes["f2"] = FlowOutcome(outcomes["f2"].state, signalled={"r7": "event 9 at 10:00:00.000000"})
    report = account(flows, outcomes, inbound, outbound).problems()
    assert "lost: message r7 kind careflow-appointment-message flow f2 status delivered attempts 1" in report
    assert "signal in history: event 9" in report and "flow f2: escalated at completed" in report


def test_a_header_applied_twice_is_delivered_twice() -> None:
    flows, outcomes, inbound, outbound = _healthy()
    outcomes["f1"] = FlowOutcome(_state("f1", ["a1", "r1", "r1"]), closed=True)
    summary = account(flows, outcomes, inbound, outbound)
    assert not summary.ok and summary.delivered_twice == ["r1"]


def test_a_second_header_for_one_step_is_sent_twice() -> None:
    flows, outcomes, inbound, outbound = _healthy()
    outbound.append(Outbound("f2", "referral", "careflow-referral-message", "h2-bis", "b4"))
    summary = account(flows, outcomes, inbound, outbound)
    assert not summary.ok and summary.sent_twice == ["f2|referral|careflow-referral-message"]


def test_the_partners_count_of_headers_is_checked_too() -> None:
    summary = account(*_healthy(), partner_headers_per_step={"f1|careflow-referral-message": 2})
    assert not summary.ok and len(summary.sent_twice) == 1


def test_a_flow_neither_completed_nor_escalated_is_unsettled() -> None:
    flows, outcomes, inbound, outbound = _healthy()
    outcomes["f2"] = FlowOutcome(_state("f2", ["a2"], PathwayStatus.ACTIVE))
    flows.append("f3")  # accepted, but no workflow state at all
    summary = account(flows, outcomes, inbound, outbound)
    assert not summary.ok and summary.unsettled == ["f2", "f3"]
