"""The pathway engine: runs a pathway's declared steps (workflows/declare.py) — send with the
MedCom resend rule, await replies and events with deadlines, branch — and holds what every pathway
shares: the inbound-message signal (confined to the pathway's parties and patient), the viewer
query, coordinator updates, and the projection into the read model.

A pathway module subclasses `Pathway`, fills in its declarations and decorates the class with
`@workflow.defn`; the engine supplies `run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.flows import FlowActivities
    from activities.messages import MessageActivities
    from activities.models import ActivityErrors, RecordStateRequest, SendMessageRequest, TimelineEvent
    from careflow.deadlines import ClockStart, Deadline, DeadlineRules, Track, compute_deadline
    from messaging.model import AckCode, Envelope, MessageKind, Organization, message_label
    from workflows.declare import (
        Alongside,
        AwaitEvent,
        AwaitOneOf,
        AwaitReply,
        OnEvent,
        OnMessage,
        Party,
        Send,
        SendContext,
        SendOnEvent,
        StartOn,
        Step,
        walk,
    )
    from workflows.models import (
        ActionResult,
        ApplyRulesRequest,
        CancelRequest,
        CompleteStepRequest,
        EscalationState,
        EventReport,
        ExtendDeadlineRequest,
        InboundMessageSignal,
        OutboundState,
        PathwayInput,
        PathwayResult,
        PathwayStart,
        PathwayState,
        PathwayStatus,
        ResendRequest,
        StepState,
        StepStatus,
        Timings,
    )

# Search attributes: pathway, step, status, next deadline. Never patient data.
SA_PATHWAY = SearchAttributeKey.for_keyword("CareflowPathway")
SA_STEP = SearchAttributeKey.for_keyword("CareflowStep")
SA_STATUS = SearchAttributeKey.for_keyword("CareflowStatus")
SA_NEXT_DEADLINE = SearchAttributeKey.for_datetime("CareflowNextDeadline")
SEARCH_ATTRIBUTES = (SA_PATHWAY, SA_STEP, SA_STATUS, SA_NEXT_DEADLINE)

# Partner systems over HTTP: retry network trouble and 5xx with backoff (the SDK adds jitter),
# never what retrying cannot fix.
PARTNER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
    non_retryable_error_types=[
        ActivityErrors.NOT_ACCEPTED,
        ActivityErrors.UNKNOWN_ORGANIZATION,
        ActivityErrors.PARTNER_REJECTED,
    ],
)
# Partner retries above are bounded by time, not count: a send that has not gone through in this
# long becomes an escalation.
SEND_TIMEOUT = timedelta(hours=2)
SEND_ATTEMPT_TIMEOUT = timedelta(seconds=30)  # one POST to the partner, local or regular
# workflow.patched ids: histories recorded before a change replay the old way.
ACK_BEFORE_SEND_RETURNED = "ack-before-send-returned"
# Project once per step change instead of twice (finishing a step and entering the next are one
# projection): half the activities per pathway.
LEAN_PROJECTIONS = "lean-projections"
# A resend update answers once the read model shows it, so the console's next page is current.
RESEND_ANSWERS_AFTER_PROJECTION = "resend-answers-after-projection"
# A second reply of a type replaces the first and shows on the timeline (before: logged and
# ignored — a message careflow had accepted and acknowledged, then dropped).
SECOND_REPLY_APPLIED = "second-reply-applied"
# A second reply of a type replaces the first and re-arms the deadlines counted from it (before:
# logged and ignored); messages from a party other than the expected one, or about another
# patient, are refused.
PARTNER_CHANGES = "partner-changes-and-confinement"
# The projection runs as a local activity (no activity task through Temporal: one marker event
# instead of three events, a dispatch and a workflow task) and the search attributes are upserted
# only when one of them changed (issue 12: Temporal's CPU per pathway is the largest cost).
LOCAL_PROJECTIONS = "local-projections"
# A send's first attempts run as a local activity (issue 12): no activity task through Temporal, so
# one marker event instead of three events, a dispatch and a workflow task. A partner still failing
# after them gets the regular activity and its server-side retries (which add no history while a
# partner is down), with the same Bundle.id: the stored message is sent again, never a second one.
SEND_LOCAL_FIRST = "send-local-first"
LOCAL_SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=4),
    maximum_attempts=3,
    non_retryable_error_types=PARTNER_RETRY.non_retryable_error_types,
)
LOCAL_SEND_TIMEOUT = timedelta(seconds=40)  # all local attempts; the workflow task heartbeats meanwhile
# Pathways started from this version on record this one marker instead of one per change above:
# the changes are then all in effect, and are looked up one by one only in histories recorded before
# it. Every patch marker costs two events (Core upserts Temporal's TemporalChangeVersion search
# attribute with it) and a visibility write; new pathways paid that five times (issue 12).
# A change from here on gets its own patch id, checked with `_patched` like the ones above, and
# folded into the next such marker when that is made.
CHANGES_2026_11 = "changes-2026-11"
DATABASE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
RECORD_TIMEOUT = timedelta(seconds=30)


class PathwayCancelled(Exception):
    pass


def _why(err: Exception) -> str:
    """What went wrong building a message, without the data (a pydantic error quotes its input)."""
    if hasattr(err, "errors") and callable(err.errors):
        fields = sorted({".".join(str(x) for x in e.get("loc", ())) for e in err.errors()})
        return f"invalid {', '.join(fields)}" if fields else type(err).__name__
    return str(err) if isinstance(err, ValueError) else type(err).__name__


@dataclass
class _Question:
    """A dialogue message (OnMessage) that awaits an answer by a deadline."""

    step: OnMessage
    message: InboundMessageSignal
    due: datetime | None
    answered: bool = False
    escalated: bool = False


class PathwayEnded(Exception):
    """A branch ended the pathway early (e.g. a referral the receiver rejected for good)."""


class PathwayWorkflow:
    """Base of every pathway: the declarations, and the engine that runs them.

    Declare (class attributes): `name`, `title`, `title_da`, `input_model` (a PathwayStart subclass),
    `timings_model` (a Timings subclass), `parties`, `steps`, and optionally `starts` (inbound message
    types that start it), `api_start`, `acting_for` (careflow's side), `counterpart` (the main other
    party), `cancellation` (the message a coordinator's cancel sends, None for none) and
    `partner_cancellation` (a message by which the counterpart ends the pathway)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    title_da: ClassVar[str] = ""
    input_model: ClassVar[type[PathwayStart]] = PathwayStart
    timings_model: ClassVar[type[Timings]] = Timings
    parties: ClassVar[tuple[Party, ...]] = ()
    steps: ClassVar[tuple[Step, ...]] = ()
    starts: ClassVar[tuple[StartOn, ...]] = ()
    api_start: ClassVar[bool] = True
    acting_for: ClassVar[str] = "requester"
    counterpart: ClassVar[str] = "performer"
    cancellation: ClassVar[str | None] = MessageKind.CANCELLATION.value
    partner_cancellation: ClassVar[str | None] = None
    # What may happen any number of times beside the steps: events that send (OnEvent), messages
    # partners may send (OnMessage).
    alongside: ClassVar[tuple[Alongside, ...]] = ()
    # Legal deadlines: the input field naming the flow's track ("standard"/"cancer"; None: standard),
    # and the step whose finishing starts the clock of "from an accepted treatment offer" rules.
    track_field: ClassVar[str | None] = None
    treatment_offer_accepted_step: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A declared pathway gets the engine's `run`: its author writes no `run` that only forwards."""
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__ or not cls.steps:
            return

        async def run(self, pathway_input: PathwayInput) -> PathwayResult:  # noqa: ANN001
            return await self.run_pathway(pathway_input)

        run.__qualname__, run.__module__, run.__doc__ = (
            f"{cls.__qualname__}.run",
            cls.__module__,
            f"Run the {cls.name} pathway's declared steps.",
        )
        cls.run = workflow.run(run)  # type: ignore[attr-defined]

    @classmethod
    def example(cls, rng: Any) -> dict[str, Any] | None:
        """A synthetic input for the demo and `make run` (random.Random → the input model's JSON);
        None: the demo cannot start this pathway."""
        return None

    @classmethod
    def demo_events(cls, rng: Any) -> list[tuple[str, dict[str, Any]]]:
        """Alongside events the demo reports, in order, once the first step is done: (event, data).
        The demo reports the main steps' events (AwaitEvent, SendOnEvent) after these."""
        return []

    @classmethod
    def workflow_id(cls, flow_id: str) -> str:
        # Never patient data: the flow id is a random UUID.
        return f"{cls.name}-{flow_id}"

    @classmethod
    def start_attributes(cls) -> TypedSearchAttributes:
        """Search attributes to start the workflow with: its pathway, set in the start itself rather
        than upserted by the first workflow task (one event and one visibility write fewer)."""
        return TypedSearchAttributes([SearchAttributePair(SA_PATHWAY, cls.name)])

    @classmethod
    def all_steps(cls) -> list[Step | Alongside]:
        return [*walk(cls.steps), *cls.alongside]

    @classmethod
    def legal_rules(cls) -> set[str]:
        """The legal deadline rules the pathway's steps meet (empty: it keeps no rules)."""
        return {rule for s in walk(cls.steps) for rule in getattr(s, "legal", ())}

    def _initial_state(self, pathway_input: PathwayInput) -> PathwayState:
        return PathwayState(
            flow_id=pathway_input.flow_id,
            pathway=pathway_input.pathway,
            step=self.steps[0].name,
            steps=[StepState(name=s.name) for s in self.all_steps()],
        )

    @workflow.init
    def __init__(self, pathway_input: PathwayInput) -> None:
        # The input is here before any handler runs: a signal that arrives in the first workflow
        # task, before `run` has started, is checked and kept like any other.
        self.input: PathwayInput | None = pathway_input
        self.timings: Timings | None = self.timings_model.model_validate(pathway_input.timings)
        # Set up before any handler runs: a message delivered with the start (an inbound message
        # that starts the pathway) is recorded like any other.
        self.state: PathwayState | None = self._initial_state(pathway_input)
        self._acks: dict[str, list[InboundMessageSignal]] = {}
        self._replies: dict[str, InboundMessageSignal] = {}
        self._reply_times: dict[str, datetime] = {}
        self._replaced = 0  # replies replaced by a second one: deadlines counted from them re-arm
        self._events: dict[str, EventReport] = {}
        self._applied: set[str] = set()
        self._pending_events: list[TimelineEvent] = []
        self._cancel: CancelRequest | None = None
        self._partner_cancel: InboundMessageSignal | None = None
        self._resend: ResendRequest | None = None
        self._deadline_changes = 0
        self._done_outside: dict[str, CompleteStepRequest] = {}
        self._event_seq = 0
        self._lean_projections = False
        self._local_projections = False
        self._local_sends = False
        self._upserted_attributes: dict[str, Any] = {}  # search attribute -> the value last upserted
        self._parsed_rules: DeadlineRules | None = None  # self.input.rules, parsed once per version
        self._partner_changes: bool | None = None
        self._current_changes: bool | None = None  # CHANGES_2026_11, once checked
        # Alongside steps, dialogue and legal deadlines (only pathways that declare them use these).
        self._received: list[InboundMessageSignal] = []
        self._reports: list[EventReport] = []  # alongside events, in the order reported
        self._next_report = 0
        self._sending_alongside: str | None = None
        self._contents: dict[str, dict[str, Any]] = {}  # built once per MessageHeader.id: resends are identical
        self._questions: list[_Question] = []
        self._answers = 0
        self._main_done = False
        self._end_requested: str | None = None
        self._clocks: dict[str, datetime] = {}
        self._legal_escalated: set[str] = set()

    # ----- handlers -----------------------------------------------------------------------

    @workflow.signal
    def message_received(self, message: InboundMessageSignal) -> None:
        """A partner's message (acknowledgement or clinical reply), kept even if it arrives early."""
        if message.message_header_id in self._applied:
            workflow.logger.info("ignoring duplicate message %s", message.message_header_id)
            return
        refusal = self._refusal(message) if self._changes_enabled() else None
        self._applied.add(message.message_header_id)
        if refusal:
            workflow.logger.warning("refused message %s: %s", message.message_header_id, refusal)
            if self.state is not None:
                self.state.refused_header_ids.append(message.message_header_id)
                self._event(
                    "refused",
                    self._step_for_message(message),
                    f"{message_label(message.kind)} refused: {refusal}",
                    message.message_header_id,
                )
            return
        detail = message_label(message.kind) + (f" {message.response_code.value}" if message.response_code else "")
        if message.kind != MessageKind.ACKNOWLEDGEMENT and self.alongside:
            self._received.append(message)
        dialogue = self._dialogue_step(message.kind) if self.alongside else None
        if message.kind == MessageKind.ACKNOWLEDGEMENT and message.response_to:
            self._acks.setdefault(message.response_to, []).append(message)
        elif dialogue is not None:
            self._question(dialogue, message)
        elif self.partner_cancellation and message.kind == self.partner_cancellation and self._changes_enabled():
            self._partner_cancel = message
        elif message.kind not in self._replies:
            self._replies[message.kind] = message
            self._reply_times[message.kind] = workflow.now()
        elif self._changes_enabled() or self._patched(SECOND_REPLY_APPLIED):
            self._replies[message.kind] = message  # a rescheduled appointment replaces the first
            self._reply_times[message.kind] = workflow.now()
            self._replaced += 1
            detail += " (replaces the earlier one)"
        else:
            workflow.logger.info("ignoring a second %s reply %s", message.kind, message.message_header_id)
            return
        if self.state is not None:
            self.state.received_header_ids.append(message.message_header_id)
            self._event(
                "received",
                self._step_for_message(message),
                detail + (f": {message.summary}" if message.summary else ""),
                message.message_header_id,
            )

    @workflow.query
    def pathway_state(self) -> PathwayState:
        """Where the pathway stands, for coordinators. No patient data."""
        assert self.state is not None
        return self.state

    @workflow.update
    async def cancel(self, request: CancelRequest) -> ActionResult:
        """Cancel the pathway; a cancellation message goes to the receiver."""
        self._cancel = request
        return ActionResult(detail="cancellation requested")

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._require_active_and_reason(request.reason)
        if self._cancel is not None:
            raise ValueError("the pathway is already being cancelled")

    @workflow.update
    async def resend(self, request: ResendRequest) -> ActionResult:
        """Send the last outbound message again (same MessageHeader.id, new Bundle.id)."""
        self._resend = request
        await workflow.wait_condition(lambda: self._resend is None)
        return ActionResult(detail="message resent")

    @resend.validator
    def _validate_resend(self, request: ResendRequest) -> None:
        self._require_active_and_reason(request.reason)
        if not self.state or not self.state.outbound:
            raise ValueError("nothing has been sent yet")
        if self._resend is not None:
            raise ValueError("a resend is already under way")
        if any(isinstance(s, Send | SendOnEvent) and s.name == self.state.step for s in self.all_steps()):
            raise ValueError("the message is still within its acknowledgement window: careflow resends it by itself")
        if self._sending_alongside is not None:
            raise ValueError("a message is still within its acknowledgement window: careflow resends it by itself")

    @workflow.update
    async def extend_deadline(self, request: ExtendDeadlineRequest) -> ActionResult:
        """Give the current step more time; resolves its deadline escalation."""
        step = self._step_state(request.step)
        step.deadline = request.new_deadline
        if step.status is StepStatus.OVERDUE:
            step.status = StepStatus.WAITING
        self._resolve_escalations(
            request.step,
            f"deadline extended to {request.new_deadline:%Y-%m-%d %H:%M} by {request.actor}: {request.reason}",
        )
        self._event(
            "action",
            request.step,
            f"deadline extended to {request.new_deadline.isoformat()}: {request.reason}",
            actor=request.actor,
        )
        self._deadline_changes += 1
        return ActionResult(detail=f"deadline of {request.step} is now {request.new_deadline.isoformat()}")

    @extend_deadline.validator
    def _validate_extend(self, request: ExtendDeadlineRequest) -> None:
        self._require_active_and_reason(request.reason)
        step = self._waiting_step(request.step)
        if request.new_deadline.tzinfo is None:
            raise ValueError("the new deadline needs a time zone")
        if request.new_deadline <= workflow.now():
            raise ValueError("the new deadline must be in the future")
        if step.deadline and request.new_deadline <= step.deadline:
            raise ValueError("the new deadline must be later than the current one")

    @workflow.update
    async def complete_step(self, request: CompleteStepRequest) -> ActionResult:
        """Record a step as done outside careflow (e.g. booked by phone)."""
        self._done_outside[request.step] = request
        self._event("action", request.step, f"recorded as done outside careflow: {request.reason}", actor=request.actor)
        return ActionResult(detail=f"{request.step} recorded as done outside careflow")

    @complete_step.validator
    def _validate_complete(self, request: CompleteStepRequest) -> None:
        self._require_active_and_reason(request.reason)
        self._waiting_step(request.step)

    @workflow.update
    async def report_event(self, report: EventReport) -> ActionResult:
        """An event outside messaging (a discharge), reported through the API or the console."""
        on_event = self._on_event(report.event)
        if on_event is not None:
            report.reported_at = workflow.now()
            self._reports.append(report)
            self._answer_questions(on_event)
            self._event(
                "event",
                on_event.name,
                f"{self._event_title(report.event)} reported" + (f": {report.reason}" if report.reason else ""),
                actor=report.actor,
            )
            return ActionResult(detail=f"{report.event} recorded; its {message_label(on_event.message)} follows")
        self._events[report.event] = report
        step = next(
            (s.name for s in self.all_steps() if isinstance(s, AwaitEvent | SendOnEvent) and s.event == report.event),
            "",
        )
        self._event(
            "event",
            step,
            f"{self._event_title(report.event)} reported" + (f": {report.reason}" if report.reason else ""),
            actor=report.actor,
        )
        return ActionResult(detail=f"{report.event} recorded")

    @report_event.validator
    def _validate_event(self, report: EventReport) -> None:
        if self.state is None or self.state.status in (
            PathwayStatus.COMPLETED,
            PathwayStatus.CANCELLED,
            PathwayStatus.FAILED,
        ):
            raise ValueError("the pathway has ended")
        on_event = self._on_event(report.event)
        if on_event is not None:
            self._validate_alongside_event(on_event, report)
            return
        steps = [s for s in self.all_steps() if isinstance(s, AwaitEvent | SendOnEvent) and s.event == report.event]
        if not steps:
            raise ValueError(f"the {self.name} pathway awaits no event {report.event!r}")
        if report.role != "admin" and not any(report.role in s.roles for s in steps):
            raise ValueError(f"role {report.role} may not report {report.event!r}")
        if report.event in self._events:
            raise ValueError(f"{report.event!r} has already been reported")

    def _validate_alongside_event(self, step: OnEvent, report: EventReport) -> None:
        if report.role != "admin" and report.role not in step.roles:
            raise ValueError(f"role {report.role} may not report {report.event!r}")
        if self._main_done or self._end_requested:
            raise ValueError("the pathway is closing")
        if step.after and self._step_state(step.after).status not in (StepStatus.DONE, StepStatus.DONE_OUTSIDE):
            raise ValueError(f"{report.event!r} can be reported once {step.after!r} is done")
        context = self._context(report, self._reports)
        if step.refuse is not None and (reason := step.refuse(context)):
            raise ValueError(reason)
        try:  # data a message cannot be built from is refused now, not found out when it is sent
            step.content(context)
        except Exception as err:  # noqa: BLE001 - a declaration's builder: any failure refuses the report
            raise ValueError(f"no {message_label(step.message)} can be built from this report: {_why(err)}") from None

    @workflow.update
    async def apply_rules(self, request: ApplyRulesRequest) -> ActionResult:
        """Keep another version of the legal deadline rules from now on (a coordinator's decision)."""
        assert self.input is not None and self.state is not None
        old = self.state.rules_version
        self.input.rules = request.rules
        self.state.rules_version = str(request.rules["version"])
        self._deadline_changes += 1  # a waiting step recomputes its legal deadlines
        self._event(
            "action",
            self.state.step,
            f"legal deadline rules {old} replaced by {self.state.rules_version}: {request.reason}",
            actor=request.actor,
        )
        return ActionResult(detail=f"legal deadline rules {self.state.rules_version} apply")

    @apply_rules.validator
    def _validate_apply_rules(self, request: ApplyRulesRequest) -> None:
        self._require_active_and_reason(request.reason)
        if not self.legal_rules():
            raise ValueError(f"the {self.name} pathway keeps no legal deadlines")
        rules = DeadlineRules.model_validate(request.rules)
        if self.state is not None and rules.version == self.state.rules_version:
            raise ValueError(f"the pathway already keeps rules {rules.version}")

    # ----- step helpers -------------------------------------------------------------------

    async def run_pathway(self, pathway_input: PathwayInput) -> PathwayResult:
        """What a pathway's `run` does: set up its state, then run its declared steps."""
        self.input = pathway_input
        self._lean_projections = self._patched(LEAN_PROJECTIONS)
        self._local_projections = self._patched(LOCAL_PROJECTIONS)
        self._local_sends = self._patched(SEND_LOCAL_FIRST)
        self._changes_enabled()  # decided (and recorded) once, at the start of new pathways
        if workflow.info().typed_search_attributes.get(SA_PATHWAY) != pathway_input.pathway:
            workflow.upsert_search_attributes([SA_PATHWAY.value_set(pathway_input.pathway)])  # not set at start
        if pathway_input.rules and self.legal_rules():
            self.state.rules_version = str(pathway_input.rules.get("version"))
        if not self._lean_projections:
            await self.record()  # the API made the read-model row: nothing new to project yet
        return await self.run_steps()

    async def run_steps(self) -> PathwayResult:
        """Run the declared steps in order, then complete. Cancellation ends it at any wait."""
        assert self.state is not None
        background = (
            [asyncio.create_task(self._run_reports()), asyncio.create_task(self._watch_questions())]
            if self.alongside
            else []
        )
        try:
            try:
                await self._run(self.steps)
                self._main_done = True
                await asyncio.gather(*background)  # reports already made are sent before completing
                self._check_cancel()
            except PathwayEnded:
                pass
            self.state.status = PathwayStatus.COMPLETED
            self.state.step = "completed"
            self._event("completed", "", "pathway completed")
        except PathwayCancelled:
            if self._partner_cancel is not None:
                self._end_by_partner()
            else:
                await self._send_cancellation()
                self.state.status = PathwayStatus.CANCELLED
                self._resolve_all("pathway cancelled")
                self._event(
                    "action", self.state.step, f"pathway cancelled: {self._cancel.reason}", actor=self._cancel.actor
                )
        self._main_done = True
        await asyncio.gather(*background)
        await self.record()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return PathwayResult(
            flow_id=self.state.flow_id, status=self.state.status, escalations=len(self.state.escalations)
        )

    async def _run(self, steps: tuple[Step, ...]) -> None:
        for step in steps:
            if isinstance(step, Send):
                await self.send_and_await_ack(step)
            elif isinstance(step, AwaitReply):
                await self.await_reply(step)
            elif isinstance(step, AwaitOneOf):
                await self.await_one_of(step)
            elif isinstance(step, AwaitEvent):
                await self.await_event(step)
            elif isinstance(step, SendOnEvent):
                await self.await_event(step)
                await self.send_and_await_ack(step)

    async def send_and_await_ack(self, step: Send | SendOnEvent | OnEvent, report: EventReport | None = None) -> None:
        """Send, then apply MedCom's rule: no acknowledgement within the timeout → resend with the
        same MessageHeader.id and a new Bundle.id, at most `max_resends` times, then escalate.
        `transient-error` follows the resend rule; `fatal-error` escalates at once."""
        assert self.input and self.state and self.timings
        timings = self.timings
        header_id = str(workflow.uuid4())
        outbound = OutboundState(
            step=step.name, kind=step.message, message_header_id=header_id, receiver_sor=self.party(step.to).sor
        )
        if isinstance(step, OnEvent):
            context = self._context(report, self._reports[: self._next_report])
            try:
                self._contents[header_id] = self._as_data(step.content(context))
            except Exception as err:  # noqa: BLE001 - checked when reported; the state may have moved since
                await self.escalate(
                    step.name,
                    f"{self._event_title(step.event)} reported, but no {message_label(step.message)} could be "
                    f"built from it ({_why(err)}); report it again",
                )
                return
            self._sending_alongside = step.name
            self._step_state(step.name).status = StepStatus.WAITING  # beside the main step: not the current one
        self.state.outbound.append(outbound)
        if not isinstance(step, OnEvent):
            self._enter_step(step.name)
            if isinstance(step, Send) and step.late is not None and (late := step.late(self._context(None, []))):
                await self.escalate(step.name, late)
        elif step.late is not None and (late := step.late(context)):
            await self.escalate(step.name, late)
        attempt = 0
        while True:
            # Count the acknowledgements before the send: a partner may acknowledge before it answers
            # the POST, and that acknowledgement must end the wait, not be taken for an old one.
            acks_before_send = len(self._acks.get(header_id, []))
            if not await self._send(step, outbound, attempt):
                return  # the partner refused it for good: escalated
            seen = acks_before_send if self._patched(ACK_BEFORE_SEND_RETURNED) else len(self._acks.get(header_id, []))
            try:
                await workflow.wait_condition(
                    lambda: (
                        len(self._acks.get(header_id, [])) > seen or self._reply_arrived_after(step) or self._stopped()
                    ),
                    timeout=timings.ack_timeout,
                )
            except TimeoutError:
                pass
            self._check_cancel()
            ack = self._latest_ack(header_id)
            if ack is None and self._reply_arrived_after(step):
                self._start_clock(ClockStart.REFERRAL_RECEIVED)
                break  # the reply implies receipt
            if ack is not None and ack.response_code is AckCode.OK:
                outbound.ack_code = AckCode.OK
                self._start_clock(ClockStart.REFERRAL_RECEIVED)
                break
            if ack is not None and ack.response_code is AckCode.FATAL_ERROR:
                outbound.ack_code = AckCode.FATAL_ERROR
                await self.escalate(
                    step.name, f"{message_label(step.message)} refused by the receiver (fatal-error acknowledgement)"
                )
                break
            if ack is not None:
                outbound.ack_code = ack.response_code
            if attempt >= timings.max_resends:
                reason = "transient-error acknowledgements" if ack else "no acknowledgement"
                await self.escalate(step.name, f"{reason} after {attempt} resends of the {message_label(step.message)}")
                break
            attempt += 1
        self._finish_step(step.name, StepStatus.DONE, header_id)
        if isinstance(step, OnEvent):
            self._sending_alongside = None
            await self.record()
            return
        if not self._lean_projections:
            await self.record()  # otherwise the next step's (or the final) projection carries it

    async def await_reply(self, step: AwaitReply) -> None:
        """Wait for the reply; when the deadline passes escalate once, and keep waiting.
        A coordinator may extend the deadline, resend, or record the step as done."""
        await self._await(
            step.name,
            step.deadline,
            arrived=lambda: step.message if step.message in self._replies else None,
            overdue=f"no {message_label(step.message)} by its deadline",
            counted_from=self.steps_by_name().get(step.deadline_from) if step.deadline_from else None,
            legal=step.legal,
        )

    async def await_one_of(self, step: AwaitOneOf) -> None:
        """Wait for whichever outcome's message comes first, then follow that branch."""

        def arrived() -> str | None:
            for name, outcome in step.outcomes.items():
                reply = self._replies.get(outcome.message)
                if reply is not None and (outcome.when is None or reply.outcome == outcome.when):
                    return name
            return None

        labels = " or ".join(message_label(o.message) for o in step.outcomes.values())
        chosen = await self._await(
            step.name, step.deadline, arrived=arrived, overdue=f"no {labels} by its deadline", legal=step.legal
        )
        outcome = step.outcomes.get(chosen or "")
        if outcome is None:
            return  # done outside careflow
        reply = self._replies[outcome.message]
        self._event(
            "branch",
            step.name,
            f"outcome: {chosen}" + (f" ({reply.summary})" if reply.summary else ""),
            reply.message_header_id,
        )
        if outcome.escalate:
            await self.escalate(step.name, f"{chosen} by the partner" + (f": {reply.summary}" if reply.summary else ""))
        if outcome.reassign:
            await self._reassign(outcome.reassign, reply, step.name)
        await self._run(outcome.steps)
        if outcome.end:
            raise PathwayEnded()
        if outcome.again:
            self._replies.pop(outcome.message, None)  # the next decision is a new message
            self._reply_times.pop(outcome.message, None)
            await self.await_one_of(step)

    async def await_event(self, step: AwaitEvent | SendOnEvent) -> None:
        """Wait for an event reported through the API or console, with the step's deadline."""
        await self._await(
            step.name,
            step.deadline,
            arrived=lambda: step.event if step.event in self._events else None,
            overdue=f"no {self._event_title(step.event)} reported by its deadline",
            legal=getattr(step, "legal", ()),
        )

    async def _await(
        self,
        name: str,
        deadline: str | None,
        *,
        arrived: Callable[[], str | None],
        overdue: str,
        counted_from: Step | None = None,
        legal: tuple[str, ...] = (),
    ) -> str | None:
        """The waiting every step shares: escalate once when the deadline passes and keep waiting;
        a coordinator may extend the deadline, resend, or record the step as done outside careflow.
        Returns what arrived (None: done outside careflow)."""
        assert self.input and self.state and self.timings
        self._enter_step(name)
        state = self._step_state(name)
        period: timedelta | None = getattr(self.timings, deadline) if deadline else None

        def arm() -> None:
            start = (
                self._reply_times.get(counted_from.message, workflow.now())
                if isinstance(counted_from, AwaitReply)
                else workflow.now()
            )
            state.deadline = start + period if period is not None else None

        arm()
        await self.record()
        while True:
            self._check_cancel()
            found = arrived()
            if found is not None:
                header = self._replies[found].message_header_id if found in self._replies else None
                self._finish_step(name, StepStatus.DONE, header)
                self._resolve_escalations(
                    name, f"{message_label(found) if found in self._replies else self._event_title(found)} received"
                )
                break
            if name in self._done_outside:
                request = self._done_outside[name]
                self._finish_step(name, StepStatus.DONE_OUTSIDE)
                self._resolve_escalations(name, f"done outside careflow ({request.actor}): {request.reason}")
                break
            if self._resend is not None:
                await self._resend_last()
                continue
            remaining = (state.deadline - workflow.now()) if state.deadline else None
            if remaining is not None and remaining <= timedelta(0) and state.status is not StepStatus.OVERDUE:
                state.status = StepStatus.OVERDUE
                await self.escalate(name, overdue)
                continue
            if legal and await self._legal_breaches(name, state, legal):
                continue
            changes, replaced = self._deadline_changes, self._replaced
            wait_for = remaining if remaining is not None and remaining > timedelta(0) else None
            if legal and state.legal_deadline is not None:
                until_legal = state.legal_deadline - workflow.now()
                wait_for = min(wait_for, until_legal) if wait_for is not None else until_legal
            try:
                await workflow.wait_condition(
                    lambda: (
                        arrived() is not None
                        or name in self._done_outside
                        or self._resend is not None
                        or self._stopped()
                        or self._deadline_changes != changes
                        or (counted_from is not None and self._replaced != replaced)
                    ),
                    timeout=wait_for,
                )
            except TimeoutError:
                pass
            if counted_from is not None and self._replaced != replaced and arrived() is None:
                arm()  # the reply it counts from was replaced: a new deadline from the new one
                if state.status is StepStatus.OVERDUE:
                    state.status = StepStatus.WAITING
                    self._resolve_escalations(
                        name, f"{message_label(counted_from.message)} replaced: deadline re-armed"
                    )
                self._event(
                    "deadline",
                    name,
                    f"deadline re-armed to {state.deadline:%Y-%m-%d %H:%M} by a new "
                    f"{message_label(counted_from.message)}",
                )
                await self.record()
            elif self._deadline_changes != changes:
                await self.record()
        if not self._lean_projections:
            await self.record()  # otherwise the next step's (or the final) projection carries it
        return found if found is not None else None

    async def escalate(self, step: str, reason: str) -> None:
        """Open an escalation for a coordinator; the pathway goes on."""
        assert self.state is not None
        key = f"{step}-{len(self.state.escalations) + 1}"
        self.state.escalations.append(EscalationState(key=key, step=step, reason=reason, opened_at=workflow.now()))
        self.state.status = PathwayStatus.ESCALATED
        self._event("escalated", step, reason)
        await self.record()

    async def record(self) -> None:
        """Project the state into the read model (and the search attributes)."""
        assert self.state is not None
        self.state.version += 1
        if self.state.status is PathwayStatus.ESCALATED and not self.state.open_escalations:
            self.state.status = PathwayStatus.ACTIVE
        deadline = self.state.next_deadline
        updates = [
            (SA_STEP.name, self.state.step, SA_STEP.value_set(self.state.step)),
            (SA_STATUS.name, self.state.status.value, SA_STATUS.value_set(self.state.status.value)),
            (SA_NEXT_DEADLINE.name, deadline, SA_NEXT_DEADLINE.value_set(deadline) if deadline else None),
        ]
        local = self._local_projections
        if local:
            # Only what changed since the last upsert; nothing when nothing did.
            upserted = self._upserted_attributes
            updates = [u for u in updates if upserted.get(u[0], ...) != u[1]]
            upserted.update((name, value) for name, value, _ in updates)
        if updates:
            workflow.upsert_search_attributes([update or SA_NEXT_DEADLINE.value_unset() for _, _, update in updates])
        events, self._pending_events = self._pending_events, []
        request = RecordStateRequest(state=self.state, events=events)
        if local:
            await workflow.execute_local_activity_method(
                FlowActivities.record_state, request, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=DATABASE_RETRY
            )
        else:
            await workflow.execute_activity_method(
                FlowActivities.record_state, request, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=DATABASE_RETRY
            )

    # ----- internals ----------------------------------------------------------------------

    async def _send(self, step: Send | SendOnEvent | OnEvent, outbound: OutboundState, attempt: int) -> bool:
        assert self.input and self.state
        bundle_id = str(workflow.uuid4())
        request = SendMessageRequest(
            flow_id=self.input.flow_id,
            step=step.name,
            kind=step.message,
            attempt=attempt,
            envelope=Envelope(
                message_header_id=outbound.message_header_id,
                bundle_id=bundle_id,
                timestamp=workflow.now(),
                sender=self.party(self.acting_for),
                receiver=self.party(step.to),
                patient=self.input.patient,
                pathway=self.name,
            ),
            content=self._content(step, outbound.message_header_id),
        )
        try:
            if not (self._local_sends and await self._send_locally(request)):
                await workflow.execute_activity_method(
                    MessageActivities.send_message,
                    request,
                    start_to_close_timeout=SEND_ATTEMPT_TIMEOUT,
                    schedule_to_close_timeout=SEND_TIMEOUT,
                    retry_policy=PARTNER_RETRY,
                )
        except (ActivityError, ApplicationError) as err:  # failed for good (refused, or retried past its time)
            cause = (err.cause if isinstance(err, ActivityError) else None) or err
            await self.escalate(step.name, f"{message_label(step.message)} could not be sent: {cause}")
            return False
        outbound.bundle_ids.append(bundle_id)
        outbound.first_sent_at = outbound.first_sent_at or workflow.now()
        label = "sent" if attempt == 0 else f"resent (attempt {attempt + 1})"
        self._event(
            "sent",
            step.name,
            f"{message_label(step.message)} {label}",
            outbound.message_header_id,
            key=f"sent-{bundle_id}",
        )
        return True

    async def _send_locally(self, request: SendMessageRequest) -> bool:
        """The first attempts at a send, as a local activity: True when sent; False when the partner
        is still unreachable after them (the regular activity takes over). A refusal is raised."""
        try:
            await workflow.execute_local_activity_method(
                MessageActivities.send_message,
                request,
                start_to_close_timeout=SEND_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=LOCAL_SEND_TIMEOUT,
                retry_policy=LOCAL_SEND_RETRY,
            )
        except FailureError as err:
            # A local activity's failure arrives as the activity's own error (an ApplicationError), or
            # as a TimeoutError when its attempts ran out of time.
            cause = err.cause if isinstance(err, ActivityError) else err
            if isinstance(cause, CancelledError):
                raise  # the workflow is being cancelled: no regular activity after it
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                raise  # refused (send_message marks every refusal non-retryable)
            workflow.logger.info("send %s: partner still failing, retried by Temporal", request.envelope.bundle_id)
            return False
        return True

    def _content(self, step: Send | SendOnEvent | OnEvent, header_id: str = "") -> dict[str, Any]:
        """The message's content, as plain data for its type's content model (built in the activity)."""
        assert self.input is not None
        if header_id in self._contents:
            return self._contents[header_id]
        if isinstance(step, SendOnEvent):
            report = self._events.get(step.event)
            data = report.data if report else {}
            content = (
                step.content(self.input, data)
                if step.content
                else {"service_request_id": self.input.flow_id, **self.input.data, **data}
            )
        else:
            content = step.content(self.input)
        return self._as_data(content)

    @staticmethod
    def _as_data(content: Any) -> dict[str, Any]:
        return content.model_dump(mode="json") if hasattr(content, "model_dump") else dict(content)

    async def _resend_last(self) -> None:
        assert self.state and self._resend
        outbound = self.state.outbound[-1]
        step = self._outbound_step(outbound)
        self._event("action", outbound.step, f"resend requested: {self._resend.reason}", actor=self._resend.actor)
        await self._send(step, outbound, len(outbound.bundle_ids))
        self._resolve_escalations(outbound.step, f"resent by {self._resend.actor}: {self._resend.reason}")
        if self._patched(RESEND_ANSWERS_AFTER_PROJECTION):
            await self.record()
            self._resend = None  # answers the update: the read model already shows the resend
        else:
            self._resend = None
            await self.record()

    def _outbound_step(self, outbound: OutboundState) -> Send | SendOnEvent | OnEvent:
        declared = self.steps_by_name().get(outbound.step)
        if isinstance(declared, Send | SendOnEvent | OnEvent) and declared.message == outbound.kind:
            return declared
        return self._cancellation_step(outbound.step)

    def _cancellation_step(self, name: str) -> Send:
        """The cancellation a coordinator's cancel sends the counterpart, with the coordinator's reason."""
        assert self.cancellation is not None

        def content(pathway_input: PathwayInput) -> dict[str, Any]:
            return {"service_request_id": pathway_input.flow_id, "reason": self._cancel.reason if self._cancel else ""}

        return Send(name, self.cancellation, to=self.counterpart, content=content)

    async def _send_cancellation(self) -> None:
        assert self.state is not None
        if not self.cancellation:
            return  # this pathway tells nobody when it is cancelled
        outbound = OutboundState(
            step=self.state.step,
            kind=self.cancellation,
            message_header_id=str(workflow.uuid4()),
            receiver_sor=self.party(self.counterpart).sor,
        )
        self.state.outbound.append(outbound)
        await self._send(self._cancellation_step(self.state.step), outbound, 0)

    def _end_by_partner(self) -> None:
        """The counterpart cancelled: the pathway ends with its reason (nothing is sent back)."""
        assert self.state is not None and self._partner_cancel is not None
        message = self._partner_cancel
        self.state.status = PathwayStatus.CANCELLED
        reason = f"cancelled by the partner (SOR {message.sender_sor})" + (
            f": {message.summary}" if message.summary else ""
        )
        self._resolve_all(reason)
        self._event("received", self.state.step, reason, message.message_header_id)

    def _resolve_all(self, resolution: str) -> None:
        assert self.state is not None
        for escalation in self.state.open_escalations:
            escalation.resolved_at, escalation.resolution = workflow.now(), resolution

    def _stopped(self) -> bool:
        return self._cancel is not None or self._partner_cancel is not None or self._end_requested is not None

    def _check_cancel(self) -> None:
        if self._cancel is not None or self._partner_cancel is not None:
            raise PathwayCancelled()
        if self._end_requested is not None:
            raise PathwayEnded()

    def _latest_ack(self, header_id: str) -> InboundMessageSignal | None:
        acks = self._acks.get(header_id)
        return acks[-1] if acks else None

    def _reply_arrived_after(self, step: Send | SendOnEvent) -> bool:
        if step not in self.steps:
            return False
        later = self.steps[self.steps.index(step) + 1 :]
        return any(isinstance(s, AwaitReply) and s.message in self._replies for s in later)

    def _step_for_message(self, message: InboundMessageSignal) -> str:
        """The step a message shows under: an acknowledgement under the step that sent what it acknowledges."""
        if message.kind == MessageKind.ACKNOWLEDGEMENT and self.state is not None:
            for outbound in self.state.outbound:
                if outbound.message_header_id == message.response_to:
                    return outbound.step
        return self._step_for_kind(message.kind)

    def _step_for_kind(self, kind: str) -> str:
        for step in self.all_steps():
            if getattr(step, "message", None) == kind or (
                isinstance(step, AwaitOneOf) and any(o.message == kind for o in step.outcomes.values())
            ):
                return step.name
        return self.state.step if self.state else ""

    # ----- parties and confinement ----------------------------------------------------------

    def party(self, role: str) -> Organization:
        assert self.input is not None
        try:
            return self.input.parties[role]
        except KeyError:
            raise ValueError(f"the {self.name} pathway has no party {role!r} in its input") from None

    @classmethod
    def steps_by_name(cls) -> dict[str, Step | Alongside]:
        return {s.name: s for s in cls.all_steps()}

    def _changes_enabled(self) -> bool:
        if self._partner_changes is None:
            self._partner_changes = self._patched(PARTNER_CHANGES)
        return self._partner_changes

    def _patched(self, patch_id: str) -> bool:
        """`workflow.patched(patch_id)`, unless the pathway started with every change up to
        CHANGES_2026_11 in effect (one marker for all of them, decided at its first check)."""
        if self._current_changes is None:
            self._current_changes = workflow.patched(CHANGES_2026_11)
        return self._current_changes or workflow.patched(patch_id)

    def _refusal(self, message: InboundMessageSignal) -> str | None:
        """Why a message may not be applied to this pathway, or None. The API checks the same
        before it stores a message as correlated; this guards every other way in (relay, triage)."""
        if self.input is None:
            return None  # before run: nothing to compare with yet (cannot happen with workflow.init)
        if message.patient_hash and self.input.patient_hash and message.patient_hash != self.input.patient_hash:
            return "the message is about another patient than the pathway's"
        if message.kind == MessageKind.ACKNOWLEDGEMENT:
            sent = next(
                (o for o in (self.state.outbound if self.state else []) if o.message_header_id == message.response_to),
                None,
            )
            if sent is not None and sent.receiver_sor is not None and sent.receiver_sor != message.sender_sor:
                return (
                    f"only the receiver of the acknowledged message (SOR {sent.receiver_sor}) "
                    f"may acknowledge it, not SOR {message.sender_sor}"
                )
            return None
        expected = self.expected_senders(message.kind)
        if expected and message.sender_sor not in expected:
            senders = " or ".join(sorted(expected))
            return f"a {message_label(message.kind)} is expected from SOR {senders}, not SOR {message.sender_sor}"
        return None

    def expected_senders(self, kind: str) -> set[str]:
        """The SOR codes a message of this type may come from: the parties the steps awaiting it
        name; for a type no step awaits, any party of the pathway."""
        assert self.input is not None
        roles = {s.sender for s in self.all_steps() if isinstance(s, AwaitReply) and s.message == kind}
        roles |= {
            s.sender
            for s in self.all_steps()
            if isinstance(s, AwaitOneOf) and any(o.message == kind for o in s.outcomes.values())
        }
        if kind == self.partner_cancellation:
            roles.add(self.counterpart)
        roles |= {s.sender for s in self.alongside if isinstance(s, OnMessage) and s.message == kind}
        parties = self.input.parties
        return {parties[r].sor for r in roles if r in parties} if roles else {p.sor for p in parties.values()}

    def _event_title(self, event: str) -> str:
        for step in self.all_steps():
            if isinstance(step, AwaitEvent | SendOnEvent | OnEvent) and step.event == event and step.title:
                return step.title
        return event.replace("-", " ").replace("_", " ")

    def _step_state(self, name: str) -> StepState:
        assert self.state is not None
        for step in self.state.steps:
            if step.name == name:
                return step
        raise ValueError(f"unknown step {name!r}")

    def _waiting_step(self, name: str) -> StepState:
        step = self._step_state(name)
        if step.status not in (StepStatus.WAITING, StepStatus.OVERDUE) or name != self.state.step:
            raise ValueError(f"step {name!r} is not the step the pathway is waiting on")
        if not any(s.name == name and isinstance(s, AwaitReply | AwaitOneOf | AwaitEvent) for s in self.all_steps()):
            raise ValueError(f"step {name!r} does not wait for a reply")
        return step

    def _require_active_and_reason(self, reason: str) -> None:
        if self.state is None or self.state.status in (
            PathwayStatus.COMPLETED,
            PathwayStatus.CANCELLED,
            PathwayStatus.FAILED,
        ):
            raise ValueError("the pathway has ended")
        if not reason.strip():
            raise ValueError("a reason is required")

    def _enter_step(self, name: str) -> None:
        assert self.state is not None
        self.state.step = name
        self._step_state(name).status = StepStatus.WAITING

    def _finish_step(self, name: str, status: StepStatus, header_id: str | None = None) -> None:
        step = self._step_state(name)
        step.status, step.completed_at, step.message_header_id = status, workflow.now(), header_id
        if name == self.treatment_offer_accepted_step:
            self._start_clock(ClockStart.TREATMENT_OFFER_ACCEPTED)

    # ----- alongside steps: events any number of times, dialogue ---------------------------

    def _on_event(self, event: str) -> OnEvent | None:
        return next((s for s in self.alongside if isinstance(s, OnEvent) and s.event == event), None)

    def _context(self, report: EventReport | None, earlier: list[EventReport]) -> SendContext:
        assert self.input is not None and self.state is not None
        return SendContext(
            input=self.input,
            event=dict(report.data) if report else {},
            sent=tuple(o.model_copy() for o in self.state.outbound),
            received=tuple(self._received),
            reported=tuple(earlier),
            now=workflow.now(),
            reported_at=report.reported_at if report else None,
            reason=report.reason if report else "",
        )

    async def _run_reports(self) -> None:
        """Send what each alongside event asks for, one report at a time, in the order reported."""
        while True:
            await workflow.wait_condition(
                lambda: self._next_report < len(self._reports) or self._main_done or self._stopped()
            )
            if self._stopped() or self._next_report >= len(self._reports):
                return
            report = self._reports[self._next_report]
            step = self._on_event(report.event)
            assert step is not None
            try:
                await self.send_and_await_ack(step, report)
            except (PathwayCancelled, PathwayEnded):
                return
            self._next_report += 1
            if step.ends:
                self._end_requested = step.name  # the main steps stop at their next wait
                return

    def _dialogue_step(self, kind: str) -> OnMessage | None:
        """The OnMessage a partner's message belongs to, unless a main step still awaits its type."""
        step = next((s for s in self.alongside if isinstance(s, OnMessage) and s.message == kind), None)
        if step is None:
            return None
        for awaiting in walk(self.steps):
            kinds = (
                {o.message for o in awaiting.outcomes.values()}
                if isinstance(awaiting, AwaitOneOf)
                else {awaiting.message}
                if isinstance(awaiting, AwaitReply)
                else set()
            )
            status = self._step_state(awaiting.name).status if self.state else StepStatus.PENDING
            if kind in kinds and status in (StepStatus.PENDING, StepStatus.WAITING, StepStatus.OVERDUE):
                return None  # the main step's reply
        return step

    def _question(self, step: OnMessage, message: InboundMessageSignal) -> None:
        """Keep a dialogue message; with an answer and a deadline, it awaits the answer."""
        period: timedelta | None = getattr(self.timings, step.deadline) if step.deadline else None
        if step.answer and period is not None and self.state is not None:
            if step.awaits_answer is not None and not step.awaits_answer(message, self._context(None, self._reports)):
                return  # e.g. the partner's answer to careflow's own question
            self._questions.append(_Question(step=step, message=message, due=workflow.now() + period))
            self._show_questions(step)

    def _answer_questions(self, answer: OnEvent) -> None:
        """An answer answers every open message it is the answer to (a reply goes to the latest)."""
        answered = False
        for question in self._questions:
            if question.step.answer == answer.name and not question.answered:
                question.answered = answered = True
        if answered:
            self._answers += 1
            for step in {q.step.name: q.step for q in self._questions if q.step.answer == answer.name}.values():
                self._resolve_escalations(step.name, f"answered: {self._event_title(answer.event)}")
                self._show_questions(step)

    def _show_questions(self, step: OnMessage) -> None:
        """The dialogue step waits while it has unanswered messages, with the earliest deadline."""
        if self.state is None:
            return
        state = self._step_state(step.name)
        open_ = [q for q in self._questions if q.step is step and not q.answered]
        if not open_:
            state.status, state.deadline, state.completed_at = StepStatus.DONE, None, workflow.now()
            return
        state.status = StepStatus.OVERDUE if any(q.escalated for q in open_) else StepStatus.WAITING
        state.deadline = min((q.due for q in open_ if q.due and not q.escalated), default=None)

    async def _watch_questions(self) -> None:
        """Escalate dialogue messages left unanswered past their deadline."""
        while True:
            waiting = [q for q in self._questions if not q.answered and not q.escalated and q.due is not None]
            due = min((q.due for q in waiting if q.due), default=None)
            count, answers = len(self._questions), self._answers
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._main_done or self._stopped() or len(self._questions) != count or self._answers != answers
                    ),
                    timeout=max(due - workflow.now(), timedelta(0)) if due else None,
                )
            except TimeoutError:
                pass
            if self._main_done or self._stopped():
                return
            if len(self._questions) != count:
                await self.record()  # the read model shows the message waiting for its answer, with its deadline
            for question in waiting:
                if not question.answered and question.due and workflow.now() >= question.due:
                    question.escalated = True
                    self._show_questions(question.step)
                    await self.escalate(
                        question.step.name,
                        f"no answer to the {message_label(question.message.kind)} received "
                        f"{question.message.received_at:%Y-%m-%d %H:%M} by its deadline",
                    )

    # ----- parties that change, legal deadlines ----------------------------------------------

    async def _reassign(self, role: str, reply: InboundMessageSignal, step: str) -> None:
        """The partner named another organisation for this role: it takes the role from now on."""
        assert self.input is not None and self.state is not None
        if not reply.forward_to:
            await self.escalate(step, f"{message_label(reply.kind)} names no organisation to forward to")
            return
        try:
            organization = await workflow.execute_activity_method(
                MessageActivities.resolve_organization,
                reply.forward_to,
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=DATABASE_RETRY,
            )
        except ActivityError as err:
            await self.escalate(step, f"forwarded to SOR {reply.forward_to}, which careflow cannot reach: {err.cause}")
            return
        previous = self.input.parties.get(role)
        self.input.parties[role] = organization
        self.state.party_changes[role] = organization.sor
        self._event(
            "forwarded",
            step,
            f"forwarded from SOR {previous.sor if previous else '?'} to {organization.name} (SOR {organization.sor})",
            reply.message_header_id,
        )
        await self.record()

    def _start_clock(self, clock: ClockStart) -> None:
        if self.legal_rules():
            self._clocks.setdefault(clock.value, workflow.now())

    def _legal_deadlines(self, rule_ids: tuple[str, ...]) -> list[Deadline]:
        """The deadlines of the rules named, on the flow's track, whose clock has started."""
        assert self.input is not None
        if not self.input.rules:
            return []
        if self._parsed_rules is None or self._parsed_rules.version != self.input.rules.get("version"):
            self._parsed_rules = DeadlineRules.model_validate(self.input.rules)  # not at every wake-up
        rules = self._parsed_rules
        track = Track(self.input.data.get(self.track_field) or Track.STANDARD) if self.track_field else Track.STANDARD
        deadlines = []
        for rule_id in rule_ids:
            try:
                rule = rules.rule(rule_id)
            except KeyError:
                continue  # a later version may drop a rule
            started = self._clocks.get(rule.starts_at.value)
            if track in rule.tracks and started is not None:
                deadlines.append(compute_deadline(rules, rule_id, started))
        return deadlines

    async def _legal_breaches(self, name: str, state: StepState, legal: tuple[str, ...]) -> bool:
        """Escalate each legal deadline of the step that has passed (once, naming the rule); keep the
        earliest one still ahead on the step. True when it escalated."""
        escalated = False
        ahead: list[datetime] = []
        for deadline in self._legal_deadlines(legal):
            key = f"{name}:{deadline.rule_id}"
            if key in self._legal_escalated:
                continue
            if deadline.is_breached(workflow.now()):
                self._legal_escalated.add(key)
                state.status = StepStatus.OVERDUE
                await self.escalate(name, deadline.escalation_reason())
                escalated = True
            else:
                ahead.append(deadline.due_at)
        state.legal_deadline = min(ahead) if ahead else None
        return escalated

    def _resolve_escalations(self, step: str, resolution: str) -> None:
        assert self.state is not None
        for escalation in self.state.open_escalations:
            if escalation.step == step:
                escalation.resolved_at, escalation.resolution = workflow.now(), resolution

    def _event(
        self,
        kind: str,
        step: str,
        detail: str,
        header_id: str | None = None,
        *,
        actor: str | None = None,
        key: str | None = None,
    ) -> None:
        self._event_seq += 1
        self._pending_events.append(
            TimelineEvent(
                key=key or f"{kind}-{self._event_seq}",
                at=workflow.now(),
                kind=kind,
                step=step,
                detail=detail,
                message_header_id=header_id,
                actor=actor,
            )
        )
