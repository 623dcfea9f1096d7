"""Counting "nothing lost, nothing twice": a pure function over what the message store holds and
what the workflows say they applied, so a test can feed it a loss and watch it fail."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from workflows.models import PathwayState, PathwayStatus

ACKNOWLEDGEMENT = "acknowledgement-message"
CORRELATED = ("received", "delivered", "undeliverable", "triage")  # "rejected" messages never reach a workflow
TRIAGE = "triage"


@dataclass(frozen=True)
class Inbound:
    """One InboundMessage row (no body: the accounting needs no patient data)."""

    message_header_id: str
    flow_id: str | None
    event_code: str
    delivery_status: str
    received_at: str = ""  # for the problem report only
    delivery_attempts: int = 0


@dataclass(frozen=True)
class Outbound:
    """One OutboundMessage row: one per Bundle.id (per attempt), resends keep the MessageHeader.id."""

    flow_id: str | None
    step: str
    event_code: str
    message_header_id: str
    bundle_id: str


@dataclass(frozen=True)
class FlowOutcome:
    """A workflow's own view of itself: its queried state and whether the execution has closed."""

    state: PathwayState | None
    closed: bool = False
    signalled: dict[str, str] = field(default_factory=dict)  # header id -> when its signal entered the history


@dataclass
class Summary:
    flows: int = 0
    completed: int = 0
    escalated: int = 0
    unsettled: list[str] = field(default_factory=list)  # flows neither completed nor escalated
    lost: list[str] = field(default_factory=list)  # header ids stored for a flow, never applied
    delivered_twice: list[str] = field(default_factory=list)  # header ids applied more than once
    sent_twice: list[str] = field(default_factory=list)  # "flow|step|event": more than one header id built
    late_acknowledgements: int = 0  # acks that reached a closed workflow: nothing left to apply them to
    triaged: list[str] = field(default_factory=list)  # replies to a closed pathway, kept for a coordinator
    report: list[str] = field(default_factory=list)  # one line per problem message or flow, to explain a failure

    def line(self) -> str:
        return (
            f"faults: flows {self.flows}, completed {self.completed}, escalated {self.escalated}, "
            f"lost {len(self.lost)}, delivered-twice {len(self.delivered_twice)}, sent-twice {len(self.sent_twice)}, "
            f"held for triage {len(self.triaged)}"
        )

    @property
    def ok(self) -> bool:
        return (
            not (self.lost or self.delivered_twice or self.sent_twice or self.unsettled)
            and self.completed + self.escalated == self.flows
        )

    def problems(self) -> str:
        parts = []
        for name in ("unsettled", "lost", "delivered_twice", "sent_twice"):
            values = getattr(self, name)
            if values:
                parts.append(f"{name}: {values[:10]}")
        return "; ".join(parts) + ("\n" + "\n".join(self.report) if self.report else "")


def describe_flow(flow_id: str, outcome: FlowOutcome | None) -> str:
    """A flow's own state in one line, without patient data: status, step, steps, what it applied."""
    if outcome is None or outcome.state is None:
        return f"flow {flow_id}: no workflow state"
    state = outcome.state
    steps = ",".join(f"{s.name}={s.status.value}" for s in state.steps)
    escalations = "; ".join(e.reason for e in state.open_escalations)
    return (
        f"flow {flow_id}: {state.status.value}{' (closed)' if outcome.closed else ''} at {state.step or '-'} "
        f"[{steps}], "
        f"applied {len(state.received_header_ids)} messages"
        + (f", open escalations: {escalations}" if escalations else "")
    )


def describe_message(message: Inbound) -> str:
    return (
        f"message {message.message_header_id} kind {message.event_code} flow {message.flow_id} status "
        f"{message.delivery_status} "
        f"attempts {message.delivery_attempts} received {message.received_at or '?'}"
    )


def account(
    flow_ids: list[str],
    outcomes: dict[str, FlowOutcome],
    inbound: list[Inbound],
    outbound: list[Outbound],
    partner_headers_per_step: dict[str, int] | None = None,
) -> Summary:
    """Compare the store with the workflows.

    - lost: a stored message correlated to a flow whose workflow never applied its MessageHeader.id.
      Two excuses, both only once the workflow has closed: an acknowledgement that arrived after
      (a late ack of a resend: undeliverable, nothing left to apply it to, recorded on its outbound
      message), and a partner's message held for triage (kept and shown to coordinators, counted
      as `triaged`). A message held for triage while its workflow still runs is lost.
    - delivered-twice: a MessageHeader.id the workflow applied more than once.
    - sent-twice: a step of a flow for which more than one MessageHeader.id was built (resends keep
      the header id, so they never count), from the store and from what the partners saw.
    """
    summary = Summary(flows=len(flow_ids))
    for flow_id in flow_ids:
        outcome = outcomes.get(flow_id)
        state = outcome.state if outcome else None
        if state is None:
            summary.unsettled.append(flow_id)
            summary.report.append(f"unsettled: {describe_flow(flow_id, outcome)}")
            continue
        if state.status is PathwayStatus.COMPLETED:
            summary.completed += 1
        elif state.open_escalations:
            summary.escalated += 1
        else:
            summary.unsettled.append(flow_id)
            summary.report.append(f"unsettled: {describe_flow(flow_id, outcome)}")
        counts = Counter(state.received_header_ids)
        twice = [h for h, n in counts.items() if n > 1]
        summary.delivered_twice += twice
        summary.report += [f"delivered twice: {h} in {describe_flow(flow_id, outcome)}" for h in twice]

    applied = {f: set(o.state.received_header_ids) for f, o in outcomes.items() if o.state is not None}
    for message in inbound:
        if message.flow_id is None or message.delivery_status not in CORRELATED:
            continue
        if message.message_header_id in applied.get(message.flow_id, set()):
            continue
        outcome = outcomes.get(message.flow_id)
        if (
            message.event_code == ACKNOWLEDGEMENT
            and message.delivery_status == "undeliverable"
            and outcome is not None
            and outcome.closed
        ):
            summary.late_acknowledgements += 1
            continue
        if (
            message.event_code != ACKNOWLEDGEMENT
            and message.delivery_status == TRIAGE
            and outcome is not None
            and outcome.closed
        ):
            summary.triaged.append(message.message_header_id)
            continue
        summary.lost.append(message.message_header_id)
        signal = (outcome.signalled.get(message.message_header_id) if outcome else None) or "none"
        summary.report.append(
            f"lost: {describe_message(message)}; signal in history: {signal}; {describe_flow(message.flow_id, outcome)}"
        )

    headers: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for row in outbound:
        headers[(row.flow_id or "", row.step, row.event_code)].add(row.message_header_id)
    twice = sorted("|".join(key) for key, ids in headers.items() if len(ids) > 1)
    summary.sent_twice += twice
    summary.report += [f"sent twice: {key} as {sorted(headers[tuple(key.split('|'))])}" for key in twice]
    # The partners' own count (service request | event with more than one header id seen).
    summary.sent_twice += sorted(f"partner:{key}" for key, n in (partner_headers_per_step or {}).items() if n > 1)
    return summary
