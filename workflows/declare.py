"""The words a pathway is declared in: its parties, its steps and what starts it.

A pathway module subclasses `Pathway` (workflows/steps.py) and fills in class attributes with these;
the engine runs them. Nothing here does I/O: declarations are read by the workflow (deterministic),
the API (`GET /pathways`, starting flows, routing), the console, the demo and the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from workflows.models import EventReport, InboundMessageSignal, OutboundState, PathwayInput

# Roles that may report an external event by default (the API checks them against the token).
EVENT_ROLES = ("clinician", "coordinator")


@dataclass(frozen=True)
class Party:
    """A role in the pathway (requester, performer, municipality, ...), resolved to an organisation
    at start: from an input field holding its SOR code, else the first directory entry of a kind."""

    role: str
    title: str
    field: str | None = None  # input field with the SOR code
    directory_kind: str | None = None  # fallback: the directory's first entry of this kind
    kind: str | None = None  # the directory kind the organisation must be (None: any)


# What a Send step sends: content for the message type's content model, from the pathway's input.
ContentFrom = Callable[["PathwayInput"], "BaseModel | dict[str, Any]"]


def service_request_content(pathway_input: PathwayInput) -> dict[str, Any]:
    """The default content: the pathway's input fields, keyed to the flow (its ServiceRequest id)."""
    return {**pathway_input.data, "service_request_id": pathway_input.flow_id}


@dataclass(frozen=True)
class Send:
    """Send a message to a party and await its acknowledgement: MedCom's resend rule (no
    acknowledgement within ack_timeout → the same MessageHeader.id again with a new Bundle.id, at most
    max_resends times, then escalate; fatal-error escalates at once)."""

    name: str
    message: str  # event code of a registered message type
    to: str  # party role
    content: ContentFrom = service_request_content
    # A reason the message goes too late (a timing rule): it still goes, and the pathway escalates.
    late: Callable[[SendContext], str | None] | None = None

    @property
    def kind(self) -> str:  # the first engine's name for the message
        return self.message


@dataclass(frozen=True)
class AwaitReply:
    """Await a reply from a party; when the deadline passes escalate once, and keep waiting. A second
    reply of the same type replaces the first (a rescheduled appointment) and re-arms the deadlines
    that count from it (`deadline_from`)."""

    name: str
    message: str
    sender: str  # party role
    deadline: str | None = None  # name of a timedelta field of the pathway's timings
    deadline_from: str | None = None  # an earlier reply step: the deadline counts from that reply
    legal: tuple[str, ...] = ()  # legal deadline rules (careflow.deadlines ids) this reply meets

    @property
    def kind(self) -> str:
        return self.message


@dataclass(frozen=True)
class Outcome:
    """One branch of AwaitOneOf: the message (and, optionally, the decision it carries) that
    chooses it, and what follows: more steps, an escalation (the partner's reason), or the end."""

    message: str
    when: str | None = None  # the message's outcome value (e.g. a Task status); None: any
    steps: tuple[Step, ...] = ()
    escalate: bool = False
    end: bool = False
    # The reply names another organisation (InboundMessageSignal.forward_to, a SOR code): it takes
    # this party role from then on (a referral forwarded to another hospital).
    reassign: str | None = None
    again: bool = False  # after this outcome's steps, await the same step again (the new receiver decides)


@dataclass(frozen=True)
class AwaitOneOf:
    """Await one of several replies from a party (accepted / rejected / forwarded) and branch."""

    name: str
    outcomes: dict[str, Outcome]
    sender: str
    deadline: str | None = None
    legal: tuple[str, ...] = ()  # legal deadline rules (careflow.deadlines ids) the decision meets


@dataclass(frozen=True)
class AwaitEvent:
    """Await an event reported through the API or console (a discharge), by the roles named."""

    name: str
    event: str
    title: str = ""
    roles: tuple[str, ...] = EVENT_ROLES
    deadline: str | None = None
    legal: tuple[str, ...] = ()  # legal deadline rules (careflow.deadlines ids) the event meets


@dataclass(frozen=True)
class SendOnEvent:
    """Await an event, then send a message built from it (and await its acknowledgement)."""

    name: str
    event: str
    message: str
    to: str
    title: str = ""
    roles: tuple[str, ...] = EVENT_ROLES
    deadline: str | None = None
    content: Callable[[PathwayInput, dict[str, Any]], BaseModel | dict[str, Any]] | None = None  # (input, event data)


Step = Send | AwaitReply | AwaitOneOf | AwaitEvent | SendOnEvent


@dataclass(frozen=True)
class SendContext:
    """What an `OnEvent`'s content builder (and its `refuse`) sees. Plain data, read in the workflow:
    building from it must be deterministic."""

    input: PathwayInput
    event: dict[str, Any]  # the reported event's data ({} for none)
    sent: tuple[OutboundState, ...]  # what the pathway has sent so far, oldest first (not this message)
    received: tuple[InboundMessageSignal, ...]  # partners' messages applied so far (no acknowledgements)
    reported: tuple[EventReport, ...]  # earlier reports of `alongside` events, oldest first (not this one)
    now: datetime
    reported_at: datetime | None = None  # when this report was taken (None while it is being validated)
    reason: str = ""  # the reporter's note (a cancellation's reason, from the console's note field)


@dataclass(frozen=True)
class OnEvent:
    """Alongside the steps: an event that may be reported any number of times (from when the step
    named `after` has finished), in any order with the others. Each report sends `message` to `to`,
    built by `content`, and awaits its acknowledgement with the resend rule; reports are handled one at
    a time, in the order reported. `refuse` gives a reason to refuse a report (the API answers 409).
    `ends`: the pathway completes once this message has been sent and acknowledged."""

    name: str
    event: str
    message: str
    to: str
    content: Callable[[SendContext], BaseModel | dict[str, Any]]
    title: str = ""
    roles: tuple[str, ...] = EVENT_ROLES
    after: str | None = None
    ends: bool = False
    refuse: Callable[[SendContext], str | None] | None = None
    # A reason the report came too late (a timing rule): the message still goes, and the pathway
    # escalates with the reason.
    late: Callable[[SendContext], str | None] | None = None

    @property
    def kind(self) -> str:
        return self.message


@dataclass(frozen=True)
class OnMessage:
    """Alongside the steps: a message a party may send any number of times (a CareCommunication in a
    dialogue), kept and shown on the timeline. With `answer` (an OnEvent's name) and `deadline` (a
    timedelta field of the timings) each one must be answered in time, or the pathway escalates."""

    name: str
    message: str
    sender: str  # party role
    answer: str | None = None
    deadline: str | None = None
    # Which of these messages await an answer (None: every one): e.g. not the partner's answer to a
    # question careflow asked in the same dialogue. Deterministic, from the message and the context.
    awaits_answer: Callable[[InboundMessageSignal, SendContext], bool] | None = None

    @property
    def kind(self) -> str:
        return self.message


Alongside = OnEvent | OnMessage


@dataclass(frozen=True)
class StartOn:
    """An inbound message type that starts the pathway when it correlates to no running flow and
    the predicate (on the parsed message) holds; `input_from` turns the message into the input."""

    message: str
    input_from: Callable[[Any], dict[str, Any]]  # ParsedMessage -> the input model's fields
    when: Callable[[Any], bool] = field(default=lambda parsed: True)


def walk(steps: tuple[Step, ...]) -> list[Step]:
    """Every step, branches included, in declaration order."""
    found: list[Step] = []
    for step in steps:
        found.append(step)
        if isinstance(step, AwaitOneOf):
            for outcome in step.outcomes.values():
                found += walk(outcome.steps)
    return found
